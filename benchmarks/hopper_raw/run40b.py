"""40b: the backend's linear with the wgmma kernel's K split over CTAs at 16 < M <= 128 (select_config now)
against the same backend with it off (tg._WGMMA_SPLIT_K = False: the split-K tensor-core tiles, as before
run 40) and bf16 cuBLAS; W4A16 (bf16 activations) and W4A4 (4/6 per-token quantizer + GEMM). Rotating
weights, CUDA graphs, mirrored order; us. Also the selected outputs against the old path's (max rel diff)."""
import sys, os, time
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "300"))
MS = [int(m) for m in os.environ.get("MS", "17 32 48 64 96 128").split()]
SHAPES = [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]


def with_flag(on, f):
    def run():
        tg._WGMMA_SPLIT_K = on
        try:
            return f()
        finally:
            tg._WGMMA_SPLIT_K = True
    return run


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


print("| kind | N x K | M | path now | bf16 us | before us | now us | now / before | bf16 / now | max rel diff |")
print("|---|---|---|---|---|---|---|---|---|---|")
for N, K in SHAPES:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16)
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    for M in MS:
        if time.time() - T0 > BUDGET:
            print("budget spent"); break
        x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
        for kind, act in (("w4a4", a4), ("w4a16", a16)):
            y_now = be.linear(x, qw, None, act)
            y_old = with_flag(False, lambda: be.linear(x, qw, None, act))()
            path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
            ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                  with_flag(False, lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)),
                  with_flag(True, lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq))]
            ts, _ = bg._mirrored(ms)
            print(f"| {kind} | {N}x{K} | {M} | {path} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} | {ts[2]*1e3:.1f} | "
                  f"{ts[2] / ts[1]:.3f} | {ts[0] / ts[2]:.2f} | {rel(y_now, y_old):.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
print(f"elapsed {time.time() - T0:.0f} s")
