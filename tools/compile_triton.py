#!/usr/bin/env python3
"""Compile, without running, every kernel the ``triton`` backend launches on a GPU of another
compute capability (default 8.0, the A100), on the GPU at hand.

The backend supports capability 8.x and 9.x, but only an H100 was available to run it. This
tool makes the package believe the device has ``--capability`` (``kernels.device``'s cached
capability: so it takes that device's paths, e.g. no PDL, TMA or wgmma before 9.0 and no
hardware E4M3 conversion before 8.9) and makes Triton compile for that architecture
(``driver.active.get_current_target``). Every launch of ``TritonBackend.linear`` over the
given M, activation modes and dtypes then compiles instead (``JITFunction.warmup``): ptxas
assembles each kernel for ``sm_<cc>``, and the kernel's static shared memory is checked
against that architecture's per-block limit. Outputs are not computed (nothing is
launched); ``tests/test_triton.py::test_pre_hopper_paths_gpu`` runs the same paths' choices
on the GPU itself and checks their values.

    python3 tools/compile_triton.py                       # sm_80, the default M / modes / dtypes
    python3 tools/compile_triton.py --capability 8.9 --ms 1 16 1100

Needs CUDA (Triton's driver) but not a GPU of that capability. Exit status 1 if any kernel
fails to compile or needs more shared memory than the architecture has.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Opt-in shared memory a block can use, bytes (CUDA C Programming Guide, "Technical Specifications").
SMEM_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448, 120: 101376}


def compile_for(cc: tuple[int, int], ms: list[int], modes: list[str], dtypes: list[str],
                shapes: list[tuple[int, int]]) -> list[dict]:
    """Run every (shape, M, mode, dtype) linear with the package and Triton set to ``cc``;
    return one row a compiled kernel specialization."""
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.triton import TritonBackend
    from vllm_fouroversix.kernels import device as kd
    from vllm_fouroversix.kernels import launch, triton_gemm

    arch = cc[0] * 10 + cc[1]
    dev = torch.device("cuda")
    kd._PROPS[torch.cuda.current_device()] = (kd.num_sms(dev), cc)
    target = GPUTarget("cuda", arch, 32)
    driver.active.get_current_target = lambda: target  # Triton's binders compile for this arch
    rows: list[dict] = []
    seen: set[int] = set()

    def compile_only(self: launch.FastKernel, grid):
        def go(*args, **kwargs):
            kernel = self.fn.warmup(*args, grid=grid, **kwargs)
            if id(kernel) not in seen:
                seen.add(id(kernel))
                md = kernel.metadata
                rows.append({"kernel": md.name, "arch": md.target.arch, "warps": md.num_warps,
                             "stages": md.num_stages, "shared": md.shared,
                             "cubin": len(kernel.asm.get("cubin", b""))})
        return go

    launch.FastKernel.__getitem__ = compile_only
    be = TritonBackend()
    g = torch.Generator().manual_seed(0)
    for N, K in shapes:
        w = torch.randn(N, K, generator=g).to(torch.bfloat16)
        wq = nvfp4.quantize(w, "mse", per_row=False)
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
            nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
        for dt in dtypes:
            dtype = getattr(torch, dt)
            bias = torch.randn(N, generator=g).to(dtype).cuda()
            for M in ms:
                x = torch.randn(M, K, generator=g).to(dtype).cuda()
                for mode in modes:
                    amax = torch.tensor(4.0, device=dev) if mode == "static" else None
                    be.linear(x, qw, bias, ActivationQuant("mse", mode), input_amax=amax)
    # A Gluon kernel that fails to compile is recorded, warned about once and replaced by the
    # Triton tiles for good (a working fallback, but a failure to compile here).
    for failed, kernel in ((triton_gemm._MMA_FAILED, "_fp4_mma_gemm_kernel"),
                           (triton_gemm._WGMMA_FAILED, "_fp4_wgmma_gemm_kernel")):
        if failed:
            rows.append({"kernel": kernel, "arch": arch, "warps": 0, "stages": 0, "shared": 0, "cubin": 0,
                         "error": failed[0]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capability", default="8.0", help="compute capability to compile for, e.g. 8.0, 8.6, 8.9")
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 3, 8, 16, 64, 300, 1100])
    ap.add_argument("--modes", nargs="+", default=["none", "token", "static"],
                    choices=["none", "token", "tensor", "static"])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"])
    ap.add_argument("--shapes", nargs="+", default=["4096x4096", "200x1040"], help="N x K of the weights")
    a = ap.parse_args()
    major, minor = (int(p) for p in a.capability.split("."))
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in a.shapes]
    import torch

    if not torch.cuda.is_available():
        print("compile_triton: needs CUDA (Triton's driver), though not a GPU of that capability", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        rows = compile_for((major, minor), a.ms, a.modes, a.dtypes, shapes)
    except Exception as e:  # noqa: BLE001 - report what failed to compile, with its message
        print(f"compile_triton: FAILED for sm_{major}{minor}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    limit = SMEM_LIMIT.get(major * 10 + minor)
    print(f"sm_{major}{minor}: {len(rows)} kernel specializations compiled in {time.perf_counter() - t0:.0f} s "
          f"(shared memory limit {limit} bytes a block)")
    print("| kernel | arch | warps | stages | shared bytes | cubin bytes |")
    print("|---|---|---|---|---|---|")
    bad = []
    for r in sorted(rows, key=lambda r: (r["kernel"], r["shared"])):
        print(f"| {r['kernel']} | {r['arch']} | {r['warps']} | {r['stages']} | {r['shared']} | {r['cubin']} |")
        if r["arch"] != major * 10 + minor or not r["cubin"] or (limit and r["shared"] > limit):
            bad.append(r)
    for r in bad:
        why = r.get("error") or f"arch {r['arch']}, {r['shared']} bytes of shared memory (limit {limit})"
        print(f"compile_triton: {r['kernel']} FAILED: {why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
