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
    python3 tools/compile_triton.py --capability 9.0      # also on a machine without a GPU

With CUDA it uses Triton's driver and CUDA tensors. Without CUDA (CI) it needs no GPU at all:
Triton's driver is replaced by one that only names the target, the package's device queries
report that capability, and the operands are CPU tensors (only their dtypes, strides and
alignments matter to a compile; the torch glue between launches computes on the CPU). That is
how CI checks that every kernel still compiles for sm_80 and sm_90 with the Triton it installs
(the one CUDA torch 2.13, and so vLLM 0.32+, pins).

A kernel that issues ``wgmma`` with a register A operand (the Gluon wgmma GEMM) is also checked
in its SASS: no instruction between an ``HGMMA`` and the ``WARPGROUP.DEPBAR`` that waits for it
may write a register the in-flight MMA reads (its A fragment) or accumulates (run 17 saw that
happen; the ptxas builds checked since serialize the MMAs instead, see docs/hopper.md).

Exit status 1 if any kernel fails to compile, needs more shared memory than the architecture
has, or fails the SASS check.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Opt-in shared memory a block can use, bytes (CUDA C Programming Guide, "Technical Specifications").
SMEM_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448, 120: 101376}


def _pretend_gpu(cc: tuple[int, int], target) -> None:
    """No CUDA: make Triton compile for ``target`` and the package take capability ``cc``'s paths
    with CPU tensors (process-wide; the tool runs as its own process)."""
    from triton.runtime import driver

    from vllm_fouroversix.kernels import device as kd
    from vllm_fouroversix.kernels import triton_gemm

    class TargetOnly:  # all a compile asks of Triton's driver
        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_current_target(self):
            return target

    driver.set_active(TargetOnly())

    def capability(device=None):
        return cc

    def num_sms(device=None):
        return 132

    kd.capability, kd.num_sms = capability, num_sms  # kd's other queries call these
    for name, mod in list(sys.modules.items()):  # and the modules that imported them by name
        if name.startswith("vllm_fouroversix.") and mod is not None:
            for attr, f in (("capability", capability), ("num_sms", num_sms)):
                if hasattr(mod, attr):
                    setattr(mod, attr, f)
    triton_gemm._use_asm = lambda device: True  # the PTX decode, not the interpreter's Python one


def wgmma_hazards(cubin: bytes) -> list[str]:
    """:func:`sass_wgmma_hazards` of a cubin's SASS (cuobjdump, which Triton's NVIDIA backend
    ships; empty where it is missing)."""
    import os
    import subprocess
    import tempfile

    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not cubin or not os.path.exists(tool):
        return []
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout
    return sass_wgmma_hazards(sass)


