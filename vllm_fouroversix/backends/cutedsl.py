"""The Blackwell backend: CuTe DSL kernels of ``cutlass_kernels`` (capability 10.x).

Activations are quantized by the 4/6 quantizer kernel straight into the
GEMM's layout (packed FP4, swizzled E4M3 scales, FP32 global scales) and the
persistent block-scaled GEMM (``tcgen05.mma ... kind::mxf4nvf4.block_scale``)
applies gA x gW and the bias in its epilogue. Weights are laid out once in
``prepare_weight``. Only ``select`` on a capability-10 GPU imports this module;
the DSL itself is imported when a kernel is first compiled (``warmup``).

Not run on hardware yet (no Blackwell GPU in this project): see docs/blackwell.md.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from vllm_fouroversix.backends.base import ActivationQuant, Backend, QuantizedWeight, check_linear_inputs

logger = logging.getLogger("vllm_fouroversix")


def prepare_weight_tensors(w: QuantizedWeight) -> dict:
    """Host-side weight layout for the GEMM (pure torch; tested on CPU).

    Packed codes padded along K to the TMA alignment, scales swizzled once into
    the flat 128x4 layout, and the global scale as an FP32 vector of 1 (scalar)
    or N (per output column) elements.
    """
    from cutlass_kernels import layout

    if w.scales_swizzled:
        raise ValueError("weight scales are already swizzled")
    g = w.global_scale.float().reshape(-1).contiguous()
    if g.numel() not in (1, w.n):
        raise ValueError(f"global_scale has {g.numel()} elements; expected 1 or N={w.n}")
    return {
        "data": layout.pad_k_packed(w.data, w.k),
        "scales": layout.prepare_weight_scales(w.scales, w.k),
        "global_scale": g,
        "col_scale": g.numel() > 1,
    }


class CuteDSLBackend(Backend):
    name = "cutedsl"

    def __init__(self, aot_dir: str | None = None) -> None:
        from cutlass_kernels.cache import KernelCache

        self.cache = KernelCache(aot_dir)
        self._fallback = None

    @classmethod
    def is_available(cls, device: torch.device) -> bool:
        device = torch.device(device)
        if device.type != "cuda" or not torch.cuda.is_available():
            return False
        if torch.cuda.get_device_capability(device)[0] != 10:
            return False
        return importlib.util.find_spec("cutlass") is not None

    def prepare_weight(self, w: QuantizedWeight) -> QuantizedWeight:
        t = prepare_weight_tensors(w)
        return QuantizedWeight(
            data=w.data, scales=t["scales"], global_scale=w.global_scale, n=w.n, k=w.k,
            scales_swizzled=True, extra=t,
        )

    def _plan(self, x: torch.Tensor, w: QuantizedWeight, bias, act: ActivationQuant):
        from cutlass_kernels.cache import device_arch
        from cutlass_kernels.launch import plan_linear

        return plan_linear(tuple(x.shape), x.dtype, w.n, w.k, act.mode, act.rule.value,
                           bool(w.extra["col_scale"]), bias is not None, device_arch(x.device),
                           torch.cuda.get_device_properties(x.device).multi_processor_count)

    def warmup(self, shapes, act: ActivationQuant, dtype: torch.dtype = torch.bfloat16,
               col_scale: bool = False, bias: bool = False, device=None) -> int:
        """Compile every kernel that (M, N, K) ``shapes`` will use; returns how many."""
        from cutlass_kernels.cache import device_arch
        from cutlass_kernels.launch import plan_linear

        n_sms = torch.cuda.get_device_properties(device).multi_processor_count
        keys = []
        for m, n, k in shapes:
            p = plan_linear((m, k), dtype, n, k, act.mode, act.rule.value, col_scale, bias,
                            device_arch(device), n_sms)
            keys += [p.quant, p.gemm]
        self.cache.warmup(dict.fromkeys(keys))
        return len(self.cache)

    def warmup_layer(self, w: QuantizedWeight, act: ActivationQuant, dtype: torch.dtype,
                     has_bias: bool) -> None:
        """Compile this layer's kernels for every M bucket at start-up (see tiles.WARMUP_M)."""
        from cutlass_kernels.tiles import WARMUP_M

        if act.mode == "none" or dtype not in (torch.bfloat16, torch.float16):
            return  # runs on the reference fallback, nothing to compile
        self.warmup([(m, w.n, w.k) for m in WARMUP_M], act, dtype,
                    col_scale=bool(w.extra["col_scale"]), bias=has_bias, device=w.data.device)

    def linear(self, x, w, bias, act, input_amax=None):
        check_linear_inputs(x, w, act, input_amax)
        if act.mode == "none" or x.dtype not in (torch.bfloat16, torch.float16):
            # FP4 x FP4 tensor cores need quantized bf16/fp16 activations.
            if self._fallback is None:
                from vllm_fouroversix.backends.reference import ReferenceBackend

                logger.warning("fouroversix: cutedsl runs %s/%s on the reference path", act.mode, x.dtype)
                self._fallback = ReferenceBackend()
            return self._fallback.linear(x, w, bias, act, input_amax)
        from cutlass_kernels.launch import run_linear

        lead = x.shape[:-1]
        x2 = x.reshape(-1, w.k).contiguous()
        plan = self._plan(x2, w, bias, act)
        amax = None
        if act.mode == "tensor":
            amax = x2.abs().amax().float()  # launch 1 of 2 in per-tensor mode
        elif act.mode == "static":
            amax = input_amax.float().reshape(())
        if plan.m == 0:
            return x.new_empty((*lead, w.n))
        out = run_linear(self.cache, plan, x2, w.extra["data"], w.extra["scales"],
                         w.extra["global_scale"], bias.to(x.dtype) if bias is not None else None, amax)
        return out.reshape(*lead, w.n)
