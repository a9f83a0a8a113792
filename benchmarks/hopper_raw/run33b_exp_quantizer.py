"""Run 33b: the quantizer of 65c203b (old: .scratch/tq_old.py = `git show 65c203b:vllm_fouroversix/kernels/triton_quantize.py`) vs the working tree (new: operand-mode sign masks, FMA errors), side by side."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools")); sys.path.insert(0, os.path.join(os.getcwd(), ".scratch"))
import torch, triton
import bench_gemm as bg
import tq_old
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends import triton as bt
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, pdl_mode
mods = {"old": tq_old, "new": tq}
print("| rows x K | mode | copy us | old us | new us | new/old | of copy BW old / new | same bits |")
for R, K in [(1, 4096), (16, 4096), (1024, 4096), (4096, 4096), (1024, 14336)]:
    x = torch.randn(R, K, device="cuda").bfloat16()
    x[0, :8] = -0.0
    y = torch.empty_like(x)
    for packed in (False, True):
        kw = dict(write_packed=packed, dequant_dtype=None if packed else torch.bfloat16)
        o = [m.quantize_triton(x, "mse", **kw) for m in (tq_old, tq)]
        same = all(torch.equal(getattr(o[0], f).view(torch.uint8), getattr(o[1], f).view(torch.uint8))
                   for f in (("data", "scales") if packed else ("dequant",)))
        def q(m):
            return lambda: triton.testing.do_bench_cudagraph(lambda: m.quantize_triton(x, "mse", **kw), rep=60)
        (tc, t0, t1), _ = bg._mirrored([lambda: triton.testing.do_bench_cudagraph(lambda: y.copy_(x), rep=60), q(tq_old), q(tq)])
        nb = R * K * 2 + (R * K // 2 + R * K // 16 if packed else R * K * 2)
        bw = lambda t: (nb / t) / (2 * R * K * 2 / tc)
        print(f"| {R}x{K} | {'packed' if packed else 'operand'} | {tc*1e3:.2f} | {t0*1e3:.2f} | {t1*1e3:.2f} | {t1/t0:.3f} "
              f"| {bw(t0)*100:.0f}% / {bw(t1)*100:.0f}% | {same} |", flush=True)
be = TritonBackend(); a4 = ActivationQuant("mse", "token")
print("\n| N x K | M | bf16 us | W4A4 old us | W4A4 new us | new/old | of bf16 old / new |")
for N, K, M in [(4096, 4096, 1024), (6144, 4096, 1024), (4096, 14336, 1024), (4096, 4096, 16)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra)) for _ in range(cq - 1)]
    outs = []
    for m in (tq_old, tq):
        bt._KERNELS = (fp4_gemm, pdl_mode, m.quantize_triton)
        outs.append(be.linear(x, qw, None, a4))
    def ours(m):
        def run():
            bt._KERNELS = (fp4_gemm, pdl_mode, m.quantize_triton)
            return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)
        return run
    (tb, t0, t1), _ = bg._mirrored([lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb), ours(tq_old), ours(tq)])
    print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {t0*1e3:.1f} | {t1*1e3:.1f} | {t1/t0:.3f} | {t0/tb:.3f} / {t1/tb:.3f} | same out: {torch.equal(outs[0], outs[1])} |", flush=True)
    del wbs, wqs
