"""Compile cache, warm-up and ahead-of-time export of the Blackwell kernels.

A compiled kernel depends on exactly the fields of its key: the GPU arch
(sm_100a / sm_103a), the data types, the tile and cluster, the epilogue mode
(row/column scale vectors, bias) and the persistent grid size
(``max_active_clusters``, a compile-time constant of the kernel). M, N and K are
runtime arguments, so one compile serves every shape that selects the
configuration. ``warmup`` compiles everything a model needs before serving;
``export``/``load`` write and read the compiled kernels as C objects
(``export_to_c`` / ``cute.runtime.load_module``) so a deployment can ship them
instead of compiling at start-up.

Importing this module does not import the DSL; compiling does.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cutlass_kernels import tiles

DEFAULT_ARCH = "sm_100a"


@dataclass(frozen=True)
class GemmKey:
    arch: str
    tile_mn: tuple[int, int]
    cluster_mn: tuple[int, int]
    out_dtype: str = "bfloat16"
    row_scale: bool = True
    col_scale: bool = False
    bias: bool = False
    max_active_clusters: int = tiles.B200_SMS

    @property
    def symbol(self) -> str:
        """A C identifier naming the variant (export file and function prefix)."""
        t, c = self.tile_mn, self.cluster_mn
        ep = ("r" if self.row_scale else "s") + ("c" if self.col_scale else "s") + ("b" if self.bias else "n")
        dt = {"bfloat16": "bf16", "float16": "f16"}[self.out_dtype]
        return (f"fos_gemm_{self.arch}_{t[0]}x{t[1]}_c{c[0]}x{c[1]}_{dt}_{ep}"
                f"_g{self.max_active_clusters}")


@dataclass(frozen=True)
class QuantKey:
    arch: str
    rule: str = "mse"
    amax_mode: str = "token"  # "token" | "given"
    in_dtype: str = "bfloat16"

    @property
    def symbol(self) -> str:
        dt = {"bfloat16": "bf16", "float16": "f16"}[self.in_dtype]
        return f"fos_quant_{self.arch}_{self.rule}_{self.amax_mode}_{dt}"


def device_arch(device=None) -> str:
    """``sm_XYa`` of a CUDA device; ``CUTE_DSL_ARCH`` (or sm_100a) without one."""
    env = os.environ.get("CUTE_DSL_ARCH")
    if env:
        return env
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}a"
    return DEFAULT_ARCH


def _dsl():
    """Import the DSL lazily; artifacts asked for with --keep-ptx go to a temp dir."""
    os.environ.setdefault(
        "CUTE_DSL_DUMP_DIR", os.path.join(tempfile.gettempdir(), "cutlass_kernels_dump")
    )
    os.makedirs(os.environ["CUTE_DSL_DUMP_DIR"], exist_ok=True)
    import cuda.bindings.driver as cuda
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_ptr

    return cutlass, cute, make_ptr, cuda


def _placeholder(make_ptr, cute, dtype, align):
    return make_ptr(dtype, 0, cute.AddressSpace.gmem, assumed_align=align)


def compile_gemm(key: GemmKey, keep_ptx: bool = False):
    """Compile one GEMM variant (no GPU needed); returns the JIT function."""
    cutlass, cute, make_ptr, cuda = _dsl()
    from cutlass_kernels.gemm import OUT_DTYPES, BlockScaledGemm

    kernel = BlockScaledGemm(key.tile_mn, key.cluster_mn, key.out_dtype,
                             key.row_scale, key.col_scale, key.bias)
    fp4, sf, f32 = cutlass.Float4E2M1FN, cutlass.Float8E4M3FN, cutlass.Float32
    out = OUT_DTYPES[key.out_dtype]
    p = lambda dt, al: _placeholder(make_ptr, cute, dt, al)  # noqa: E731
    opts = f"--gpu-arch {key.arch}" + (" --keep-ptx" if keep_ptx else "")
    return cute.compile(
        kernel, p(fp4, 16), p(fp4, 16), p(sf, 16), p(sf, 16), p(out, 16),
        p(f32, 4), p(f32, 4), p(out, 2),
        cutlass.Int32(0), cutlass.Int32(0), cutlass.Int32(0),
        key.max_active_clusters, cuda.CUstream(0), options=opts,
    )


def compile_quantizer(key: QuantKey, keep_ptx: bool = False):
    """Compile one quantizer variant (no GPU needed)."""
    cutlass, cute, make_ptr, cuda = _dsl()
    from cutlass_kernels.quantize import IN_DTYPES, ActQuantizer

    kernel = ActQuantizer(key.rule, key.amax_mode, key.in_dtype)
    p = lambda dt, al: _placeholder(make_ptr, cute, dt, al)  # noqa: E731
    opts = f"--gpu-arch {key.arch}" + (" --keep-ptx" if keep_ptx else "")
    return cute.compile(
        kernel, p(IN_DTYPES[key.in_dtype], 16), p(cutlass.Int32, 16), p(cutlass.Uint8, 16),
        p(cutlass.Float32, 4), p(cutlass.Float32, 4),
        cutlass.Int32(0), cutlass.Int32(0), cuda.CUstream(0), options=opts,
    )


class KernelCache:
    """Compiled kernels by key; thread-safe; optionally backed by AOT exports."""

    def __init__(self, aot_dir: str | os.PathLike | None = None):
        self._kernels: dict = {}
        self._lock = threading.Lock()
        self.compile_seconds: dict = {}
        self.aot_dir = Path(aot_dir) if aot_dir else None

    def __len__(self) -> int:
        return len(self._kernels)

    def __contains__(self, key) -> bool:
        return key in self._kernels

    def get(self, key):
        """The compiled kernel of ``key``: cached, else loaded from the AOT dir, else compiled."""
        with self._lock:
            fn = self._kernels.get(key)
            if fn is None:
                fn = self._load_aot(key)
            if fn is None:
                t0 = time.perf_counter()
                fn = compile_gemm(key) if isinstance(key, GemmKey) else compile_quantizer(key)
                self.compile_seconds[key] = time.perf_counter() - t0
            self._kernels[key] = fn
            return fn

    # -- warm-up -----------------------------------------------------------
    def warmup(self, keys) -> list:
        """Compile (or load) every key now, so none compiles on the serving path."""
        return [self.get(k) for k in keys]

    # -- ahead of time -----------------------------------------------------
    def export(self, out_dir: str | os.PathLike) -> Path:
        """``export_to_c`` every cached kernel: <symbol>.h/.o and manifest.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        manifest = []
        for key, fn in self._kernels.items():
            fn.export_to_c(str(out), key.symbol, function_prefix=key.symbol)
            manifest.append({"kind": type(key).__name__, "symbol": key.symbol, **asdict(key)})
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return out

    def _load_aot(self, key):
        if self.aot_dir is None:
            return None
        obj = self.aot_dir / f"{key.symbol}.o"
        if not obj.exists():
            return None
        _dsl()
        import cutlass.cute as cute

        return getattr(cute.runtime.load_module(str(obj)), key.symbol)


