"""Run 16l (device): W4A4 with the Gluon kernel under PDL reading 1, 2 or 4 weight tiles before the wait."""
import sys, time
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_gemm as gg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton
import gl_exp3

t0 = time.time()
for N, K in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    warps = gg.mma_warps(N, K)
    cpu_w = nvfp4.NVFP4Tensor(wq.data.cpu(), wq.scales.cpu(), wq.global_scale.cpu())
    for M in (1, 2, 4, 8):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        ref4 = nvfp4.reference_linear(x.cpu(), cpu_w, None, per_row=True).float()
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)

        def cur(i):
            def f():
                q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
                return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=True)
            return f
        line = f"{N}x{K} M={M}: bf16 {tb*1e3:.1f} current {_bench_rotating(cur, cq)*1e3:.2f} ({tg.select_config(M, N, K, torch.device('cuda')).short()})"
        for npre in (1, 2, 4):
            def ex(i, npre=npre):
                def f():
                    q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
                    gw_, ga_, b_, sga, ep = epilogue_args(gw, q.global_scale, None)
                    out = torch.empty((M, N), dtype=torch.bfloat16, device="cuda")
                    return gl_exp3.fp4_mma_gemm(q.dequant, ds[i][0], ds[i][1], gw_, ga_, b_, out, sga, ep, warps,
                                                pdl=True, npre=npre)
                return f
            o = ex(0)().float().cpu()
            err = ((o - ref4).norm() / ref4.norm()).item()
            t = _bench_rotating(ex, cq)
            line += f" | pre{npre} {t*1e3:.2f} ({tb/t:.2f}x)" + ("" if err == 0 else f" err {err:.1e}")
        print(line + f"  [{time.time()-t0:.0f}s]", flush=True)
    del ds, wb, w, wq
    torch.cuda.empty_cache()
