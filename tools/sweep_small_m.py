"""Sweep the small-M GEMM tiles of the Triton path next to bf16 cuBLAS (H100; W4A16).

For each Llama-3-8B shape and M in 1, 4, 16, 32: the configuration that
``select_config`` picks, then candidate GEMV (M <= 4) or tensor-core tiles
(M > 4), each checked against an fp32 product with the decoded weight and timed
with rotating weight copies in a CUDA graph (as ``bench_gemm.py --rotate``),
bf16 ``torch.matmul`` timed in the same run. The 8 fastest are printed.

    PYTHONPATH=. python3 tools/sweep_small_m.py [--ms 1 4 16 32] [--grid]

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
        return [C("gemv2", BM=M, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk) for bn, bk, nw, sk in tiles]
    BM = 16 if M <= 16 else 32
    return [C(kind, BM=BM, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk)
            for kind, bn, bk, nw, st in (("tc", 64, 256, 4, 3), ("tc", 32, 256, 4, 3), ("tc", 64, 128, 4, 4),
                                         ("tc", 128, 256, 8, 3), ("tc", 64, 512, 4, 2), ("tcT", 64, 256, 4, 3),
                                         ("tcT", 128, 128, 4, 3))
            for sk in (1, 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--grid", action="store_true", help="M <= 4: 8 GEMV tiles x splits 1/2/4/8")
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
            for cfg in [tg.select_config(M, N, K, x.device)] + candidates(M, args.grid):
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
