"""Run 16i (device): the Gluon kernel with an M split (M = 9..16 as two 8-row CTAs) and an f16 variant
for W4A4 (weights decoded through E4M3 -> f16 hardware conversion; the quantizer's exact q*s in f16)."""
import sys, time
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_gemm as gg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton
import gl_exp

t0 = time.time()
print("| N x K | M | bf16 | W4A16 current | W4A16 exp (bf16, M split) | W4A4 current | W4A4 exp bf16 | W4A4 exp f16 | errs |")
print("|---|---|---|---|---|---|---|---|---|", flush=True)
for N, K in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32) * gw
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    warps = gg.mma_warps(N, K)
    for M in (2, 4, 8, 12, 16):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        pdl = M <= 4 and K <= 8192

        def exp_gemm(a, i, ga=None):
            gw_, ga_, b_, sga, ep = epilogue_args(gw, ga, None)
            out = torch.empty((M, N), dtype=torch.bfloat16, device="cuda")
            return gl_exp.fp4_mma_gemm(a, ds[i][0], ds[i][1], gw_, ga_, b_, out, sga, ep, warps, pdl=pdl and ga is not None)

        def w4(i, dt, exp):
            def f():
                q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=dt, launch_dependents=True)
                if exp:
                    return exp_gemm(q.dequant, i, q.global_scale)
                return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=True)
            return f
        ref16 = x.float() @ wdec.T
        ref4 = nvfp4.reference_linear(x.cpu(), nvfp4.NVFP4Tensor(wq.data.cpu(), wq.scales.cpu(), wq.global_scale.cpu()),
                                      None, per_row=True).float()
        errs = []
        o = exp_gemm(x, 0).float(); errs.append(((o - ref16).norm() / ref16.norm()).item())
        for dt in (torch.bfloat16, torch.float16):
            o = w4(0, dt, True)().float().cpu(); errs.append(((o - ref4).norm() / ref4.norm()).item())
        o = w4(0, torch.bfloat16, False)().float().cpu(); errs.append(((o - ref4).norm() / ref4.norm()).item())
        t16c = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
        t16e = _bench_rotating(lambda i: (lambda: exp_gemm(x, i)), cq)
        t4c = _bench_rotating(lambda i: w4(i, torch.bfloat16, False), cq)
        t4b = _bench_rotating(lambda i: w4(i, torch.bfloat16, True), cq)
        t4f = _bench_rotating(lambda i: w4(i, torch.float16, True), cq)
        print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {t16c*1e3:.1f} ({tb/t16c:.2f}x) | {t16e*1e3:.1f} ({tb/t16e:.2f}x) | "
              f"{t4c*1e3:.1f} ({tb/t4c:.2f}x) | {t4b*1e3:.1f} ({tb/t4b:.2f}x) | {t4f*1e3:.1f} ({tb/t4f:.2f}x) | "
              f"{' '.join(f'{e:.1e}' for e in errs)} |  [{time.time()-t0:.0f}s]", flush=True)
    del ds, wb, w, wq, wdec
    torch.cuda.empty_cache()
