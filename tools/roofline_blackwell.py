#!/usr/bin/env python
"""Roofline MODEL (not a measurement) of the Blackwell NVFP4 GEMM on B200.

    .venv/bin/python tools/roofline_blackwell.py > benchmarks/blackwell_roofline.md

For Llama-3-8B-like linear shapes (N, K) and token counts M, it takes the
configuration ``cutlass_kernels.tiles.select_config`` picks and estimates

    t = max(t_compute, t_memory)

- t_compute: the tensor cores compute whole tiles, so the padded work
  waves * (2 * tileM_cta * tileN * K) per SM at 9 PFLOP/s / 148 SMs (dense NVFP4),
  waves = ceil(tiles / 148).
- t_memory: bytes moved once through HBM (A, W packed FP4 + E4M3 scales,
  bf16 output) at 8 TB/s, scaled down when fewer CTAs than SMs stream it:
  each CTA is assumed to sustain at most twice its fair share (2 x 8 TB/s / 148).
- Ignored: launch latency (~2-4 us, dominant at decode), the activation
  quantizer launch, L2 reuse misses, the epilogue, pipeline fill.

No Blackwell GPU exists in this project; these numbers have not been measured.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cutlass_kernels import tiles  # noqa: E402

PEAK_FLOPS = 9e15  # dense NVFP4, B200
PEAK_BW = 8e12  # HBM3e, B200
SMS = tiles.B200_SMS
SHAPES = [("qkv_proj", 6144, 4096), ("o_proj", 4096, 4096), ("gate_up_proj", 28672, 4096),
          ("down_proj", 4096, 14336)]
MS = [1, 16, 64, 256, 1024, 4096]


def estimate(m: int, n: int, k: int) -> dict:
    cfg = tiles.select_config(m, n, k)
    cta_m, cta_n = cfg.cta_tile_mn
    n_tiles = math.ceil(m / cta_m) * math.ceil(n / cta_n)
    ctas = min(n_tiles, cfg.max_active_clusters() * cfg.cluster_size)
    waves = math.ceil(n_tiles / (cfg.max_active_clusters() * cfg.cluster_size))
    t_compute = waves * 2 * cta_m * cta_n * k / (PEAK_FLOPS / SMS)
    bytes_ = (m + n) * (k // 2 + k // 16) + m * n * 2
    bw = PEAK_BW * min(1.0, 2 * ctas / SMS)
    t_memory = bytes_ / bw
    t = max(t_compute, t_memory)
    return {"cfg": cfg, "tiles": n_tiles, "ctas": ctas, "t_us": t * 1e6,
            "tflops": 2 * m * n * k / t / 1e12, "tbs": bytes_ / t / 1e12,
            "bound": "compute" if t_compute >= t_memory else "memory"}


def main() -> None:
    print("# NVFP4 GEMM on B200: a roofline MODEL, not a measurement\n")
    print("Produced by `.venv/bin/python tools/roofline_blackwell.py` (see its docstring for the")
    print("model). No Blackwell GPU was available: every number below is an estimate from peak")
    print("rates (9 PFLOP/s dense NVFP4, 8 TB/s, 148 SMs) and the tile the kernel would pick;")
    print("launch latency (~2-4 us), the activation-quantizer launch and pipeline fill are")
    print("ignored, so small-M rows are optimistic. Treat it as a target to measure against.\n")
    print("| layer | N | K | M | config (tile, cluster) | tiles | CTAs | est. us | est. TFLOP/s | est. TB/s | bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n, k in SHAPES:
        for m in MS:
            e = estimate(m, n, k)
            c = e["cfg"]
            print(f"| {name} | {n} | {k} | {m} | {c.name} {c.tile_mn[0]}x{c.tile_mn[1]}, "
                  f"{c.cluster_mn[0]}x{c.cluster_mn[1]} | {e['tiles']} | {e['ctas']} | {e['t_us']:.2f} | "
                  f"{e['tflops']:.0f} | {e['tbs']:.2f} | {e['bound']} |")
    print("\nReading it: decode (M <= 64) is weight-streaming bound; o_proj/down_proj at small M")
    print("use only 64 CTAs (N/64), so the model caps them at ~86% of HBM bandwidth: split-K")
    print("(not implemented) would fill the GPU. Prefill reaches the compute roof once M >= 1024,")
    print("minus tile-quantization waves.")


if __name__ == "__main__":
    main()
