"""Run 16c (device): the Gluon mma.sync small-M kernel (.scratch/gl_gemv.py) vs the current W4A16 paths."""
import sys, time, itertools
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg
import gl_gemv

be = TritonBackend()
a16 = ActivationQuant("mse", "none")
t0 = time.time()
print("| N x K | M | bf16 (us) | current W4A16 (us) | path | best gluon (us) | config | bf16/current | bf16/gluon | rel err gluon | rel err current |")
print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
for N, K in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32) * wq.global_scale.float()
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    qws = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    gw = qw.global_scale.float().reshape(1)
    for M in (1, 2, 4, 8, 16):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        ref = x.float() @ wdec.T
        cur = be.linear(x, qw, None, a16).float()
        e_cur = ((cur - ref).norm() / ref.norm()).item()
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        tc = _bench_rotating(lambda i: (lambda: be.linear(x, qws[i], None, a16)), cq)
        path = tg.select_config(M, N, K, torch.device("cuda"), cublas_prefill=True).short()
        res = []
        for R, W, pf in itertools.product((1, 2), (4, 8), (False, True)):
            if K % (128 * W):
                continue
            try:
                o = gl_gemv.mma_gemv(x, qw.data, qw.scales, gw, R=R, W=W, prefetch=pf).float()
                err = ((o - ref).norm() / ref.norm()).item()
                t = _bench_rotating(lambda i: (lambda: gl_gemv.mma_gemv(x, qws[i].data, qws[i].scales, gw, R=R, W=W, prefetch=pf)), cq)
            except Exception as e:  # noqa: BLE001
                print(f"   R={R} W={W}: FAILED {type(e).__name__}: {str(e)[:400]}", flush=True)
                continue
            res.append((t, f"R{R} W{W} pf{int(pf)}", err))
            print(f"   {N}x{K} M={M} R={R} W={W} pf={int(pf)}: {t*1e3:.2f} us (bf16/this {tb/t:.2f}x, current {tc*1e3:.2f}) err {err:.1e}", flush=True)
        if res:
            t, name, err = min(res)
            print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {tc*1e3:.1f} | {path} | {t*1e3:.1f} | {name} | {tb/tc:.2f}x | {tb/t:.2f}x | "
                  f"{err:.1e} | {e_cur:.1e} |  [{time.time()-t0:.0f}s]", flush=True)
    del wb, qws, w, wq, qw, wdec
    torch.cuda.empty_cache()
