"""37f: one partial wave of wgmma tiles (128 < M <= 512) against the selected path (tc tiles or decode + GEMM),
W4A4 (K64 operand) and W4A16 (one weight scale: decode + cuBLAS), by how full the wave is. Mirrored order,
rotating weights, CUDA graphs."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gwg
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
WG = tg.GemmConfig(kind="wgmma")


def w4a4_wg(x, qw):
    q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                        launch_dependents=True, pdl_wait=True, perm_k64=True)
    return tg.fp4_gemm(q.dequant, qw.data, qw.scales, qw.global_scale, ga=q.global_scale, config=WG, pdl=True,
                       a_k64=True)


def w4a16_wg(x, qw):
    return tg.fp4_gemm(x, qw.data, qw.scales, qw.global_scale, config=WG, gw_float=qw.extra.get("gw_float"))


print("| kind | N x K | M | tiles (fill) | bf16 us | selected us (path) | wgmma us | wgmma / selected | rel diff |")
print("|---|---|---|---|---|---|---|---|---|")
cases = [(M, N, 4096) for M in (256,) for N in (4096, 5120, 6144, 8192, 11008)]
cases += [(512, 4096, 4096), (512, 5120, 4096), (384, 4096, 4096), (256, 4096, 14336), (512, 4096, 14336)]
for M, N, K in cases:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    t = gwg.tiles(M, N)
    for kind, act, var in (("w4a4", a4, w4a4_wg), ("w4a16", a16, w4a16_wg)):
        y0 = be.linear(x, qw, None, act).float(); y1 = var(x, qw).float()
        diff = float((y1 - y0).abs().max() / y0.abs().max())
        path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
        (tb, td, tv), _ = bg._mirrored([
            lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
            lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq),
            lambda: bg._bench_rotating(lambda i: (lambda: var(x, wqs[i])), cq)])
        print(f"| {kind} | {N}x{K} | {M} | {t} ({gwg.tiles_fill(M, N, 132):.2f}) | {tb*1e3:.1f} | {td*1e3:.1f} ({path}) | "
              f"{tv*1e3:.1f} | {tv/td:.3f} | {diff:.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
