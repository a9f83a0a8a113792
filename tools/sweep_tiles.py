"""Sweep the GEMM tiles of the Triton path next to bf16 cuBLAS (H100; W4A16).

For each Llama-3-8B shape and each M (default 1, 4, 16, 32): the configuration
that ``select_config`` picks, then candidate GEMV (M <= 4), small tensor-core
(M <= 32) or large fused tensor-core tiles and the decode-then-GEMM path 'dq'
(M > 32; called without the host-side weight scale, so its GEMM is the Triton tile
that W4A4 prefill uses, not cuBLAS), each checked against an fp32 product with the
decoded weight and timed with rotating weight copies in a CUDA graph (as
``bench_gemm.py --rotate``), bf16 ``torch.matmul`` timed in the same run. The 8
fastest are printed.

    PYTHONPATH=. python3 tools/sweep_tiles.py [--ms 1 4 16 32] [--grid]
    PYTHONPATH=. python3 tools/sweep_tiles.py --ms 256 1024 4096     # prefill tiles
    PYTHONPATH=. python3 tools/sweep_tiles.py --w4a4 --ms 1 4 16     # quantizer + GEMM, with/without PDL

``--grid``: for M <= 4, every GEMV tile of a wider list with splits 1/2/4/8 (64
configurations) instead of the short list. This is the sweep behind
``select_config``'s M <= 32 choices (benchmarks/hopper.md, run 11, whose runs also
had two experimental options since removed: gemv2 register prefetch and the
tensor-core ``pk`` K permutation).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gemm import _bench_rotating, _copies  # noqa: E402

SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]


GEMV_TILES = ((16, 512, 4), (32, 256, 4), (32, 512, 4), (32, 1024, 8), (64, 256, 4), (64, 512, 8), (16, 1024, 4),
              (32, 512, 8))  # (BN, BK, warps)


def candidates(M: int, grid: bool = False):
    from vllm_fouroversix.kernels.triton_gemm import GemmConfig as C

    if M <= 4:
        if grid:
            tiles = [(bn, bk, nw, sk) for bn, bk, nw in GEMV_TILES for sk in (1, 2, 4, 8)]
        else:
            tiles = [(16, 1024, 4, 1), (16, 1024, 4, 2), (16, 1024, 4, 4), (16, 512, 4, 4), (64, 512, 8, 4),
                     (32, 1024, 8, 2), (32, 512, 4, 1)]
        gemv = [C("gemv2", BM=1 << (M - 1).bit_length(), BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk) for bn, bk, nw, sk in tiles]
        if M == 1:
            return gemv
        # M = 2..4: the 16-row tensor-core tile too (rows past M masked; the MMA has room to spare)
        return gemv + [C("tc", BM=16, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk)
                       for bn, bk, nw, st in ((64, 256, 4, 3), (32, 256, 4, 3), (64, 128, 4, 4), (128, 256, 8, 3))
                       for sk in (1, 4)]
    if M > 32:
        # Fused decode-in-the-main-loop tiles (wgmma on sm_90; 'tcT' keeps the decoded
        # weight in registers as wgmma's A operand) against decode-then-cuBLAS.
        big = [("tcT", 128, 128, 64, 8, 3), ("tcT", 128, 128, 64, 8, 4), ("tcT", 256, 128, 64, 8, 3),
               ("tcT", 128, 256, 64, 8, 3), ("tcT", 128, 128, 128, 8, 3), ("tcT", 64, 128, 64, 4, 4),
               ("tcT", 128, 64, 64, 4, 4), ("tcT", 64, 64, 128, 4, 4), ("tc", 128, 128, 64, 8, 3),
               ("tc", 128, 256, 64, 8, 3), ("tc", 64, 128, 64, 4, 4)]
        return [C("dq")] + [C(kind, BM=bm, BN=bn, BK=bk, num_warps=nw, num_stages=st)
                            for kind, bm, bn, bk, nw, st in big if bm <= 2 * M]
    BM = 16 if M <= 16 else 32
    return [C(kind, BM=BM, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk)
            for kind, bn, bk, nw, st in (("tc", 64, 256, 4, 3), ("tc", 32, 256, 4, 3), ("tc", 64, 128, 4, 4),
                                         ("tc", 128, 256, 8, 3), ("tc", 64, 512, 4, 2), ("tcT", 64, 256, 4, 3),
                                         ("tcT", 128, 128, 4, 3))
            for sk in (1, 4)]


def _w4a4_rows(x, wq, ds, copies, cfg, t_bf, label) -> None:
    """W4A4 as the Triton backend runs it (per-token 4/6 quantizer, then the GEMM on its
    bf16 operand), as two plain launches and with programmatic dependent launch."""
    from vllm_fouroversix.kernels import triton_gemm as tg
    from vllm_fouroversix.kernels.triton_quantize import quantize_triton

    def run(i, cfg, pdl):
        q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=pdl)
        return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], wq.global_scale, ga=q.global_scale, config=cfg, pdl=pdl)

    ref = run(0, cfg, False).float()
    print(f"== W4A4 {label} bf16 {t_bf * 1e3:.1f} us", flush=True)
    rows = [("plain", cfg, False), ("pdl", cfg, True)]
    if cfg.kind == "gemv2" and x.shape[0] > 1:  # the tensor-core tile for M = 2..4 as well
        rows.append(("plain", tg.GemmConfig("tc", BM=16, BN=64, BK=256, num_warps=4, num_stages=3), False))
    for name, c, pdl in rows:
        c = tg._with_split(c, x.shape[0], ds[0][0].shape[0], x.shape[1], tg.num_sms(x.device))
        out = run(0, c, pdl).float()
        # another tile sums in another fp32 order: report how far, not just whether equal
        same = "same output" if torch.equal(out, ref) else f"rel diff {((out - ref).norm() / ref.norm()).item():.1e}"
        t = _bench_rotating(lambda i, c=c, pdl=pdl: (lambda: run(i, c, pdl)), copies, reps=15)
        print(f"   {t * 1e3:6.1f} us {t_bf / t:5.2f}x  {name} {c.short()} {same}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--grid", action="store_true", help="M <= 4: 8 GEMV tiles x splits 1/2/4/8")
    ap.add_argument("--w4a4", action="store_true",
                    help="instead: W4A4 (quantizer + GEMM) with the selected tile, with and without PDL")
    args = ap.parse_args()
    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.kernels import triton_gemm as tg

    gen = torch.Generator().manual_seed(0)
    t0 = time.time()
    for N, K in SHAPES:
        w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
        wq = nvfp4.quantize(w, "mse")
        wb = w.to(torch.bfloat16)
        wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32)
        cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
        wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
        ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
        gw = torch.ones((), device="cuda")
        for M in args.ms:
            x = torch.randn(M, K, generator=gen).cuda().to(torch.bfloat16)
            ref = x.float() @ wdec.T
            t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
            rows = []
            sel_cfg = tg.select_config(M, N, K, x.device)
            if args.w4a4:
                _w4a4_rows(x, wq, ds, cq, sel_cfg, t_bf, f"{N}x{K} M={M}")
                continue
            cands = [sel_cfg] + [c for c in candidates(M, args.grid) if c != sel_cfg]
            for cfg in cands:
                try:
                    out = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=cfg).float()
                    err = ((out - ref).norm() / ref.norm()).item()
                    if err > 1e-2:
                        rows.append((1e9, cfg.short(), f"BAD err {err:.1e}"))
                        continue
                    t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)),
                                        cq, reps=15)
                    rows.append((t, cfg.short(), f"err {err:.1e}"))
                except Exception as e:  # noqa: BLE001 - a failing candidate is reported, the sweep goes on
                    rows.append((1e9, cfg.short(), f"FAIL {type(e).__name__} {str(e)[:120]}"))
            sel = rows[0]
            print(f"== {N}x{K} M={M} bf16 {t_bf * 1e3:.1f} us; selected {sel[1]} {sel[0] * 1e3:.1f} us "
                  f"({t_bf / sel[0]:.2f}x)  [{time.time() - t0:.0f}s]", flush=True)
            for t, name, note in sorted(rows)[:8]:
                print(f"   {t * 1e3:6.1f} us {t_bf / t:5.2f}x  {name} {note}", flush=True)
            for t, name, note in rows:
                if t > 1e8:
                    print("   ", name, note, flush=True)
        del wbs, ds
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
