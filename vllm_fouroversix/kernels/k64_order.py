"""The K order of the W4A4 operand that the Hopper wgmma kernel reads decoded straight (``PERM``).

Within every 64 values of K, element ``16c + 8w + 4ol + 2e + oh`` (the weight's physical
order: byte ``8c + 4w + 2ol + e`` of the chunk, nibble ``oh``) is stored at position
``32w + 16oh + 8ol + 2c + e``. With the activations in this order, thread ``c`` of an MMA quad
owns bytes ``8c .. 8c + 7`` of each weight row's 32-byte K step, which lie in one 16-value block:
one 8-byte shared-memory load a row, one block scale, no byte selection
(``gluon_wgmma``). A dot product does not depend on its order of terms up to FP32 rounding,
so only the operand that the quantizer writes changes, not the weight.

The quantizer writes this order directly (``quantize_triton(perm_k64=True)``); these host
functions are its definition for tests and the fallback when the wgmma kernel cannot run.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["perm_k64_index", "permute_k64", "unpermute_k64"]


@functools.lru_cache(maxsize=8)
def _positions(K: int) -> tuple[int, ...]:
    if K % 64:
        raise ValueError(f"the K64 order needs K % 64 == 0, got K={K}")
    pos = []
    for p in range(K):
        base, r = p - p % 64, p % 64
        c, w, ol, e, oh = r // 16, (r >> 3) & 1, (r >> 2) & 1, (r >> 1) & 1, r & 1
        pos.append(base + 32 * w + 16 * oh + 8 * ol + 2 * c + e)
    return tuple(pos)


def perm_k64_index(K: int, device: torch.device | str | None = None) -> torch.Tensor:
    """int64 [K]: the stored position of each physical K index."""
    return torch.tensor(_positions(K), dtype=torch.int64, device=device)


def permute_k64(x: torch.Tensor) -> torch.Tensor:
    """x [..., K] in the physical order -> the same values in the K64 order (a new tensor)."""
    out = torch.empty_like(x)
    out[..., perm_k64_index(x.shape[-1], x.device)] = x
    return out


def unpermute_k64(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`permute_k64`."""
    return x[..., perm_k64_index(x.shape[-1], x.device)]
