"""39b: (A) the wgmma kernel after the K-halves change against the kernel before it (.scratch/gluon_wgmma_old.py,
d5b4071), same tiles, one K half (must be bit-equal) and the default (two halves at 64-row tiles where
k_splits says); (B) the backend's linear with the new selection against the same with one K half
(gluon_wgmma.k_splits -> 1) and bf16; (C) W4A4/W4A16 6144x4096 M = 640/768 against the path without wgmma.
Mirrored order, rotating weights, CUDA graphs; us."""
import sys, os, time
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
sys.path.insert(0, os.path.join(os.getcwd(), ".scratch"))
import torch
import bench_gemm as bg
import gluon_wgmma_old as old
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gwg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "400"))
PART = os.environ.get("PART", "ABC")


def sb(qw):
    return qw.scales.view(torch.uint8) if qw.scales.dtype == torch.float8_e4m3fn else qw.scales


def gemm(mod, w4a4, **kw):
    def run(x, qw):
        M, N = x.shape[0], qw.data.shape[0]
        out = torch.empty(M, N, dtype=torch.bfloat16, device=x.device)
        if w4a4:
            q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                launch_dependents=True, pdl_wait=True, perm_k64=True)
            gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, q.global_scale, None)
            return mod.fp4_wgmma_gemm(q.dequant, qw.data, sb(qw), gw, ga, bias, out, sga, ep, pdl=True, chain=True,
                                      perm=True, **kw)
        gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, None, None)
        return mod.fp4_wgmma_gemm(x, qw.data, sb(qw), gw, ga, bias, out, sga, ep, chain=True, **kw)
    return run


def ks1(fn):
    def run(*a):
        keep = gwg.k_splits
        gwg.k_splits = lambda *a: 1
        try:
            return fn(*a)
        finally:
            gwg.k_splits = keep
    return run


def no_wgmma(x, qw, act):
    tg._WGMMA_FAILED.append("39b: the path without the wgmma kernel"); tg._select.cache_clear()
    try:
        return be.linear(x, qw, None, act)
    finally:
        tg._WGMMA_FAILED.clear(); tg._select.cache_clear()


def setup(M, N, K):
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    return x, qw, wbs, wqs, cb, cq


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


if "A" in PART:
    print("(A) kernel: before (d5b4071) -> now, the tile rows of tile_rows")
    print("| kind | N x K | M | tile rows | K halves now | before us | now us (x before) | now, 1 half us (x before) | diff 1 half vs before | rel diff now vs before |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for M, N, K in [(192, 4096, 14336), (256, 4096, 4096), (512, 4096, 4096), (1024, 4096, 4096), (1024, 6144, 4096),
                    (256, 28672, 4096), (136, 4096, 4096)]:
        if time.time() - T0 > BUDGET:
            print("budget spent"); break
        x, qw, wbs, wqs, cb, cq = setup(M, N, K)
        tbm = gwg.tile_rows(M, N, 132)
        for kind in ("w4a4", "w4a16"):
            w4 = kind == "w4a4"
            vs = [gemm(old, w4), gemm(gwg, w4), gemm(gwg, w4, ksplit=1)]
            ys = [v(x, qw) for v in vs]
            ms = [(lambda v=v: bg._bench_rotating(lambda i: (lambda: v(x, wqs[i])), cq)) for v in vs]
            ts, _ = bg._mirrored(ms)
            print(f"| {kind} | {N}x{K} | {M} | {tbm} | {gwg.k_splits(tbm, K, w4)} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} ({ts[1]/ts[0]:.3f}) | "
                  f"{ts[2]*1e3:.1f} ({ts[2]/ts[0]:.3f}) | {rel(ys[2], ys[0]):.1e} | {rel(ys[1], ys[0]):.1e} |", flush=True)
        del wbs, wqs; torch.cuda.empty_cache()

if "B" in PART:
    print("(B) backend linear: now (selected) against one K half and bf16")
    print("| kind | N x K | M | bf16 us | selected us (path) | one K half us (x sel) | sel / bf16 | rel diff |")
    print("|---|---|---|---|---|---|---|---|")
    for M in (136, 192, 256):
        for N, K in [(4096, 4096), (4096, 14336), (6144, 4096)]:
            if time.time() - T0 > BUDGET:
                print("budget spent"); break
            x, qw, wbs, wqs, cb, cq = setup(M, N, K)
            for kind, act in (("w4a4", a4), ("w4a16", a16)):
                y0 = be.linear(x, qw, None, act); y1 = ks1(be.linear)(x, qw, None, act)
                path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
                ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                      lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq),
                      lambda: bg._bench_rotating(lambda i: (lambda: ks1(be.linear)(x, wqs[i], None, act)), cq)]
                ts, _ = bg._mirrored(ms)
                print(f"| {kind} | {N}x{K} | {M} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} ({path}) | {ts[2]*1e3:.1f} ({ts[2]/ts[1]:.3f}) | "
                      f"{ts[1]/ts[0]:.2f} | {rel(y0, y1):.1e} |", flush=True)
            del wbs, wqs; torch.cuda.empty_cache()

if "C" in PART:
    print("(C) 6144x4096: selected against the path without the wgmma kernel")
    print("| kind | M | bf16 us | selected us (path) | no wgmma us (x sel) | rel diff |")
    print("|---|---|---|---|---|---|")
    for M in (640, 768):
        x, qw, wbs, wqs, cb, cq = setup(M, 6144, 4096)
        for kind, act in (("w4a4", a4), ("w4a16", a16)):
            y0 = be.linear(x, qw, None, act); y1 = no_wgmma(x, qw, act)
            path = tg.select_config(M, 6144, 4096, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
            ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
                  lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq),
                  lambda: bg._bench_rotating(lambda i: (lambda: no_wgmma(x, wqs[i], act)), cq)]
            ts, _ = bg._mirrored(ms)
            print(f"| {kind} | {M} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} ({path}) | {ts[2]*1e3:.1f} ({ts[2]/ts[1]:.3f}) | {rel(y0, y1):.1e} |",
                  flush=True)
        del wbs, wqs; torch.cuda.empty_cache()
print(f"elapsed {time.time() - T0:.0f} s")
