"""35g: W4A4 (and W4A16) at M = 1024 through the backend's linear, as run 35b's second table timed it, three times
on one machine, next to bf16 cuBLAS in mirrored order (the harness that put 4096x4096 W4A4 at 1.262x)."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
print("| N x K | M | rep | bf16 us | W4A16 us | W4A4 us | W4A16 / bf16 | W4A4 / bf16 |")
print("|---|---|---|---|---|---|---|---|")
for N, K in [(4096, 4096), (6144, 4096), (4096, 14336)]:
    M = 1024
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    for rep in range(3):
        (tb, t16, t4), _ = bg._mirrored([
            lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
            lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a16)), cq),
            lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)])
        print(f"| {N}x{K} | {M} | {rep} | {tb*1e3:.1f} | {t16*1e3:.1f} | {t4*1e3:.1f} | {t16/tb:.3f} | {t4/tb:.3f} |", flush=True)
    del wbs, wqs