def sass_wgmma_hazards(sass: str) -> list[str]:
    """Instructions of ``sass`` (cuobjdump's text) that write a register an in-flight ``HGMMA``
    reads (its A fragment: 4 registers from the base) or accumulates (64 x N fp32, from its
    ``HGMMA.64xNx16`` shape: N / 2 registers, 128 for the 256-row tiles, 64 for the 128-row tiles,
    32 for the 64-row tiles). An MMA group is in flight from its HGMMAs until a ``WARPGROUP.DEPBAR.LE gsb0, n``
    leaves at most n newer groups; a loop's back edge with a group in flight checks the loop body
    again under it. (ptxas serializes the MMAs where it sees such a hazard, in the Triton 3.6 and
    3.7 builds checked; run 17 still saw one, so the SASS is checked rather than trusted.)"""
    import re

    if "HGMMA" not in sass:
        return []
    code = [(int(a, 16), i.strip()) for a, i in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", sass)]
    index = {a: n for n, (a, _) in enumerate(code)}
    bad: list[str] = []

    def scan(lo: int, hi: int, committed: list[set], follow: bool) -> None:
        # committed: the register sets of the MMA groups in flight, oldest first; open: the HGMMAs
        # issued since the last commit (gsb0)
        open_: set = set()
        for n in range(lo, hi):
            addr, ins = code[n]
            body = re.sub(r"^@!?U?P\w+\s+", "", ins)
            op, _, rest = body.partition(" ")
            if op.startswith("HGMMA"):
                m = re.match(r"R(\d+),\s*R(\d+),", rest)
                if m:  # C/D and a register A operand (a shared-memory A is a descriptor)
                    c, a = int(m.group(1)), int(m.group(2))
                    shape = re.match(r"HGMMA\.64x(\d+)x16\.F32", op)
                    acc = int(shape.group(1)) // 2 if shape else 128  # unknown shape: the largest
                    open_ |= set(range(a, a + 4)) | set(range(c, c + acc))
                if "gsb0" in rest:
                    committed, open_ = committed + [open_], set()
                continue
            if op.startswith("WARPGROUP.DEPBAR"):
                keep = int(rest.rsplit(",", 1)[-1].strip(), 16)
                committed = committed[len(committed) - keep:] if keep else []
                continue
            live = set().union(open_, *committed)
            m = re.match(r"R(\d+)\b", rest)
            if live and m and not op.startswith(("ST", "RED", "ATOM", "BRA", "ISETP", "FSETP")):
                width = 4 if ".128" in op else 2 if (".64" in op or ".WIDE" in op) else 1
                hit = live & set(range(int(m.group(1)), int(m.group(1)) + width))
                if hit:
                    bad.append(f"{addr:#06x} {ins} writes R{min(hit)} under an in-flight HGMMA")
            b = re.match(r"(0x[0-9a-f]+)", rest.strip()) if op == "BRA" else None
            if follow and b and live and int(b.group(1), 16) < addr and int(b.group(1), 16) in index:
                # a loop's back edge with an MMA still in flight: its body runs again under it
                scan(index[int(b.group(1), 16)], n, committed + [open_], False)

    scan(0, len(code), [], True)
    return bad


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
    target = GPUTarget("cuda", arch, 32)
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        kd._PROPS[torch.cuda.current_device()] = (kd.num_sms(dev), cc)
        driver.active.get_current_target = lambda: target  # Triton's binders compile for this arch
    else:
        dev = torch.device("cpu")
        _pretend_gpu(cc, target)
    rows: list[dict] = []
    seen: set[int] = set()

    def compile_only(self: launch.FastKernel, grid):
        def go(*args, **kwargs):
            kernel = self.fn.warmup(*args, grid=grid, **kwargs)
            if id(kernel) not in seen:
                seen.add(id(kernel))
                md = kernel.metadata
                cubin = kernel.asm.get("cubin", b"")
                rows.append({"kernel": md.name, "arch": md.target.arch, "warps": md.num_warps,
                             "stages": md.num_stages, "shared": md.shared, "cubin": len(cubin),
                             **({"error": "SASS: " + "; ".join(bad)} if (bad := wgmma_hazards(cubin)) else {})})
        return go

    launch.FastKernel.__getitem__ = compile_only
    be = TritonBackend()
    g = torch.Generator().manual_seed(0)
    for N, K in shapes:
        w = torch.randn(N, K, generator=g).to(torch.bfloat16)
        wq = nvfp4.quantize(w, "mse", per_row=False)
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
            nvfp4.NVFP4Tensor(wq.data.to(dev), wq.scales.to(dev), wq.global_scale.to(dev))))
        for dt in dtypes:
            dtype = getattr(torch, dt)
            bias = torch.randn(N, generator=g).to(dtype).to(dev)
            for M in ms:
                x = torch.randn(M, K, generator=g).to(dtype).to(dev)
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

    import triton

    t0 = time.perf_counter()
    try:
        rows = compile_for((major, minor), a.ms, a.modes, a.dtypes, shapes)
    except Exception as e:  # noqa: BLE001 - report what failed to compile, with its message
        print(f"compile_triton: FAILED for sm_{major}{minor}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    limit = SMEM_LIMIT.get(major * 10 + minor)
    print(f"sm_{major}{minor}: {len(rows)} kernel specializations compiled in {time.perf_counter() - t0:.0f} s "
          f"(Triton {triton.__version__}, {'CUDA' if torch.cuda.is_available() else 'no GPU'}; "
          f"shared memory limit {limit} bytes a block)")
    print("| kernel | arch | warps | stages | shared bytes | cubin bytes |")
    print("|---|---|---|---|---|---|")
    bad = []
    for r in sorted(rows, key=lambda r: (r["kernel"], r["shared"])):
        print(f"| {r['kernel']} | {r['arch']} | {r['warps']} | {r['stages']} | {r['shared']} | {r['cubin']} |")
        if r["arch"] != major * 10 + minor or not r["cubin"] or (limit and r["shared"] > limit) or r.get("error"):
            bad.append(r)
    for r in bad:
        why = r.get("error") or f"arch {r['arch']}, {r['shared']} bytes of shared memory (limit {limit})"
        print(f"compile_triton: {r['kernel']} FAILED: {why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
