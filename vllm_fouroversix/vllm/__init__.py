"""The vLLM adapter: the only part of the project that imports vLLM.

- ``config.py``: ``FourOverSixQuantConfig`` (QuantizationConfig subclass);
- ``linear.py``: the linear methods (checkpoint and online), parameters,
  loading checks, ``apply``;
- ``ops.py``: the GEMM as the custom op ``torch.ops.fouroversix.linear``
  (pure torch, no vLLM import).

This ``__init__`` imports no vLLM at module level, so ``ops`` can be used and
tested without vLLM installed.
"""

from __future__ import annotations

import logging

#: Under vLLM's "vllm" logger, so messages appear in vLLM's log with its format.
logger = logging.getLogger("vllm.fouroversix")

_registered = False


def register_method() -> None:
    """Register the ``fouroversix`` quantization config with vLLM (idempotent, cheap)."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.layers.quantization import register_quantization_config

    from vllm_fouroversix.checkpoint import QUANT_METHOD
    from vllm_fouroversix.vllm.config import FourOverSixQuantConfig

    register_quantization_config(QUANT_METHOD)(FourOverSixQuantConfig)
    _bridge_package_logger()
    _registered = True


def _bridge_package_logger() -> None:
    """Show the vLLM-free parts' log (logger "vllm_fouroversix", e.g. the backend
    choice) through vLLM's handlers, unless the user configured it."""
    ours = logging.getLogger("vllm_fouroversix")
    if ours.handlers:
        return
    vllm_logger = logging.getLogger("vllm")
    if not vllm_logger.handlers:
        return
    for h in vllm_logger.handlers:
        ours.addHandler(h)
    ours.setLevel(vllm_logger.level or logging.INFO)
    ours.propagate = False
