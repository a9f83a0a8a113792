"""The portable PyTorch backend: SPEC math straight from ``nvfp4``.

Runs on CPU (vLLM's CPU build) and any GPU. Weights stay packed FP4 in memory
and are decoded per call; this is the correctness baseline, not a fast path.
``linear`` is ``nvfp4.reference_linear`` itself, plus the tensor-parallel amax
override and the handling of degenerate rows that a serving engine needs.
"""

from __future__ import annotations

import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, Backend, QuantizedWeight, check_linear_inputs


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
        check_linear_inputs(x, w, act, input_amax)
        # static: the checkpoint's amax; token/tensor: an optional precomputed
        # amax (e.g. reduced over tensor-parallel ranks) that replaces the local one.
        act_amax = input_amax if act.mode != "none" else None
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        nan_rows = None
        if act.mode != "none":
            x2, act_amax, nan_rows = _sanitize(x2, act, act_amax)
        out = nvfp4.reference_linear(
            x2, w.to_nvfp4(), bias, act_rule=act.rule, per_row=act.mode == "token",
            act_quant=act.mode != "none", act_amax=act_amax,
        )
        if nan_rows is not None:
            out[nan_rows] = float("nan")
        return out.reshape(*lead, w.n)


def _sanitize(
    x2: torch.Tensor, act: ActivationQuant, amax: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Keep the engine alive on inputs the SPEC math cannot quantize.

    ``nvfp4.quantize`` raises on NaN/Inf inputs and on a non-finite amax. Real
    activations never get there, but vLLM's warm-up and profiling runs feed
    uninitialized memory through the model, and a GPU kernel would not raise.
    Here such rows (the whole tensor, for per-tensor scales) are quantized as
    zeros and give NaN output rows. Every other row is computed exactly as
    before; an amax too small to scale is already quantized as zero by nvfp4.
    Returns (x2, amax, bool rows to set to NaN or None).
    """
    if x2.numel() == 0:
        return x2, amax, None
    rows = x2.shape[0]
    row_max = x2.abs().amax(-1).float()  # NaN/Inf propagate
    bad_rows = ~torch.isfinite(row_max)  # these give NaN outputs
    if act.mode == "token":
        m = row_max if amax is None else amax.float().reshape(-1).expand(rows)
    elif act.mode == "tensor":
        m = (row_max.amax() if amax is None else amax.float().reshape(())).expand(rows)
        bad_rows = bad_rows.any().expand(rows)  # one amax for all rows
    else:  # static: a calibrated amax; rows are independent
        m = amax.float().reshape(()).expand(rows)
    bad_scale = ~torch.isfinite(m)  # (a finite amax too small to scale: nvfp4 zeroes it)
    drop = bad_rows | bad_scale
    if not bool(drop.any()):
        return x2, amax, None
    x2 = torch.where(drop.unsqueeze(-1), torch.zeros_like(x2), x2)
    if act.mode == "token" and amax is not None:
        amax = torch.where(drop, torch.zeros_like(m), m)
    elif act.mode != "token" and bool(bad_scale.any()):
        amax = torch.zeros((), dtype=torch.float32, device=x2.device)  # all rows dropped
    nan_rows = bad_rows | bad_scale
    return x2, amax, nan_rows if bool(nan_rows.any()) else None
