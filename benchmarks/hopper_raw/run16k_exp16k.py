"""Run 16k (device): Gluon kernel, each warp's K tiles contiguous vs interleaved across the CTA's warps."""
import sys, time, itertools
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
import gl_exp2

t0 = time.time()
for N, K in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32) * gw
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    for M in (1, 4, 8):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        ref = x.float() @ wdec.T
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        tc = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
        line = f"{N}x{K} M={M}: bf16 {tb*1e3:.1f} current {tc*1e3:.2f} ({tg.select_config(M, N, K, torch.device('cuda')).short()})"
        for W, contig in itertools.product((4, 8, 16), (False, True)):
            if K % (128 * W):
                continue

            def g(i):
                gw_, ga_, b_, sga, ep = epilogue_args(gw, None, None)
                out = torch.empty((M, N), dtype=torch.bfloat16, device="cuda")
                return lambda: gl_exp2.fp4_mma_gemm(x, ds[i][0], ds[i][1], gw_, ga_, b_, out, sga, ep, W, contig=contig)
            o = g(0)().float()
            err = ((o - ref).norm() / ref.norm()).item()
            t = _bench_rotating(g, cq)
            line += f" | W{W}{'c' if contig else 'i'} {t*1e3:.2f}" + ("" if err < 5e-3 else f" ERR {err:.1e}")
        print(line + f"  [{time.time()-t0:.0f}s]", flush=True)
    del ds, wb, w, wq, wdec
    torch.cuda.empty_cache()
