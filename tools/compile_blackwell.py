#!/usr/bin/env python
"""Compile every shipped Blackwell kernel for sm_100a (no GPU needed) and check its PTX.

    CUTE_DSL_ARCH=sm_100a .venv/bin/python tools/compile_blackwell.py [--arch sm_100a] [--export DIR]

All 64 GEMM variants (4 tile/cluster configs x bf16/fp16 x row/scalar gA x
column/scalar gW x bias) and all 20 quantizer variants (5 rules x token/given
amax x bf16/fp16). Fails (exit 1) if any variant does not compile or its PTX
lacks the block-scaled MMA / the E2M1/E4M3 conversions. ``--export`` writes the
compiled kernels with ``export_to_c`` (.h/.o + manifest.json) for deployment.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CUTE_DSL_ARCH", "sm_100a")

from cutlass_kernels import cache  # noqa: E402

MMA = re.compile(r"tcgen05\.mma\.cta_group::\d\.kind::mxf4nvf4\.block_scale\.block16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=os.environ["CUTE_DSL_ARCH"])
    ap.add_argument("--export", default=None)
    args = ap.parse_args()
    kc = cache.KernelCache()
    failures = 0
    rows = []
    for key in cache.all_shipped_gemm_keys(args.arch) + cache.all_quantizer_keys(args.arch):
        t0 = time.perf_counter()
        try:
            fn = (cache.compile_gemm if isinstance(key, cache.GemmKey) else cache.compile_quantizer)(key, keep_ptx=True)
            ptx = fn.__ptx__ or ""
            if isinstance(key, cache.GemmKey):
                ok = bool(MMA.search(ptx))
            else:
                ok = "cvt.rn.satfinite.e2m1x2.f32" in ptx and "cvt.rn.satfinite.e4m3x2.f32" in ptx
            kc._kernels[key] = fn
        except Exception as e:  # noqa: BLE001 - report every failing variant
            ok, ptx = False, f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        failures += not ok
        rows.append((key.symbol, dt, ok))
        print(f"{'ok  ' if ok else 'FAIL'} {dt:5.2f}s {key.symbol}", flush=True)
    total = sum(r[1] for r in rows)
    print(f"{len(rows) - failures}/{len(rows)} variants compiled for {args.arch} in {total:.1f}s")
    if args.export:
        out = kc.export(args.export)
        print(f"exported {len(kc)} kernels to {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
