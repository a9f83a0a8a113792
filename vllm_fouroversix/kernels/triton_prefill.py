"""Prefill GEMM of the decode + GEMM path: bf16 x bf16 with the 4/6 scales in the epilogue.

Where the Gluon wgmma kernel does not take a large-M product that has per-row scales (W4A4
at M > 256 where the wgmma tiles would leave SMs idle, before sm_90, without Gluon, with
K % 64 != 0 or strides TMA cannot take; W4A16 with a per-row weight scale above M = 2048),
the weight is decoded once into a bf16 workspace
(``q * s``, exact) and the activations arrive decoded by the quantizer (``q * s``
per row, exact),
so what is left is a plain bf16 GEMM with FP32 accumulation whose epilogue
applies the per-row activation global scale, the weight global scale and the
bias: ``(acc * (ga * gw)) + bias``. cuBLAS cannot apply a per-row scale before
its output rounding, so this is a Triton kernel.

On sm_90+ it is the persistent TMA kernel of Triton's tutorial 09 (operand tiles
brought into shared memory by the tensor memory accelerator, ``num_stages``
deep, wgmma): one program per SM walks the output tiles in grouped order. On
other devices (and under the interpreter) the same loop runs with plain loads.
Nothing here imports vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vllm_fouroversix.kernels.device import INTERPRET, num_sms, tma_supported
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.nvfp4 import ceil_div

__all__ = ["PrefillTile", "prefill_gemm", "prefill_tile"]


@dataclass(frozen=True)
class PrefillTile:
    """Tile of :func:`prefill_gemm`: BM x BN outputs a step, BK deep, ``num_stages`` K tiles in flight."""

    BM: int = 128
    BN: int = 256
    BK: int = 64
    group_m: int = 8
    num_warps: int = 8
    num_stages: int = 3

    def short(self) -> str:
        return f"tma {self.BM}x{self.BN}x{self.BK} w{self.num_warps} st{self.num_stages}"


#: The two tiles of the sm_90 kernel (H100 sweep, benchmarks/hopper.md run 13): the wide
#: one ran at 0.91-0.99x cuBLAS where its tiles fill the SMs, the square one is better
#: where they do not (a short M, a narrow N).
WIDE_TILE = PrefillTile(128, 256, 64, num_warps=8, num_stages=3)
SQUARE_TILE = PrefillTile(128, 128, 64, num_warps=8, num_stages=4)


def prefill_tile(M: int, N: int, sms: int) -> PrefillTile:
    """The tile whose waves keep more of the SMs busy, the square tile counted at the
    ~0.88 of the wide tile's throughput it measured (run 13)."""

    def busy(t: PrefillTile) -> float:
        tiles = ceil_div(M, t.BM) * ceil_div(N, t.BN)
        return tiles / (ceil_div(tiles, sms) * sms)

    return WIDE_TILE if busy(WIDE_TILE) >= 0.88 * busy(SQUARE_TILE) else SQUARE_TILE


def epilogue_args(gw: torch.Tensor, ga: torch.Tensor | None, bias: torch.Tensor | None) -> tuple:
    """The operands of :func:`scaled_output` as every Triton launch passes them:
    (gw fp32 [1] or [N], ga fp32 (gw as a placeholder when None), bias (gw when None),
    stride_ga (0: one ga for all rows), the GW_VEC / HAS_GA / HAS_BIAS constexprs)."""
    if gw.dim() != 1 or gw.dtype != torch.float32:  # (a view and a cast cost ~1 us each a call)
        gw = gw.reshape(-1).float()
    has_ga = ga is not None
    ga_t = (ga if ga.dim() == 1 and ga.dtype == torch.float32 else ga.reshape(-1).float()) if has_ga else gw
    stride_ga = 1 if has_ga and ga_t.numel() > 1 else 0
    flags = dict(GW_VEC=gw.numel() > 1, HAS_GA=has_ga, HAS_BIAS=bias is not None)
    return gw, ga_t, bias if bias is not None else gw, stride_ga, flags


