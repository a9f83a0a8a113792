"""Run 23g: the quantizer keeps the signs as two words a block instead of x itself (operand mode:
71 -> 60 registers, 3 -> 4 CTAs an SM at K = 4096; chunked path 89 -> 73). Old (f0acf2a, loaded as
vfo_old) and new side by side, mirrored order: the quantizer alone (CUDA graph, L2 flushed) and W4A4
end to end (rotating weights); outputs asserted bitwise equal."""
import sys
sys.path.insert(0, "tools")
sys.path.insert(0, ".scratch/vfo_old")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg
from vfo_old.kernels import triton_quantize as tq_old
from vfo_old.kernels import triton_gemm as tg_old

print(torch.cuda.get_device_name(), flush=True)
gen = torch.Generator().manual_seed(0)
for (R, K, rule, packed) in [(1024, 4096, "mse", False), (2048, 4096, "mse", False), (4096, 4096, "mse", False),
                             (4096, 4096, "mse", True), (1024, 4096, "abs_max", False), (1024, 4096, "static_6", False),
                             (1024, 14336, "mse", False), (4096, 14336, "mse", False), (1, 4096, "mse", False),
                             (16, 4096, "mse", False), (4096, 4096, "mse", "both")]:
    x = _activations(R, K, gen)
    kw = dict(per_row=True, write_packed=bool(packed), dequant_dtype=None if packed is True else torch.bfloat16)
    a, b = tq_old.quantize_triton(x, rule, **kw), tq.quantize_triton(x, rule, **kw)
    for f in ("data", "scales", "global_scale", "dequant"):
        u, v = getattr(a, f), getattr(b, f)
        assert (u is None and v is None) or torch.equal(u.view(torch.uint8) if u.dtype == torch.float8_e4m3fn else u,
                                                         v.view(torch.uint8) if v.dtype == torch.float8_e4m3fn else v), f
    (to, tn), _ = _mirrored([lambda: _bench_graph(lambda: tq_old.quantize_triton(x, rule, **kw), 50),
                             lambda: _bench_graph(lambda: tq.quantize_triton(x, rule, **kw), 50)])
    mode = {True: "packed", False: "operand", "both": "packed+operand"}[packed]
    print(f"quantizer [{R}, {K}] {rule} {mode}: old {to * 1e3:.1f} new {tn * 1e3:.1f} us (equal)", flush=True)

for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in ((1024, 16, 1) if N == 4096 and K == 4096 else (1024,)):
        x = _activations(M, K, gen)

        def a4(q_mod, g_mod):
            def make(i):
                def f():
                    q = q_mod.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                              launch_dependents=True)
                    return g_mod.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=True)
                return f
            return make
        assert torch.equal(a4(tq_old, tg_old)(0)(), a4(tq, tg)(0)())
        (tb, to, tn), _ = _mirrored([lambda: _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
                                     lambda: _bench_rotating(a4(tq_old, tg_old), cq),
                                     lambda: _bench_rotating(a4(tq, tg), cq)])
        print(f"W4A4 {N}x{K} M={M}: bf16 {tb * 1e3:.1f} old {to * 1e3:.1f} ({to / tb:.3f}x) "
              f"new {tn * 1e3:.1f} ({tn / tb:.3f}x) us (equal)", flush=True)
    del wb, ds, w
