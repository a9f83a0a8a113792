"""Run 14c: W4A4 M = 1/2 GEMV under PDL: tiles and a register cap (all programs resident, so that all
prefetch their first weight tile before the wait); quantizer split policy (128-block programs, K > 4096)."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_quantize as tq

gen = torch.Generator().manual_seed(0)
G = tg.GemmConfig
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.reshape(())
    for M in (1, 2, 16):
        x = torch.randn(M, K, generator=gen).cuda().to(torch.bfloat16)
        cands = [("sel", None, {})]
        if M <= 2:
            cands += [("sel maxnreg128", None, {"maxnreg": 128}),
                      ("1x8x2048 maxnreg128", G("gemv2", BM=1, BN=8, BK=4096, num_warps=4, num_stages=1), {"maxnreg": 128}),
                      ("8x1024", G("gemv2", BM=M, BN=8, BK=2048, num_warps=4, num_stages=1), {}),
                      ("16x1024", G("gemv2", BM=M, BN=16, BK=2048, num_warps=4, num_stages=1), {}),
                      ("16x512", G("gemv2", BM=M, BN=16, BK=1024, num_warps=4, num_stages=1), {})]
        ref = None
        for rep in range(2):
            t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
            t16 = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
            row = [f"bf16 {t_bf*1e3:.1f}", f"W4A16 {t16*1e3:.1f} ({t_bf/t16:.2f}x)"]
            for name, cfg, extra in cands:
                if cfg is not None and K % cfg.BK:
                    continue
                tg._PDL_EXTRA_LAUNCH = extra
                def mk(i, cfg=cfg):
                    def f():
                        q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
                        return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=True, config=cfg)
                    return f
                o = mk(0)()
                if ref is None:
                    ref = o
                d = (o.float() - ref.float()).abs().max().item()
                t4 = _bench_rotating(mk, cq)
                row.append(f"{name} {t4*1e3:.1f} ({t_bf/t4:.2f}x){'' if d == 0 else f' d={d:.2g}'}")
            tg._PDL_EXTRA_LAUNCH = {}
            print(f"{N}x{K} M={M} #{rep}: " + " | ".join(row), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
