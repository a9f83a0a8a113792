"""CuTe DSL kernels for Blackwell (sm_100a / sm_103a): NVFP4 block-scaled GEMM and
the 4/6 activation quantizer, with tile selection, a compile cache and AOT export.

Importing this package needs neither a GPU nor ``nvidia-cutlass-dsl``: the pure
Python parts (``tiles``, ``layout``, ``quant_math``, ``cache`` keys) load
eagerly; ``gemm`` and ``quantize`` import the DSL and are loaded only when a
kernel is compiled (``cache.compile_gemm`` / ``cache.compile_quantizer``).
"""

from __future__ import annotations

import importlib.util

__all__ = ["dsl_available"]


def dsl_available() -> bool:
    """Whether ``nvidia-cutlass-dsl`` is importable (without importing it)."""
    return importlib.util.find_spec("cutlass") is not None
