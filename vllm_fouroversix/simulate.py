"""Run 4/6 NVFP4 linears inside a plain transformers model (no vLLM).

Used to cross-check the serving path and to evaluate variants the checkpoint
format does not carry (weight-only, other rules): each ``nn.Linear`` is
replaced by :class:`FakeQuantLinear`, which keeps the packed FP4 weight and
calls :func:`vllm_fouroversix.nvfp4.reference_linear`, the oracle of every
backend. Two ways in:

- :func:`load_checkpoint_model`: a checkpoint written by ``fouroversix-convert``
  (its tensors are used exactly as stored);
- :func:`quantize_model`: a high-precision model quantized in memory.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ACT_MODES
from vllm_fouroversix.checkpoint import (
    INPUT_SCALE,
    WEIGHT_SCALE,
    WEIGHT_SCALE_2,
    FourOverSixConfig,
)
from vllm_fouroversix.nvfp4 import NVFP4Tensor, ScaleRule


class FakeQuantLinear(nn.Module):
    """A linear layer with an NVFP4 weight and quantized activations (reference math)."""

    def __init__(
        self,
        weight: NVFP4Tensor,
        bias: torch.Tensor | None,
        act_rule: ScaleRule | str = ScaleRule.mse,
        act_mode: str = "token",
        input_amax: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if act_mode not in ACT_MODES:
            raise ValueError(f"act_mode {act_mode!r}; expected one of {ACT_MODES}")
        if act_mode == "static" and input_amax is None:
            raise ValueError("act_mode 'static' needs input_amax")
        self.register_buffer("qdata", weight.data)
        self.register_buffer("qscales", weight.scales)
        self.register_buffer("qglobal", weight.global_scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.act_rule = ScaleRule(act_rule)
        self.act_mode = act_mode
        self.input_amax = input_amax
        self.out_features, self.in_features = weight.shape

    @property
    def weight_nvfp4(self) -> NVFP4Tensor:
        return NVFP4Tensor(self.qdata, self.qscales, self.qglobal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nvfp4.reference_linear(
            x,
            self.weight_nvfp4,
            self.bias,
            act_rule=self.act_rule,
            per_row=self.act_mode == "token",
            act_quant=self.act_mode != "none",
            act_amax=self.input_amax if self.act_mode == "static" else None,
        )

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.act_rule}/{self.act_mode}"


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or name.endswith("." + p) or fnmatch.fnmatch(name, p) for p in patterns)


def quantize_model(
    model: nn.Module,
    *,
    weight_rule: ScaleRule | str = ScaleRule.mse,
    act_rule: ScaleRule | str = ScaleRule.mse,
    act_mode: str = "token",
    ignore: Iterable[str] = ("lm_head",),
) -> dict[str, NVFP4Tensor]:
    """Replace every eligible ``nn.Linear`` of ``model`` by a :class:`FakeQuantLinear`.

    Each weight gets its own amax (no fused-group sharing: this is a
    simulation of the rules, not of a checkpoint). Returns the quantized
    weights by module name, for error statistics.
    """
    ignore = tuple(ignore)
    out: dict[str, NVFP4Tensor] = {}
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, nn.Linear) or _ignored(name, ignore):
            continue
        if mod.in_features % nvfp4.BLOCK_SIZE:
            continue
        w = nvfp4.quantize(mod.weight.data, weight_rule)
        out[name] = w
        b = None if mod.bias is None else mod.bias.data
        _set_module(model, name, FakeQuantLinear(w, b, act_rule, act_mode))
    return out


def _read_safetensors(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{ckpt}: no *.safetensors files")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors


def load_checkpoint_model(
    ckpt: str | Path,
    *,
    dtype: torch.dtype = torch.bfloat16,
    act_mode: str | None = None,
) -> nn.Module:
    """Load a ``fouroversix-convert`` checkpoint into a transformers model with
    :class:`FakeQuantLinear` layers holding the stored FP4 tensors as they are.

    ``act_mode`` overrides the checkpoint's activation global-scale mode
    (e.g. ``"none"`` for a weight-only evaluation of the same weights).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    ckpt = Path(ckpt)
    raw = json.loads((ckpt / "config.json").read_text())
    qc = FourOverSixConfig.from_dict(raw.get("quantization_config") or {})
    config = AutoConfig.from_pretrained(ckpt)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = _read_safetensors(ckpt)
    mode = act_mode or qc.activation_global_scale
    for name, mod in list(model.named_modules()):
        key = f"{name}.{WEIGHT_SCALE}"
        if not isinstance(mod, nn.Linear) or key not in tensors:
            continue
        w = NVFP4Tensor(
            data=tensors.pop(f"{name}.weight"),
            scales=tensors.pop(key),
            global_scale=tensors.pop(f"{name}.{WEIGHT_SCALE_2}").float().reshape(()),
            rule=qc.weight_scale_rule,
        )
        bias = tensors.pop(f"{name}.bias", None)
        amax = None
        if f"{name}.{INPUT_SCALE}" in tensors:
            scale = tensors.pop(f"{name}.{INPUT_SCALE}").float().reshape(())
            amax = scale * nvfp4.rule_constants(qc.activation_scale_rule).MS
        _set_module(
            model,
            name,
            FakeQuantLinear(w, None if bias is None else bias.to(dtype), qc.activation_scale_rule, mode, amax),
        )
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise ValueError(f"{ckpt}: tensors the model does not have: {unexpected[:5]}")
    tied = getattr(config, "tie_word_embeddings", False)
    if tied:
        model.tie_weights()
    fake = tuple(n + "." for n, m in model.named_modules() if isinstance(m, FakeQuantLinear))
    # FakeQuantLinear modules were filled from the checkpoint already.
    missing = [m for m in missing if not m.startswith(fake) and not (tied and m.endswith("lm_head.weight"))]
    if missing:
        raise ValueError(f"{ckpt}: tensors missing from the checkpoint: {missing[:5]}")
    model.eval()
    return model