def gemm_keys_for(shapes, arch: str, out_dtype: str = "bfloat16", act_mode: str = "token",
                  col_scale: bool = False, bias: bool = False, num_sms: int = tiles.B200_SMS):
    """GEMM keys a model needs: ``shapes`` is an iterable of (M, N, K)."""
    keys = []
    for m, n, k in shapes:
        cfg = tiles.select_config(m, n, k, num_sms)
        key = GemmKey(arch, cfg.tile_mn, cfg.cluster_mn, out_dtype, act_mode == "token",
                      col_scale, bias, cfg.max_active_clusters(num_sms))
        if key not in keys:
            keys.append(key)
    return keys


def all_shipped_gemm_keys(arch: str = DEFAULT_ARCH, num_sms: int = tiles.B200_SMS):
    """Every shipped configuration x output dtype x epilogue mode."""
    keys = []
    for cfg in tiles.SHIPPED:
        for out in ("bfloat16", "float16"):
            for row in (True, False):
                for col in (False, True):
                    for bias in (False, True):
                        keys.append(GemmKey(arch, cfg.tile_mn, cfg.cluster_mn, out, row, col, bias,
                                            cfg.max_active_clusters(num_sms)))
    return keys


def all_quantizer_keys(arch: str = DEFAULT_ARCH):
    from vllm_fouroversix.nvfp4 import ScaleRule

    return [QuantKey(arch, r.value, mode, dt) for r in ScaleRule
            for mode in ("token", "given") for dt in ("bfloat16", "float16")]
