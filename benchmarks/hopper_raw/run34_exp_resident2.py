"""Prepared in session 34, not run: the quantizer with two register-resident chunks a row
(`git apply benchmarks/hopper_raw/run34_quantizer_resident2.patch`, switched by tq._RESIDENT2) vs
one block a thread, side by side, bits compared; then W4A4 end to end at M = 256 / 1024."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch, triton
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_quantize as tq

assert hasattr(tq, "_RESIDENT2"), "apply run34_quantizer_resident2.patch first"
print("| rows x K | rule | mode | copy us | one us | two chunks us | two/one | of copy BW one / two | same bits |")
for R, K in [(256, 4096), (1024, 4096), (4096, 4096), (1024, 2560)]:
    x = torch.randn(R, K, device="cuda").bfloat16()
    x[0, :8] = -0.0
    x[-1, 32:48] = -1e-30  # a block whose scale is 0
    y = torch.empty_like(x)
    for rule in ("mse", "abs_max", "static_6"):
        for packed in (False, True):
            kw = dict(write_packed=packed, dequant_dtype=None if packed else torch.bfloat16)
            o = []
            for r2 in (False, True):
                tq._RESIDENT2 = r2
                o.append(tq.quantize_triton(x, rule, **kw))
            fields = ("data", "scales", "global_scale") if packed else ("dequant", "global_scale")
            same = all(torch.equal(getattr(o[0], f).view(torch.uint8), getattr(o[1], f).view(torch.uint8)) for f in fields)
            def q(r2):
                def m():
                    tq._RESIDENT2 = r2
                    return triton.testing.do_bench_cudagraph(lambda: tq.quantize_triton(x, rule, **kw), rep=60)
                return m
            (tc, t0, t1), _ = bg._mirrored([lambda: triton.testing.do_bench_cudagraph(lambda: y.copy_(x), rep=60),
                                            q(False), q(True)])
            nb = R * K * 2 + (R * K // 2 + R * K // 16 if packed else R * K * 2)
            bw = lambda t: (nb / t) / (2 * R * K * 2 / tc)
            print(f"| {R}x{K} | {rule} | {'packed' if packed else 'operand'} | {tc*1e3:.2f} | {t0*1e3:.2f} | {t1*1e3:.2f} "
                  f"| {t1/t0:.3f} | {bw(t0)*100:.0f}% / {bw(t1)*100:.0f}% | {same} |", flush=True)
tq._RESIDENT2 = False
be = TritonBackend(); a4 = ActivationQuant("mse", "token")
print("\n| N x K | M | bf16 us | W4A4 one us | W4A4 two chunks us | two/one | of bf16 one / two | same out |")
for N, K, M in [(4096, 4096, 1024), (6144, 4096, 1024), (28672, 4096, 1024), (28672, 4096, 256)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    outs = []
    for r2 in (False, True):
        tq._RESIDENT2 = r2
        outs.append(be.linear(x, qw, None, a4))
    def ours(r2):
        def run():
            tq._RESIDENT2 = r2
            return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)
        return run
    (tb, t0, t1), _ = bg._mirrored([lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                                    ours(False), ours(True)])
    tq._RESIDENT2 = False
    print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {t0*1e3:.1f} | {t1*1e3:.1f} | {t1/t0:.3f} | {t0/tb:.3f} / {t1/tb:.3f} "
          f"| {torch.equal(outs[0], outs[1])} |", flush=True)
    del wbs, wqs
