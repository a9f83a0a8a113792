"""40e (prepared in session 40, not run): K split over CTAs for the wgmma kernel at 128 < M <= 256 too, where
its 64/128-row tiles leave the SMs partly idle (e.g. 4096x4096 M = 136-192: 96 CTAs on 132 SMs). The backend's
linear with select_config's wgmma choice forced to split_k = 2 / 4 (only where the plan is one launch),
against the selected choice (one split) and bf16; W4A16 and W4A4. Rotating weights, CUDA graphs, mirrored
order; us. Output diffs against the selected path (W4A4 equal: exact fp32 products; W4A16: summation order)."""
import sys, os, time
from dataclasses import replace
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gwg

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "200"))
MS = [int(m) for m in os.environ.get("MS", "136 192 256").split()]
SHAPES = [(4096, 4096), (6144, 4096), (4096, 14336)]
_orig = tg._select


def forced(splits):
    def sel(M, N, K, sms, cublas_prefill, mma, wgmma, a_k64=False):
        c = _orig(M, N, K, sms, cublas_prefill, mma, wgmma, a_k64)
        if (c.kind == "wgmma" and M > 128 and len(gwg.plan(M, N, sms, c.BM)) == 1
                and (K // gwg.BK) // splits >= 8):
            c = replace(c, split_k=splits)
        return c
    return sel


def with_splits(splits, f):
    def run():
        tg._select = forced(splits) if splits > 1 else _orig
        try:
            return f()
        finally:
            tg._select = _orig
    return run


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


print("| kind | N x K | M | selected | CTAs | bf16 us | selected us | 2 splits (x sel) | 4 splits (x sel) | max rel diff |")
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
            cfg = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4")
            if cfg.kind != "wgmma":
                print(f"| {kind} | {N}x{K} | {M} | {cfg.short()} | - | not wgmma |"); continue
            y0 = be.linear(x, qw, None, act)
            ys = [with_splits(s, lambda: be.linear(x, qw, None, act))() for s in (2, 4)]
            ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)]
            ms += [with_splits(s, lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq))
                   for s in (1, 2, 4)]
            ts, _ = bg._mirrored(ms)
            print(f"| {kind} | {N}x{K} | {M} | {cfg.short()} | {gwg.tiles(M, N, cfg.BM)} | {ts[0]*1e3:.1f} | "
                  f"{ts[1]*1e3:.1f} | {ts[2]*1e3:.1f} ({ts[2] / ts[1]:.3f}) | {ts[3]*1e3:.1f} ({ts[3] / ts[1]:.3f}) | "
                  f"{max(rel(y, y0) for y in ys):.1e} |", flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
assert not tg._WGMMA_FAILED, tg._WGMMA_FAILED
print(f"elapsed {time.time() - T0:.0f} s")
