"""37a (prepared in session 36, not run): where else the K64 operand could pay, before changing select_config.
(1) W4A4 at M = 2048 / 4096: the default path (weight decode + the Triton TMA prefill GEMM) vs the wgmma kernel
forced, with the quantizer's K64 operand; (2) W4A4 at M = 256 / 512 on the N = 4096 / 6144 shapes: the default
(tc tiles or wgmma) vs wgmma forced with K64; (3) W4A16 at M = 256 / 1024: the default wgmma (natural order) vs a
permuting gather of the activations (torch.index_select: an upper bound of a dedicated pass) + wgmma with PERM.
Mirrored order, rotating weights, CUDA graphs (bench_gemm's timing); each variant checked against the default."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.k64_order import perm_k64_index
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
WG = tg.GemmConfig(kind="wgmma")


def w4a4_wgmma_k64(x, qw):
    q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, perm_k64=True)
    return tg.fp4_gemm(q.dequant, qw.data, qw.scales, qw.global_scale, ga=q.global_scale, config=WG, a_k64=True)


def w4a16_perm_wgmma(x, qw, inv):
    return tg.fp4_gemm(torch.index_select(x, 1, inv), qw.data, qw.scales, qw.global_scale, config=WG, a_k64=True,
                       gw_float=qw.extra.get("gw_float"))


cases = [("w4a16", 28672, 4096, 1024), ("w4a4", 4096, 4096, 2048), ("w4a4", 4096, 4096, 4096),
         ("w4a4", 28672, 4096, 2048), ("w4a4", 4096, 4096, 256), ("w4a16", 4096, 4096, 1024)]
cases += [("w4a4", N, K, M) for M in (2048, 4096) for N, K in [(6144, 4096), (28672, 4096), (4096, 14336)]
          if (N, M) != (28672, 2048)]
cases += [("w4a4", 6144, 4096, M) for M in (256, 512)] + [("w4a4", 4096, 4096, 512)]
cases += [("w4a16", N, K, M) for (N, K, M) in [(28672, 4096, 256), (4096, 14336, 1024), (6144, 4096, 1024)]]
print("| kind | N x K | M | bf16 us | default us (path) | variant us | variant / default | default / bf16 | variant / bf16 | rel diff |")
print("|---|---|---|---|---|---|---|---|---|---|")
for kind, N, K, M in cases:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    inv = torch.argsort(perm_k64_index(K, "cuda"))
    act = a4 if kind == "w4a4" else a16
    var = (lambda q: w4a4_wgmma_k64(x, q)) if kind == "w4a4" else (lambda q: w4a16_perm_wgmma(x, q, inv))
    y0 = be.linear(x, qw, None, act).float(); y1 = var(qw).float()
    diff = float((y1 - y0).abs().max() / y0.abs().max())
    path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16").short()
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    (tb, td, tv), _ = bg._mirrored([lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                                    lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq),
                                    lambda: bg._bench_rotating(lambda i: (lambda: var(wqs[i])), cq)])
    print(f"| {kind} | {N}x{K} | {M} | {tb*1e3:.1f} | {td*1e3:.1f} ({path}) | {tv*1e3:.1f} | {tv/td:.3f} | {td/tb:.3f} | "
          f"{tv/tb:.3f} | {diff:.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
