"""Run 23f: W4A4 at M = 1024 (K = 4096): the quantizer's register cap (71 registers = 3 CTAs an SM;
48 = 5 with 4 spilled values, 40 = 6) and where it lets the PDL-launched wgmma GEMM start
(griddepcontrol.launch_dependents at its start = now, after the row amax, at its end; or no PDL).
Mirrored order (each variant timed forward then backward, mean), rotating weights; outputs equal."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

print(torch.cuda.get_device_name(), flush=True)
gen = torch.Generator().manual_seed(0)
for (N, K) in [(4096, 4096), (6144, 4096)]:
    M = 1024
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = _activations(M, K, gen)

    def a4fn(extra, pdl=True):
        def make(i):
            def f():
                tq._EXTRA_LAUNCH = extra
                q = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                       launch_dependents=pdl)
                tq._EXTRA_LAUNCH = {}
                return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=pdl)
            return f
        return make
    variants = {"bf16": lambda i: (lambda: torch.matmul(x, wb[i].T)),
                "W4A16": lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)),
                "W4A4 now": a4fn({}), "W4A4 no PDL": a4fn({}, False),
                "W4A4 after amax": a4fn({"LD_AT": 1}), "W4A4 at end": a4fn({"LD_AT": 2}),
                "W4A4 r48": a4fn({"maxnreg": 48}), "W4A4 r40": a4fn({"maxnreg": 40}),
                "W4A4 r56": a4fn({"maxnreg": 56}), "W4A4 r48 after amax": a4fn({"maxnreg": 48, "LD_AT": 1})}
    ref = a4fn({})(0)()
    for name, mk in variants.items():
        if name.startswith("W4A4"):
            assert torch.equal(mk(0)(), ref), name
    names = list(variants)
    means, (first, second) = _mirrored([lambda mk=variants[n], c=(cb if n == "bf16" else cq): _bench_rotating(mk, c) for n in names])
    print(f"{N}x{K} M={M}: " + " | ".join(f"{n} {m * 1e3:.1f} ({a * 1e3:.1f}, {b * 1e3:.1f})"
                                         for n, m, a, b in zip(names, means, first, second)), flush=True)
    for mr in (None, 56, 48, 40):
        tq._EXTRA_LAUNCH = {"maxnreg": mr} if mr else {}
        t = _bench_graph(lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False,
                                                    dequant_dtype=torch.bfloat16), 50)
        tq._EXTRA_LAUNCH = {}
        print(f"  quantizer alone [{M}, {K}] maxnreg {mr}: {t * 1e3:.1f} us", flush=True)
    del wb, ds, w
