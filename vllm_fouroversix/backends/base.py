"""The backend interface: how a quantized linear layer runs on a device.

Backends differ only in how they run the SPEC math of ``nvfp4``; every one is
checked against ``nvfp4.reference_linear``. No vLLM imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vllm_fouroversix.nvfp4 import NVFP4Tensor, ScaleRule

#: Activation global-scale modes: per token (row), per tensor (dynamic), a
#: calibrated static amax, or no activation quantization (weight-only W4A16).
ACT_MODES = ("token", "tensor", "static", "none")


@dataclass(frozen=True)
class ActivationQuant:
    """How a layer quantizes its input activations."""

    rule: ScaleRule = ScaleRule.mse
    mode: str = "token"

    def __post_init__(self) -> None:
        if self.mode not in ACT_MODES:
            raise ValueError(f"activation mode {self.mode!r}; expected one of {ACT_MODES}")
        object.__setattr__(self, "rule", ScaleRule(self.rule))


@dataclass
class QuantizedWeight:
    """An NVFP4 weight [N, K] as a backend laid it out.

    ``data`` uint8 [N, K/2]; ``scales`` float8_e4m3fn in the backend's layout
    (row-major [N, K/16] unless ``scales_swizzled``); ``global_scale`` float32
    ``[]`` (one tensor scale) or ``[N]`` (one per output row, e.g. fused shards
    whose checkpoint scales differ); ``extra`` holds backend-private state.
    """

    data: torch.Tensor
    scales: torch.Tensor
    global_scale: torch.Tensor
    n: int
    k: int
    scales_swizzled: bool = False
    extra: Any = None

    @classmethod
    def from_nvfp4(cls, t: NVFP4Tensor) -> QuantizedWeight:
        n, k = t.shape
        g = t.global_scale.float()
        g = g.reshape(()) if g.numel() == 1 else g.reshape(n)
        return cls(data=t.data, scales=t.scales, global_scale=g, n=n, k=k)

    def to_nvfp4(self) -> NVFP4Tensor:
        """Row-major view for the reference math (undoes a swizzle if needed)."""
        scales = self.scales
        if self.scales_swizzled:
            from vllm_fouroversix.nvfp4 import unswizzle_scales

            scales = unswizzle_scales(scales, self.n, self.k // 16)
        g = self.global_scale if self.global_scale.dim() == 0 else self.global_scale.reshape(-1, 1)
        return NVFP4Tensor(data=self.data, scales=scales, global_scale=g)


def check_linear_inputs(
    x: torch.Tensor, w: QuantizedWeight, act: ActivationQuant, input_amax: torch.Tensor | None
) -> None:
    """The argument checks every backend's ``linear`` makes before any work."""
    if act.mode == "static" and input_amax is None:
        raise ValueError("activation mode 'static' needs input_amax (the checkpoint's input_scale)")
    if x.shape[-1] != w.k:
        raise ValueError(f"x has K={x.shape[-1]} but the weight has K={w.k}")


class Backend:
    """One way to run 4/6 NVFP4 linear layers. Subclasses override the hooks."""

    name: str = "base"
    #: Whether ``linear`` honours ``input_amax`` in modes ``token``/``tensor``
    #: (see ``linear``). The vLLM method passes one only to such backends.
    accepts_amax_override: bool = False

    @classmethod
    def is_available(cls, device: torch.device) -> bool:
        """Whether this backend can run on ``device``."""
        raise NotImplementedError

    def prepare_weight(self, w: QuantizedWeight) -> QuantizedWeight:
        """Lay out a loaded weight once (swizzle, pad, precompute). Default: as is."""
        return w

    def warmup_layer(
        self, w: QuantizedWeight, act: ActivationQuant, dtype: torch.dtype, has_bias: bool
    ) -> None:
        """Compile (or load) every kernel ``linear`` will need for ``w`` at any M, so
        nothing compiles on the serving path. Called once per layer at start-up, after
        :meth:`prepare_weight`. Default: nothing to do."""

    def linear(
        self,
        x: torch.Tensor,
        w: QuantizedWeight,
        bias: torch.Tensor | None,
        act: ActivationQuant,
        input_amax: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` [..., K] (bf16/fp16/fp32) -> [..., N] in x's dtype.

        Quantizes ``x`` per ``act`` (``input_amax``: the static amax for mode
        ``static``), multiplies by the weight with FP32 accumulation, applies
        the global scales and ``bias``.

        For modes ``token`` and ``tensor``, ``input_amax`` may also be given:
        float32 ``[M]`` (token, one per row of ``x`` flattened to [M, K]) or
        ``[]`` (tensor). It then replaces the amax computed from ``x``: a
        row-parallel layer under tensor parallelism sees K/tp columns and
        passes the amax of the whole row, reduced across ranks (vLLM method),
        so every rank quantizes as TP=1 would. Only backends that set
        ``accepts_amax_override = True`` are given one.
        """
        raise NotImplementedError
