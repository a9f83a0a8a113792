"""The vLLM adapter: the only part of the project that imports vLLM."""

from __future__ import annotations


def register_method() -> None:
    """Register the ``fouroversix`` quantization config with vLLM (idempotent)."""
    # Filled in by the serving issue (#5); registering nothing is harmless.
    return None
