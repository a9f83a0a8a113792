"""Run 19d: the wgmma GEMM's activation-scale epilogue loaded compactly (1-2 loads a thread and a
layout conversion) vs per accumulator column (64 loads a thread; run 19c: 20% slower at M = 1024
without a bias, not with one), and W4A4 end to end."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import gluon_wgmma as gwg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
WG = tg.GemmConfig(kind="wgmma")
for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    bias = torch.randn(N, device="cuda").to(torch.bfloat16)
    for M in (512, 1024):
        x = _activations(M, K, gen)
        q = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
        res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}",
               f"W4A16 {_bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf)), cq)*1e3:.1f}"]
        outs = {}
        for compact in (False, True):
            gwg._GA_COMPACT = compact
            outs[compact] = tg.fp4_gemm(q.dequant, ds[0][0], ds[0][1], gw, ga=q.global_scale, config=WG)
            t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=WG)), cq)
            tb = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, bias=bias, config=WG)), cq)

            def a4(i):
                def f():
                    qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                            launch_dependents=True)
                    return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
                return f
            t4 = _bench_rotating(a4, cq)
            res.append(f"compact={compact}: GEMM ga {t*1e3:.1f}, ga+bias {tb*1e3:.1f}, W4A4 end to end {t4*1e3:.1f}")
        gwg._GA_COMPACT = True
        torch.cuda.synchronize()
        assert torch.equal(outs[False], outs[True]), (N, K, M)
        print(f"{N}x{K} M={M} [{tg.select_config(M, N, K, x.device).short()}]: " + " | ".join(res), flush=True)
    del ds, wb
    torch.cuda.empty_cache()
print("wgmma failed:", tg._WGMMA_FAILED)
