"""Run 21: (a) the wgmma GEMM as a programmatic dependent of the quantizer; (b) the quantizer
(operand mode, mse, per row) with its registers capped at 64 (more CTAs an SM: a single wave
of 1024 rows at K = 14336, 4 instead of 3 CTAs at K = 4096); W4A4 end to end at M = 1024."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
CAPS = {"regs free": {}, "maxnreg 64": {"maxnreg": 64}}
# (b) the quantizer alone (CUDA graph, one input)
for K in (4096, 14336):
    for R in (512, 1024, 2048, 4096):
        x = _activations(R, K, gen)
        res, ref = [], None
        for name, extra in CAPS.items():
            tq._EXTRA_LAUNCH = extra
            fq = lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
            q = fq()
            torch.cuda.synchronize()
            if ref is None:
                ref = q
            assert torch.equal(q.dequant, ref.dequant) and torch.equal(q.global_scale, ref.global_scale), name
            res.append(f"{name} {_bench_graph(fq, 100)*1e3:.1f}")
            fp = lambda: tq.quantize_triton(x, "mse", per_row=True)
            res.append(f"packed {_bench_graph(fp, 100)*1e3:.1f}")
        tq._EXTRA_LAUNCH = {}
        cp = _bench_graph(lambda: x.clone(), 100)
        print(f"quantizer [{R}, {K}] us: " + " | ".join(res) + f" | copy {cp*1e3:.1f}", flush=True)
        del x
# (a)+(b) W4A4 at M = 1024 end to end (rotating weights)
for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    M = 1024
    x = _activations(M, K, gen)
    path = tg.select_config(M, N, K, x.device).short()
    res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}"]
    res.append(f"W4A16 {_bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)*1e3:.1f}")
    outs = {}
    for name, pdl, wpdl, cap in (("plain", False, False, {}), ("PDL (run 20)", True, False, {}),
                                 ("PDL+wgmma dep", True, True, {}), ("PDL+wgmma dep+cap64", True, True, {"maxnreg": 64}),
                                 ("PDL+cap64", True, False, {"maxnreg": 64})):
        tg._WGMMA_PDL = wpdl
        tq._EXTRA_LAUNCH = cap

        def a4(i):
            def f():
                qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                        launch_dependents=pdl)
                return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=pdl)
            return f
        outs[name] = a4(0)()
        res.append(f"{name} {_bench_rotating(a4, cq)*1e3:.1f}")
    tg._WGMMA_PDL = True
    tq._EXTRA_LAUNCH = {}
    torch.cuda.synchronize()
    for k, v in outs.items():
        assert torch.equal(outs["plain"], v), (N, K, M, k)
    print(f"{N}x{K} M={M} [{path}] us: " + " | ".join(res), flush=True)
    del ds, wb
    torch.cuda.empty_cache()
print("wgmma failed:", tg._WGMMA_FAILED)
