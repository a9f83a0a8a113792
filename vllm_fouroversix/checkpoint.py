"""The checkpoint contract of SPEC section 4: config schema and tensor names.

Shared by the converter (writes), ``fouroversix-convert verify`` and the vLLM
method (reads). No vLLM imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vllm_fouroversix import __version__
from vllm_fouroversix.nvfp4 import BLOCK_SIZE, ScaleRule

QUANT_METHOD = "fouroversix"
FORMAT = "nvfp4"
FORMAT_VERSION = 1
ACTIVATION_MODES = ("token", "tensor", "static")

# Tensor name suffixes of one quantized linear `P` (SPEC section 4).
WEIGHT = "weight"
WEIGHT_SCALE = "weight_scale"
WEIGHT_SCALE_2 = "weight_scale_2"
INPUT_SCALE = "input_scale"
BIAS = "bias"


class CheckpointError(ValueError):
    """A checkpoint or its quantization_config breaks the SPEC contract."""


@dataclass
class FourOverSixConfig:
    """``quantization_config`` of a 4/6 NVFP4 checkpoint (SPEC section 4)."""

    weight_scale_rule: ScaleRule = ScaleRule.mse
    activation_scale_rule: ScaleRule = ScaleRule.mse
    activation_global_scale: str = "token"
    modules_to_not_convert: list[str] = field(default_factory=lambda: ["lm_head"])
    block_size: int = BLOCK_SIZE
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    producer: dict[str, str] = field(
        default_factory=lambda: {"name": "vllm-fouroversix", "version": __version__}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.format != FORMAT:
            raise CheckpointError(f"quantization_config.format is {self.format!r}; only {FORMAT!r} is supported")
        if self.format_version != FORMAT_VERSION:
            raise CheckpointError(
                f"quantization_config.format_version is {self.format_version!r}; this version of "
                f"vllm-fouroversix reads format_version {FORMAT_VERSION} (upgrade it for newer checkpoints)"
            )
        if self.block_size != BLOCK_SIZE:
            raise CheckpointError(
                f"quantization_config.block_size is {self.block_size!r}; NVFP4 uses {BLOCK_SIZE}"
            )
        for key in ("weight_scale_rule", "activation_scale_rule"):
            val = getattr(self, key)
            try:
                setattr(self, key, ScaleRule(val))
            except ValueError:
                names = ", ".join(r.value for r in ScaleRule)
                raise CheckpointError(
                    f"quantization_config.{key} is {val!r}; expected one of: {names}"
                ) from None
        if self.activation_global_scale not in ACTIVATION_MODES:
            raise CheckpointError(
                f"quantization_config.activation_global_scale is {self.activation_global_scale!r}; "
                f"expected one of: {', '.join(ACTIVATION_MODES)}"
            )
        if not isinstance(self.modules_to_not_convert, list):
            raise CheckpointError("quantization_config.modules_to_not_convert must be a list of names")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FourOverSixConfig:
        if d.get("quant_method") not in (None, QUANT_METHOD):
            raise CheckpointError(
                f"quantization_config.quant_method is {d.get('quant_method')!r}, not {QUANT_METHOD!r}"
            )
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight_scale_rule"] = str(self.weight_scale_rule)
        d["activation_scale_rule"] = str(self.activation_scale_rule)
        return {"quant_method": QUANT_METHOD, **d}
