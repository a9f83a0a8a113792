"""vllm-fouroversix: 4/6 NVFP4 quantization for vLLM.

The package root stays import-light: vLLM loads ``register`` through the
``vllm.general_plugins`` entry point in every process (API server, engine
core, each worker), so it must be cheap and idempotent.
"""

from __future__ import annotations

__version__ = "0.1.0"

_registered = False


def register() -> None:
    """vLLM plugin entry point: registers the ``fouroversix`` quantization method."""
    global _registered
    if _registered:
        return
    from vllm_fouroversix.vllm import register_method  # the only vLLM-importing package

    register_method()
    _registered = True
