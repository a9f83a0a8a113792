"""40a (prepared in session 39, not run): the wgmma kernel at small M (16-128) with its K steps split over
CTAs (SPLITS: fp32 partials + the split-K tile counters, the last CTA of a tile adds them in split order) and
inside them (KSPLIT halves), tiles of 16/32/64 activation rows, against the selected path (tc tiles / mma)
and bf16. Needs run40a_wgmma_splitk.patch applied. W4A4 = the quantizer (K64 operand, PDL) + the GEMM.
Mirrored order, rotating weights, CUDA graphs; us."""
import sys, os, time
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gwg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "300"))
MS = [int(m) for m in os.environ.get("MS", "16 64 32 128").split()]
SHAPES = [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]


def sb(qw):
    return qw.scales.view(torch.uint8) if qw.scales.dtype == torch.float8_e4m3fn else qw.scales


def wg(w4a4, tbm, ks, splits):
    def run(x, qw):
        M, N = x.shape[0], qw.data.shape[0]
        out = torch.empty(M, N, dtype=torch.bfloat16, device=x.device)
        if w4a4:
            q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                launch_dependents=True, pdl_wait=True, perm_k64=True)
            gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, q.global_scale, None)
            return gwg.fp4_wgmma_gemm(q.dequant, qw.data, sb(qw), gw, ga, bias, out, sga, ep, pdl=True, perm=True,
                                      tbm=tbm, ksplit=ks, splits=splits)
        gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, None, None)
        return gwg.fp4_wgmma_gemm(x, qw.data, sb(qw), gw, ga, bias, out, sga, ep, tbm=tbm, ksplit=ks, splits=splits)
    return run


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


print("| kind | N x K | M | bf16 us | selected us (path) | best wgmma us (tbm, halves, splits; x sel) | all (tbm/halves/splits: x sel) | max rel diff vs selected |")
print("|---|---|---|---|---|---|---|---|")
for M in MS:
    tbm = 16 if M <= 16 else 32 if M <= 32 else 64
    for N, K in SHAPES:
        if time.time() - T0 > BUDGET:
            print("budget spent"); break
        w = torch.randn(N, K, device="cuda") * 0.02
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
        wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
        cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
        wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
        wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                      extra=dict(qw.extra)) for _ in range(cq - 1)]
        ctas = gwg.tiles(M, N, tbm)
        combos = [(ks, s) for ks in (1, 2) for s in (1, 2, 4, 8) if ctas * s <= 2 * 132 and (K // 64) // s >= 4 * ks]
        for kind, act in (("w4a4", a4), ("w4a16", a16)):
            y0 = be.linear(x, qw, None, act)
            vs = [wg(kind == "w4a4", tbm, ks, s) for ks, s in combos]
            diffs = [rel(v(x, qw), y0) for v in vs]
            path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4",
                                    allow_mma=True).short()
            ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                  lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)]
            ms += [(lambda v=v: bg._bench_rotating(lambda i: (lambda: v(x, wqs[i])), cq)) for v in vs]
            ts, _ = bg._mirrored(ms)
            j = min(range(len(vs)), key=lambda i: ts[2 + i])
            allc = ", ".join(f"{tbm}/{ks}/{s}: {ts[2 + i] / ts[1]:.2f}" for i, (ks, s) in enumerate(combos))
            print(f"| {kind} | {N}x{K} | {M} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} ({path}) | {ts[2 + j]*1e3:.1f} "
                  f"({tbm}, {combos[j][0]}, {combos[j][1]}; {ts[2 + j] / ts[1]:.3f}) | {allc} | {max(diffs):.1e} |",
                  flush=True)
        del wbs, wqs
        torch.cuda.empty_cache()
print(f"elapsed {time.time() - T0:.0f} s")
