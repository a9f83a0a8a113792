"""38e (prepared in session 38, not run): where run 38's tile rows were estimated, not measured: M = 129-191 (64-row
tiles in 3 rows of tiles; W4A16 against decode + cuBLAS, whose time shrinks with M) and W4A4 at M = 768 on
6144x4096 (two partial waves of 256-row tiles, not selected). Columns as 38b's: the selected path is run 38's;
the old path (tc / decode + GEMM) is what select_config picks with the wgmma kernel unusable."""
import sys, os, time
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
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "400"))


def w4a4_wg(x, qw):
    q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                        launch_dependents=True, pdl_wait=True, perm_k64=True)
    return tg.fp4_gemm(q.dequant, qw.data, qw.scales, qw.global_scale, ga=q.global_scale, config=WG, pdl=True,
                       a_k64=True)


def w4a16_wg(x, qw):
    return tg.fp4_gemm(x, qw.data, qw.scales, qw.global_scale, config=WG, gw_float=qw.extra.get("gw_float"))


def old(x, qw, act):
    """The backend's path with the wgmma kernel unusable (tc tiles or decode + GEMM: before run 38 at these M)."""
    tg._WGMMA_FAILED.append("38e: the path without the wgmma kernel"); tg._select.cache_clear()
    try:
        return be.linear(x, qw, None, act)
    finally:
        tg._WGMMA_FAILED.clear(); tg._select.cache_clear()


def with_tbm(tbm, fn):
    def run(x, qw):
        gwg._TBM = tbm
        try:
            return fn(x, qw)
        finally:
            gwg._TBM = 0
    return run


TBMS = (64, 128, 256)
print("| kind | N x K | M | bf16 us | selected us (path) | " + " | ".join(f"tbm {t} us (x sel)" for t in TBMS)
      + " | no wgmma (x sel) | max rel diff |")
print("|---|---|---|---|---|" + "---|" * len(TBMS) + "---|---|")
shapes = [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]
cases = [(M, N, K) for M in (136, 160, 176) for N, K in shapes[:3]] + [(768, 6144, 4096), (640, 6144, 4096)]
for M, N, K in cases:
    if time.time() - T0 > BUDGET:
        print("budget spent"); break
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    for kind, act, var in (("w4a4", a4, w4a4_wg), ("w4a16", a16, w4a16_wg)):
        y0 = be.linear(x, qw, None, act).float()
        diffs = []
        variants = [with_tbm(t, var) for t in TBMS]
        for v in variants:
            y1 = v(x, qw).float()
            diffs.append(float((y1 - y0).abs().max() / y0.abs().max()))
        path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
        ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
              lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)]
        ms += [(lambda v=v: bg._bench_rotating(lambda i: (lambda: v(x, wqs[i])), cq)) for v in variants]
        ms += [lambda: bg._bench_rotating(lambda i: (lambda: old(x, wqs[i], act)), cq)]
        ts, _ = bg._mirrored(ms)
        tb, td = ts[0], ts[1]
        cols = " | ".join(f"{t*1e3:.1f} ({t/td:.3f})" for t in ts[2:])
        print(f"| {kind} | {N}x{K} | {M} | {tb*1e3:.1f} | {td*1e3:.1f} ({path}) | {cols} | {max(diffs):.1e} |",
              flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
print(f"elapsed {time.time() - T0:.0f} s")
