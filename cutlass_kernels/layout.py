"""Host-side layout helpers for the Blackwell kernels (pure Python / PyTorch).

The swizzle itself is ``vllm_fouroversix.nvfp4.swizzle_scales`` (SPEC section 3);
nothing here re-derives it except :func:`swizzled_offset`, the element-wise
index the quantizer kernel uses to write a scale in place. It is written with
``+ * // %`` only, so the same function runs on Python ints (tests: checked
against ``swizzle_scales``) and on DSL integers (traced into the kernel).
"""

from __future__ import annotations

import torch

from vllm_fouroversix import nvfp4

#: TMA needs 16-byte row pitches: K/2 bytes of packed FP4 -> K % 32 == 0.
K_ALIGN = 32
#: Output rows are N bf16/fp16 values: N % 8 == 0 gives a 16-byte pitch.
N_ALIGN = 8
SF_ROWS = 128  # swizzle atom: 128 rows x 4 scales (64 elements of K)
SF_COLS = 4


def padded_k(k: int) -> int:
    """K rounded up to the GEMM's alignment (SPEC allows K % 16 == 0)."""
    if k % nvfp4.BLOCK_SIZE:
        raise ValueError(f"K={k} must be a multiple of {nvfp4.BLOCK_SIZE}")
    return -(-k // K_ALIGN) * K_ALIGN


def swizzled_offset(row, col, col_blocks):
    """Byte offset of scale (row, col) in the swizzled buffer.

    ``col_blocks``: the padded scale column count / 4. Matches
    ``swizzle_scales``' ``reshape(rows/128, 4, 32, cols/4, 4).permute(0, 3, 2, 1, 4)``:
    row = rb*128 + i*32 + j, col = cb*4 + c -> ((((rb*CB + cb)*32 + j)*4 + i)*4 + c).
    """
    rb = row // 128
    i = (row % 128) // 32
    j = row % 32
    cb = col // 4
    c = col % 4
    return (((rb * col_blocks + cb) * 32 + j) * 4 + i) * 4 + c


def swizzled_scale_numel(rows, cols):
    """Elements of the swizzled scale buffer for ``rows`` x ``cols`` scales."""
    return ((rows + 127) // 128 * 128) * ((cols + 3) // 4 * 4)


def pad_k_packed(data: torch.Tensor, k: int) -> torch.Tensor:
    """Packed codes [rows, K/2] -> [rows, padded_k(K)/2] with zero codes appended."""
    kp = padded_k(k)
    if kp == k:
        return data.contiguous()
    out = data.new_zeros((*data.shape[:-1], kp // 2))
    out[..., : k // 2] = data
    return out


def prepare_weight_scales(scales: torch.Tensor, k: int) -> torch.Tensor:
    """Row-major weight scales [N, K/16] -> flat swizzled uint8 for the GEMM.

    Uses ``nvfp4.swizzle_scales`` (which zero-pads rows to 128 and columns to a
    multiple of 4); the padded K columns keep scale 0, i.e. contribute 0.
    """
    if scales.shape[-1] != k // nvfp4.BLOCK_SIZE:
        raise ValueError(f"scales have {scales.shape[-1]} columns, expected K/16={k // 16}")
    return nvfp4.swizzle_scales(scales).view(torch.uint8).reshape(-1)


def activation_buffers(m: int, k: int, device) -> dict:
    """Output buffers of the quantizer for x [m, k] (allocated, not filled).

    ``data``: uint8 [m, padded_k/2]; ``scales``: uint8 flat swizzled (rows padded
    to 128: the kernel writes every real row's columns, padding included; the
    padded rows are never read into a stored output row); ``global_scale``:
    float32 [m] (per-token) - the caller slices [:1] for a tensor scale.
    """
    kp = padded_k(k)
    return {
        "data": torch.empty((m, kp // 2), dtype=torch.uint8, device=device),
        "scales": torch.empty(swizzled_scale_numel(m, k // 16), dtype=torch.uint8, device=device),
        "global_scale": torch.empty(m, dtype=torch.float32, device=device),
    }


def unswizzle_flat(flat: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Flat swizzled uint8 buffer -> row-major [rows, cols] (tests, debugging)."""
    rp = (rows + 127) // 128
    cp = (cols + 3) // 4
    return nvfp4.unswizzle_scales(flat.reshape(rp, cp, 32, 4, 4), rows, cols)
