"""The Hopper/Ampere backend: Triton kernels, weights kept packed FP4 in memory.

``linear`` runs the 4/6 activation quantizer (for W4A4 modes) and the NVFP4
weight GEMM of :mod:`vllm_fouroversix.kernels`; see docs/hopper.md. Results
equal ``nvfp4.reference_linear`` up to the order of FP32 additions. No vLLM
imports.
"""

from __future__ import annotations

import importlib.util

import torch

from vllm_fouroversix.backends.base import ActivationQuant, Backend, QuantizedWeight, check_linear_inputs


_KERNELS: tuple | None = None


def _kernels() -> tuple:
    """(fp4_gemm, pdl_mode, k64_operand, quantize_triton), imported on first use (Triton is optional)
    and then kept: an import statement in ``linear`` costs about a microsecond a call."""
    global _KERNELS
    if _KERNELS is None:
        from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, k64_operand, pdl_mode
        from vllm_fouroversix.kernels.triton_quantize import quantize_triton

        _KERNELS = (fp4_gemm, pdl_mode, k64_operand, quantize_triton)
    return _KERNELS


class TritonBackend(Backend):
    name = "triton"
    accepts_amax_override = True
    #: W4A4: the quantizer and the GEMM are launched as programmatic dependents (sm_90+; no
    #: effect elsewhere): each launch overlaps the end of the kernel before it, and the
    #: quantizer lets a GEMM that reads its weight ahead launch while it runs. Off = plain launches.
    use_pdl = True

    @classmethod
    def is_available(cls, device: torch.device) -> bool:
        """Capability 8.x/9.x GPUs; also CPU under ``TRITON_INTERPRET=1``, where the same
        kernels run through Triton's interpreter (slow: for tests, never chosen automatically)."""
        device = torch.device(device)
        if importlib.util.find_spec("triton") is None:
            return False
        if device.type == "cpu":
            from vllm_fouroversix.kernels.device import INTERPRET

            return INTERPRET
        if device.type != "cuda" or not torch.cuda.is_available():
            return False
        major, _ = torch.cuda.get_device_capability(device)
        return major in (8, 9)

    def prepare_weight(self, w: QuantizedWeight) -> QuantizedWeight:
        """Keep the SPEC layout (row-major codes and scales); undo a swizzle if one was applied.

        The kernels read ``data`` [N, K/2] and ``scales`` [N, K/16] row-major:
        each program reads whole 16-byte runs of a row, which is already
        coalesced, so no re-layout is stored.
        """
        if w.scales_swizzled:
            from vllm_fouroversix.nvfp4 import unswizzle_scales

            w.scales = unswizzle_scales(w.scales, w.n, w.k // 16)
            w.scales_swizzled = False
        w.data = w.data.contiguous()
        w.scales = w.scales.contiguous()
        w.global_scale = w.global_scale.float()
        extra = dict(w.extra) if isinstance(w.extra, dict) else {}
        # The scalar weight scale on the host (read once here, at load time) lets
        # the prefill path pass it to cuBLAS as alpha without a device sync.
        extra["gw_float"] = float(w.global_scale) if w.global_scale.numel() == 1 else None
        w.extra = extra
        return w

    def linear(
        self,
        x: torch.Tensor,
        w: QuantizedWeight,
        bias: torch.Tensor | None,
        act: ActivationQuant,
        input_amax: torch.Tensor | None = None,
    ) -> torch.Tensor:
        fp4_gemm, pdl_mode, k64_operand, quantize_triton = _kernels()
        check_linear_inputs(x, w, act, input_amax)
        K = x.shape[-1]
        x2 = x if x.dim() == 2 else x.reshape(-1, K)
        scales = w.scales
        if w.scales_swizzled:  # prepare_weight was skipped
            from vllm_fouroversix.nvfp4 import unswizzle_scales

            scales = unswizzle_scales(scales, w.n, w.k // 16)
        gw_float = w.extra.get("gw_float") if isinstance(w.extra, dict) else None
        if act.mode == "none":
            out = fp4_gemm(x2, w.data, scales, w.global_scale, bias=bias, gw_float=gw_float)
        else:
            # PDL (sm_90+): the quantizer and the GEMM are dependents of the kernel before each, where
            # the GEMM takes PDL; the quantizer lets the GEMM launch at its start ("early") where that
            # was measured faster, else the GEMM launches when the quantizer's programs have exited.
            mode = pdl_mode(x2.shape[0], w.n, K, x2.device) if self.use_pdl else None
            # the operand in the K order the wgmma kernel decodes fastest, where it takes the product
            k64 = k64_operand(x2.shape[0], w.n, K, x2.device)
            q = quantize_triton(
                x2,
                act.rule,
                per_row=act.mode == "token",
                # static: the checkpoint's amax; token/tensor: an optional amax that
                # replaces the computed one (tensor parallelism, see Backend.linear).
                amax=input_amax,
                write_packed=False,
                dequant_dtype=torch.bfloat16,
                launch_dependents=mode == "early",
                pdl_wait=mode is not None,
                perm_k64=k64,
            )
            out = fp4_gemm(q.dequant, w.data, scales, w.global_scale, ga=q.global_scale, bias=bias,
                           out_dtype=x.dtype, pdl=mode is not None, a_k64=k64)
        return out if x.dim() == 2 else out.reshape(*x.shape[:-1], w.n)
