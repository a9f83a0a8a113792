"""36b: the K64 operand's two stores (1: each thread its 4-byte pairs; 2: whole 64-value chunks, Triton
exchanging the values) -- the quantizer alone and W4A4 end to end through the wgmma kernel, mirrored order."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, triton_quantize as tq
from vllm_fouroversix.kernels.k64_order import permute_k64

be = TritonBackend(); a4 = ActivationQuant("mse", "token")


def with_store(store, fn):
    def run():
        tq._PERM64_STORE = store
        try:
            return fn()
        finally:
            tq._PERM64_STORE = 1
    return run


for R, K in [(1024, 4096), (4096, 4096), (1024, 14336), (300, 14336), (256, 4096)]:
    x = bg._activations(R, K, torch.Generator().manual_seed(R + K))
    plain = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16)
    for store in (1, 2):
        tq._PERM64_STORE = store
        b = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, perm_k64=True)
        assert torch.equal(permute_k64(plain.dequant).view(torch.int16), b.dequant.view(torch.int16)), (R, K, store)
    tq._PERM64_STORE = 1
    q = lambda perm: (lambda: tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16,
                                                 perm_k64=perm))
    (tp, t1, t2), _ = bg._mirrored([lambda: bg._bench_graph(q(False), 50), with_store(1, lambda: bg._bench_graph(q(True), 50)),
                                    with_store(2, lambda: bg._bench_graph(q(True), 50))])
    print(f"quantizer {R}x{K} operand: plain {tp*1e3:.2f} us, K64 store 1 {t1*1e3:.2f} ({t1/tp:.3f}), "
          f"store 2 {t2*1e3:.2f} ({t2/tp:.3f})", flush=True)

print("| N x K | M | bf16 us | W4A4 plain us | K64 store 1 us | K64 store 2 us | 1 / plain | 2 / plain | 2 / 1 |")
print("|---|---|---|---|---|---|---|---|---|")
for N, K, M in [(4096, 4096, 1024), (6144, 4096, 1024), (28672, 4096, 1024), (4096, 14336, 1024), (28672, 4096, 256)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]

    def w4a4(k64, store):
        def run():
            tg._WGMMA_K64 = k64; tq._PERM64_STORE = store
            try:
                return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)
            finally:
                tg._WGMMA_K64 = True; tq._PERM64_STORE = 1
        return run
    (tb, tp, t1, t2), _ = bg._mirrored([lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                                        w4a4(False, 1), w4a4(True, 1), w4a4(True, 2)])
    print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {tp*1e3:.1f} | {t1*1e3:.1f} | {t2*1e3:.1f} | {t1/tp:.3f} | {t2/tp:.3f} | "
          f"{t2/t1:.3f} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
