"""36a: W4A4 through the wgmma kernel with the quantizer's operand in the K64 order (PERM) vs the plain order,
next to bf16 cuBLAS and W4A16, mirrored order, rotating weights, CUDA graphs (bench_gemm's timing). Also checks
the two W4A4 outputs against each other and the quantizer's permuted operand bit for bit on the GPU."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.k64_order import permute_k64
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

torch.manual_seed(0)
be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
REPS = int(os.environ.get("REPS", "2"))
# quantizer: permuted operand == permuted plain operand, bit for bit (sm_90 sign-mask path)
for R, K in [(1024, 4096), (300, 14336), (256, 512)]:
    x = bg._activations(R, K, torch.Generator().manual_seed(R))
    for rule in ("mse", "mae", "abs_max", "static_6"):
        a = quantize_triton(x, rule, write_packed=False, dequant_dtype=torch.bfloat16)
        b = quantize_triton(x, rule, write_packed=False, dequant_dtype=torch.bfloat16, perm_k64=True)
        ok = torch.equal(permute_k64(a.dequant).view(torch.int16), b.dequant.view(torch.int16))
        print(f"quantizer perm {R}x{K} {rule}: {'equal' if ok else 'DIFFERENT'}", flush=True)
    for name, fn in [("plain", lambda: quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16)),
                     ("perm", lambda: quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16,
                                                      perm_k64=True))]:
        print(f"quantizer {R}x{K} operand {name}: {bg._bench_graph(fn, 50) * 1e3:.2f} us", flush=True)

print("| N x K | M | rep | bf16 us | W4A16 us | W4A4 plain us | W4A4 K64 us | K64 / plain | plain / bf16 | K64 / bf16 | max rel diff |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for N, K, M in [(4096, 4096, 1024), (6144, 4096, 1024), (28672, 4096, 1024), (4096, 14336, 1024), (28672, 4096, 256),
                (6144, 4096, 512)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    assert tg.k64_operand(M, N, K, x.device), (N, K, M)
    tg._WGMMA_K64 = False; y0 = be.linear(x, qw, None, a4)
    tg._WGMMA_K64 = True; y1 = be.linear(x, qw, None, a4)
    diff = float(((y1.float() - y0.float()).abs().max() / y0.float().abs().max()))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]

    def w4a4(k64):
        def run():
            tg._WGMMA_K64 = k64
            try:
                return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)
            finally:
                tg._WGMMA_K64 = True
        return run
    for rep in range(REPS):
        (tb, t16, tp, tk), _ = bg._mirrored([
            lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
            lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a16)), cq),
            w4a4(False), w4a4(True)])
        print(f"| {N}x{K} | {M} | {rep} | {tb*1e3:.1f} | {t16*1e3:.1f} | {tp*1e3:.1f} | {tk*1e3:.1f} | {tk/tp:.3f} | "
              f"{tp/tb:.3f} | {tk/tb:.3f} | {diff:.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
