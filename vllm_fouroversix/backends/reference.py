"""The portable PyTorch backend: SPEC math straight from ``nvfp4``.

Runs on CPU (vLLM's CPU build) and any GPU. Weights stay packed FP4 in memory
and are decoded per call; this is the correctness baseline, not a fast path.
"""

from __future__ import annotations

import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, Backend, QuantizedWeight


class ReferenceBackend(Backend):
    name = "reference"
    accepts_amax_override = True

    @classmethod
    def is_available(cls, device: torch.device) -> bool:
        return True

    def linear(
        self,
        x: torch.Tensor,
        w: QuantizedWeight,
        bias: torch.Tensor | None,
        act: ActivationQuant,
        input_amax: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if act.mode == "static" and input_amax is None:
            raise ValueError("activation mode 'static' needs input_amax (the checkpoint's input_scale)")
        return nvfp4.reference_linear(
            x,
            w.to_nvfp4(),
            bias,
            act_rule=act.rule,
            per_row=act.mode == "token",
            act_quant=act.mode != "none",
            # static: the checkpoint's amax; token/tensor: an optional precomputed
            # amax (e.g. reduced over tensor-parallel ranks) that replaces the local one.
            act_amax=input_amax if act.mode != "none" else None,
        )
