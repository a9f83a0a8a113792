"""Run 32a: the wgmma kernel with two K steps an MMA wait (PAIR) vs one, side by side; outputs compared."""
import sys, os
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import gluon_wgmma as g
from vllm_fouroversix.kernels.triton_gemm import select_config

be = TritonBackend()
a16, a4 = ActivationQuant("mse", "none"), ActivationQuant("mse", "token")
gen = torch.Generator(device="cuda").manual_seed(0)
shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
print("| N x K | M | path | bf16 | W4A16 one / pair | W4A4 one / pair | pair/one W4A16, W4A4 | same bits |")
for N, K in shapes:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    for M in [256, 512, 1024]:
        cfg = select_config(M, N, K, torch.device("cuda"), cublas_prefill=False)
        if cfg.kind != "wgmma":
            continue
        x = torch.randn(M, K, device="cuda", generator=gen).to(torch.bfloat16)
        same = True
        for act in (a16, a4):
            g._PAIR = False; o0 = be.linear(x, qw, None, act)
            g._PAIR = True; o1 = be.linear(x, qw, None, act)
            same = same and torch.equal(o0, o1)
        cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
        wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
        wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                      extra=dict(qw.extra)) for _ in range(cq - 1)]
        def ours(act, pair):
            def m():
                g._PAIR = pair
                return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)
            return m
        (tb, t16a, t16b, t4a, t4b), _ = bg._mirrored(
            [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
             ours(a16, False), ours(a16, True), ours(a4, False), ours(a4, True)])
        print(f"| {N}x{K} | {M} | {cfg.short()} | {tb*1e3:.1f} | {t16a*1e3:.1f} / {t16b*1e3:.1f} | {t4a*1e3:.1f} / {t4b*1e3:.1f} "
              f"| {t16b/t16a:.3f}, {t4b/t4a:.3f} | {same} |", flush=True)
        del wb, wqs
    del w, w_bf16, qw, wq
    torch.cuda.empty_cache()
