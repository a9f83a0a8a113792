"""``fouroversix-convert``: offline converter to the 4/6 NVFP4 checkpoint of SPEC section 4.

Public API::

    from vllm_fouroversix.convert import convert_checkpoint, verify_checkpoint
    summary = convert_checkpoint("in_dir", "out_dir", weight_rule="mse")
    problems = verify_checkpoint("out_dir")   # [] when the checkpoint follows SPEC

Modules, one job each: ``source`` (read INPUT headers), ``plan`` (what to quantize,
from the architecture on the meta device), ``groups`` (fused groups, ignore
patterns), ``calibrate`` (static input scales), ``writer`` (streaming shards,
atomic output), ``verify``, ``summary``, ``cli``. No vLLM imports.
"""

from __future__ import annotations

from vllm_fouroversix.convert.core import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_CALIBRATION_SEQ_LEN,
    convert_checkpoint,
)
from vllm_fouroversix.convert.errors import ConvertError
from vllm_fouroversix.convert.summary import ConvertSummary
from vllm_fouroversix.convert.verify import verify_checkpoint

__all__ = [
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_CALIBRATION_SEQ_LEN",
    "ConvertError",
    "ConvertSummary",
    "convert_checkpoint",
    "verify_checkpoint",
]
