"""Running the compiled kernels on torch tensors (Blackwell GPU only).

``plan_*`` functions are pure host-side argument preparation (shapes, padding,
modes) and are tested on CPU; ``run_*`` turn tensors into DSL pointers and
launch on the current CUDA stream, which needs a Blackwell GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cutlass_kernels import layout, tiles
from cutlass_kernels.cache import GemmKey, KernelCache, QuantKey

_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
ACT_TO_AMAX_MODE = {"token": "token", "tensor": "given", "static": "given"}


@dataclass(frozen=True)
class LinearPlan:
    """Everything that decides which kernels a linear call launches."""

    m: int
    n: int
    k: int
    k_pad: int
    quant: QuantKey
    gemm: GemmKey


def plan_linear(x_shape, x_dtype: torch.dtype, n: int, k: int, act_mode: str, rule: str,
                col_scale: bool, bias: bool, arch: str, num_sms: int = tiles.B200_SMS) -> LinearPlan:
    """Kernel keys and padded sizes for ``x [..., k] @ W[n, k]^T``."""
    if act_mode not in ACT_TO_AMAX_MODE:
        raise ValueError(f"the Blackwell kernels quantize activations; mode {act_mode!r} is not supported")
    if x_dtype not in _DTYPE_NAMES:
        raise ValueError(f"x must be bfloat16 or float16, got {x_dtype}")
    if x_shape[-1] != k:
        raise ValueError(f"x has K={x_shape[-1]}, the weight K={k}")
    if n % layout.N_ALIGN:
        raise ValueError(f"N={n} must be a multiple of {layout.N_ALIGN}")
    m = 1
    for d in x_shape[:-1]:
        m *= d
    dt = _DTYPE_NAMES[x_dtype]
    cfg = tiles.select_config(max(m, 1), n, k, num_sms)
    quant = QuantKey(arch, rule, ACT_TO_AMAX_MODE[act_mode], dt)
    gemm = GemmKey(arch, cfg.tile_mn, cfg.cluster_mn, dt, act_mode == "token", col_scale, bias,
                   cfg.max_active_clusters(num_sms))
    return LinearPlan(m, n, k, layout.padded_k(k), quant, gemm)


def _ptrs():
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_ptr

    def ptr(dtype, t: torch.Tensor, align: int):
        return make_ptr(dtype, t.data_ptr(), cute.AddressSpace.gmem, assumed_align=align)

    return cutlass, ptr


def _stream(device):
    import cuda.bindings.driver as cuda

    return cuda.CUstream(torch.cuda.current_stream(device).cuda_stream)


def run_linear(cache: KernelCache, plan: LinearPlan, x2: torch.Tensor, w_data: torch.Tensor,
               w_sf: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
               amax: torch.Tensor | None) -> torch.Tensor:
    """Quantize ``x2`` [M, K] and multiply by the prepared weight: [M, N] in x's dtype."""
    cutlass, ptr = _ptrs()
    dev = x2.device
    stream = _stream(dev)
    in_dt = {"bfloat16": cutlass.BFloat16, "float16": cutlass.Float16}[plan.quant.in_dtype]
    bufs = layout.activation_buffers(plan.m, plan.k, dev)
    if amax is None:
        amax = bufs["global_scale"]  # unused in token mode; any valid pointer
    cache.get(plan.quant)(
        ptr(in_dt, x2, 16), ptr(cutlass.Int32, bufs["data"], 16), ptr(cutlass.Uint8, bufs["scales"], 16),
        ptr(cutlass.Float32, bufs["global_scale"], 4), ptr(cutlass.Float32, amax.float().reshape(1), 4),
        plan.m, plan.k, stream,
    )
    out = torch.empty((plan.m, plan.n), dtype=x2.dtype, device=dev)
    fp4, sf = cutlass.Float4E2M1FN, cutlass.Float8E4M3FN
    b = bias if bias is not None else out  # unused without bias
    cache.get(plan.gemm)(
        ptr(fp4, bufs["data"], 16), ptr(fp4, w_data, 16), ptr(sf, bufs["scales"], 16), ptr(sf, w_sf, 16),
        ptr(in_dt, out, 16), ptr(cutlass.Float32, bufs["global_scale"], 4),
        ptr(cutlass.Float32, w_scale, 4), ptr(in_dt, b, 2),
        plan.m, plan.n, plan.k_pad, stream,
    )
    return out