@triton.jit
def grouped_pid(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped ordering (also triton_gemm's tiles): GROUP_M row tiles share their weight tiles while in L2."""
    group = GROUP_M * num_pid_n
    first_m = (tile_id // group) * GROUP_M
    gsize = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (tile_id % group) % gsize
    pid_n = (tile_id % group) // gsize
    return pid_m, pid_n


@triton.jit
def scaled_output(acc, offs_m, offs_n, M, N, ga_ptr, gw_ptr, bias_ptr, stride_ga,
                  GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The GEMM epilogue of every Triton path: (acc * (ga * gw)) + bias in FP32, as
    ``reference_linear``, for output rows offs_m and columns offs_n."""
    if GW_VEC:
        gw = tl.load(gw_ptr + offs_n, mask=offs_n < N, other=0.0)[None, :]
    else:
        gw = tl.load(gw_ptr)
    if HAS_GA:
        ga = tl.load(ga_ptr + offs_m * stride_ga, mask=offs_m < M, other=0.0)[:, None]
        out = acc * (ga * gw)
    else:
        out = acc * gw
    if HAS_BIAS:
        out = out + tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    return out


@triton.jit
def _prefill_tma_kernel(
    a_desc, w_desc, out_desc, ga_ptr, gw_ptr, bias_ptr, M, N, K, stride_ga,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, NUM_PROGS: tl.constexpr,
    GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """Persistent: program p takes output tiles p, p + NUM_PROGS, ...; TMA loads (OOB rows/cols read 0)."""
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    for tile_id in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_PROGS):
        pid_m, pid_n = grouped_pid(tile_id, num_pid_m, num_pid_n, GROUP_M)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for kt in range(k_tiles):
            a = a_desc.load([pid_m * BM, kt * BK])
            w = w_desc.load([pid_n * BN, kt * BK])
            acc = tl.dot(a, w.T, acc)
        out = scaled_output(acc, pid_m * BM + tl.arange(0, BM), pid_n * BN + tl.arange(0, BN), M, N,
                            ga_ptr, gw_ptr, bias_ptr, stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
        # A TMA store (clipped at the tensor's edges): a masked pointer store of a
        # 128 x 256 tile needs a 64-bit address per element and spills registers.
        out_desc.store([pid_m * BM, pid_n * BN], out.to(out_desc.dtype))


@triton.jit
def _prefill_kernel(
    a_ptr, w_ptr, ga_ptr, gw_ptr, bias_ptr, out_ptr, M, N, K, stride_am, stride_w, stride_om, stride_ga,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
    GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
):
    """The same product with plain masked loads, one tile a program (pre-Hopper, interpreter)."""
    pid_m, pid_n = grouped_pid(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN), GROUP_M)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    ka = tl.arange(0, BK)
    a_rows = a_ptr + offs_m[:, None].to(tl.int64) * stride_am
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        kin = ((k0 + ka) < K)[None, :]
        a = tl.load(a_rows + (k0 + ka)[None, :], mask=(offs_m < M)[:, None] & kin, other=0.0)
        w = tl.load(w_rows + (k0 + ka)[None, :], mask=(offs_n < N)[:, None] & kin, other=0.0)
        if IEEE:  # fp32 operands (fp32 input, or the interpreter's bf16 values), exact products
            acc = tl.dot(a.to(tl.float32), tl.trans(w.to(tl.float32)), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w), acc)
    out = scaled_output(acc, offs_m, offs_n, M, N, ga_ptr, gw_ptr, bias_ptr, stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    ptrs = out_ptr + offs_m[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(ptrs, out.to(out_ptr.dtype.element_ty), mask=(offs_m < M)[:, None] & (offs_n < N)[None, :])


# Launched through FastKernel: once a specialization is compiled, Triton's per-call launch Python is skipped
# (kernels/launch.py; host time a call, docs/hopper.md).
_PREFILL = FastKernel(_prefill_kernel)
_PREFILL_TMA = FastKernel(_prefill_tma_kernel)


def prefill_gemm(
    a: torch.Tensor,
    w: torch.Tensor,
    gw: torch.Tensor,
    ga: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    tile: PrefillTile | None = None,
) -> torch.Tensor:
    """``(a @ w.T) * (ga[:, None] * gw) + bias`` with FP32 accumulation.

    ``a`` [M, K] and ``w`` [N, K]: bf16/fp16/fp32 (same dtype; fp32 runs exact
    fp32 products on the portable kernel), rows contiguous; ``gw`` fp32 [1] or
    [N]; ``ga`` fp32 [M] (per row), [1] (per tensor) or None; ``bias`` [N];
    ``out`` [M, N] with unit column stride (default: new, a's dtype); ``tile``:
    the sm_90 kernel's tile (default :func:`prefill_tile`).
    """
    M, K = a.shape
    N = w.shape[0]
    if w.shape[1] != K or w.dtype != a.dtype:
        raise ValueError(f"prefill_gemm: weight {tuple(w.shape)} {w.dtype} does not match activations "
                         f"{tuple(a.shape)} {a.dtype}")
    if a.stride(1) != 1:
        a = a.contiguous()
    if out is None:
        out = torch.empty((M, N), dtype=a.dtype, device=a.device)
    elif out.shape != (M, N) or out.stride(1) != 1:
        raise ValueError(f"prefill_gemm: out {tuple(out.shape)} with strides {out.stride()} is not a "
                         f"row-major [{M}, {N}] (unit column stride)")
    if M == 0 or N == 0:
        return out
    gw, ga_t, bias_t, stride_ga, flags = epilogue_args(gw, ga, bias)
    # TMA needs 16-byte aligned bases and row strides.
    aligned = all(x.data_ptr() % 16 == 0 and (x.stride(0) * x.element_size()) % 16 == 0 for x in (a, w, out))
    if a.dtype != torch.float32 and tma_supported(a.device) and aligned and w.stride(1) == 1:
        from triton.tools.tensor_descriptor import TensorDescriptor

        sms = num_sms(a.device)
        t = tile or prefill_tile(M, N, sms)
        progs = min(ceil_div(M, t.BM) * ceil_div(N, t.BN), sms)
        a_desc = TensorDescriptor(a, list(a.shape), list(a.stride()), [t.BM, t.BK])
        w_desc = TensorDescriptor(w, list(w.shape), list(w.stride()), [t.BN, t.BK])
        o_desc = TensorDescriptor(out, list(out.shape), list(out.stride()), [t.BM, t.BN])
        _PREFILL_TMA[(progs,)](
            a_desc, w_desc, o_desc, ga_t, gw, bias_t, M, N, K, stride_ga,
            BM=t.BM, BN=t.BN, BK=t.BK, GROUP_M=t.group_m, NUM_PROGS=progs, **flags,
            num_warps=t.num_warps, num_stages=t.num_stages,
        )
        return out
    if w.stride(1) != 1:
        w = w.contiguous()
    ieee = INTERPRET or a.dtype == torch.float32
    # The tile the old W4A4 prefill path ran on sm_90 (0.69-0.76x cuBLAS there).
    BM, BN, BK = (32, 32, 32) if INTERPRET else ((64, 64, 32) if ieee else (128, 128, 64))
    _PREFILL[(ceil_div(M, BM) * ceil_div(N, BN),)](
        a, w, ga_t, gw, bias_t, out, M, N, K, a.stride(0), w.stride(0), out.stride(0), stride_ga,
        BM=BM, BN=BN, BK=BK, GROUP_M=8, IEEE=ieee, **flags,
        num_warps=4 if ieee else 8, num_stages=2 if ieee else 4,
    )
    return out
