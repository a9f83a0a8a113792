"""Run 26d: the M = 1 GEMV's FMA chain in byte order 0, 4, 1, 5, ... (FMA_CHAIN = 2: both activation loads
of a block used at once, so ptxas issues them with the weight's loads; 72 -> 90 registers at 8 x 1024 B)
against main's 0, 1, 2, ... (ncu 26c: ~12% of the GEMV's stall samples wait on activation loads placed
inside the chain). W4A16 (fp4_gemm) and W4A4 (the backend), rotating weights, mirrored order."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg

print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
be = TritonBackend()
a4 = ActivationQuant("mse", "token")
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (14336, 4096), (4096, 11008)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    wb = [w.to(bf) for _ in range(cb)]
    qws = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    del w
    for M in (1,):
        x = (torch.randn(M, K, device="cuda") * 2).to(bf)
        cfg = tg.select_config(M, N, K, torch.device("cuda"), cublas_prefill=False)

        def w16(i, ch):
            tg._GEMV_CHAIN = ch
            out = tg.fp4_gemm(x, qws[i].data, qws[i].scales, qws[i].global_scale, out_dtype=bf)
            tg._GEMV_CHAIN = 1
            return out

        def w4(i, ch):
            tg._GEMV_CHAIN = ch
            out = be.linear(x, qws[i], None, a4)
            tg._GEMV_CHAIN = 1
            return out

        d16 = (w16(0, 2).float() - w16(0, 1).float()).abs().max().item() / w16(0, 1).float().abs().max().item()
        d4 = (w4(0, 2).float() - w4(0, 1).float()).abs().max().item() / w4(0, 1).float().abs().max().item()
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
                  (lambda i: (lambda: w16(i, 1)), cq), (lambda i: (lambda: w16(i, 2)), cq),
                  (lambda i: (lambda: w4(i, 1)), cq), (lambda i: (lambda: w4(i, 2)), cq)]
        names = ["bf16", "W4A16 main", "W4A16 chain 0,4,1,5", "W4A4 main", "W4A4 chain 0,4,1,5"]
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M} cfg {cfg.short()}  max rel diff chain2 vs main: W4A16 {d16:.2e}, W4A4 {d4:.2e}")
        for j, (n, m, u, v) in enumerate(zip(names, means, ra, rb)):
            base = means[1] if j in (1, 2) else (means[3] if j in (3, 4) else m)
            print(f"  {n:24s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.3f}"
                  f"  this/main {m / base:.3f}", flush=True)
    del wb, qws
