"""37b: the wgmma kernel beyond M = 1024 where the prefill GEMM is not cuBLAS (W4A4 with its K64 operand;
W4A16 with a per-row weight scale), against main's decode + Triton prefill GEMM; and how W4A4 should chain the
quantizer and the wgmma kernel there (PDL early / late / plain). Mirrored order, rotating weights, CUDA graphs."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")


def main_path(fn):
    def go():
        tg._WGMMA_PREFILL = False
        try:
            return fn()
        finally:
            tg._WGMMA_PREFILL = True
    return go


def w4a4(x, qw, mode):
    q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                        launch_dependents=mode == "early", pdl_wait=mode is not None, perm_k64=True)
    return tg.fp4_gemm(q.dequant, qw.data, qw.scales, qw.global_scale, ga=q.global_scale,
                       pdl=mode is not None, a_k64=True)


def run(kind, N, K, M):
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    if kind == "w4a16v":  # a per-row weight scale (fused shards): no cuBLAS prefill
        qw = QuantizedWeight(qw.data, qw.scales, qw.global_scale.expand(N).contiguous(), N, K,
                             extra={**qw.extra, "gw_float": None})
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    act = a4 if kind == "w4a4" else a16
    path_main = tg.select_config(M, N, K, x.device, cublas_prefill=False)
    tg._WGMMA_PREFILL = False; path_main = tg.select_config(M, N, K, x.device, cublas_prefill=False).short()
    tg._WGMMA_PREFILL = True; path_new = tg.select_config(M, N, K, x.device, cublas_prefill=False).short()
    y0 = main_path(lambda: be.linear(x, qw, None, act))().float()
    y1 = be.linear(x, qw, None, act).float()
    diff = float((y1 - y0).abs().max() / y0.abs().max())
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    big = M * N * K > 2**36
    kw = dict(reps=8, min_calls=8) if big else {}
    ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb, **kw),
          lambda: bg._bench_rotating(lambda i: main_path(lambda: be.linear(x, wqs[i], None, act)), cq, **kw),
          lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq, **kw)]
    names = ["new (backend)"]
    if kind == "w4a4" and not big:
        for mode in ("early", "late", None):
            ms.append((lambda md: lambda: bg._bench_rotating(lambda i: (lambda: w4a4(x, wqs[i], md)), cq, **kw))(mode))
            names.append(f"pdl {mode}")
    t, _ = bg._mirrored(ms)
    tb, tm = t[0], t[1]
    rest = " | ".join(f"{n} {v*1e3:.1f} ({v/tm:.3f})" for n, v in zip(names, t[2:]))
    print(f"| {kind} | {N}x{K} | {M} | {tb*1e3:.1f} | {tm*1e3:.1f} ({path_main}, {tm/tb:.3f}x bf16) | {path_new} | "
          f"{rest} | new {t[2]/tb:.3f}x bf16 | {diff:.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()


print("| kind | N x K | M | bf16 us | main us | new path | variants us (/ main) | new / bf16 | rel diff |")
print("|---|---|---|---|---|---|---|---|---|")
shapes = [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]
for M in (1024, 1536, 2048, 4096):
    for N, K in shapes:
        run("w4a4", N, K, M)
for N, K in [(4096, 4096), (4096, 14336)]:
    run("w4a4", N, K, 8192)
for M in (2048, 4096):
    for N, K in [(4096, 4096), (28672, 4096), (6144, 4096)]:
        run("w4a16v", N, K, M)
