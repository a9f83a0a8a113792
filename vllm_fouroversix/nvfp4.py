"""The 4/6 NVFP4 numerics of SPEC sections 1-3, in plain vectorized PyTorch.

This is the one implementation of the math: the converter, the vLLM method and
every kernel backend are checked against it bit for bit. It runs on CPU and on
any GPU and imports nothing from vLLM.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

__all__ = [
    "BLOCK_SIZE",
    "E2M1_VALUES",
    "NVFP4Tensor",
    "ScaleRule",
    "RuleConstants",
    "rule_constants",
    "quantize",
    "dequantize",
    "decode_e2m1",
    "pack_codes",
    "unpack_codes",
    "swizzle_scales",
    "unswizzle_scales",
    "reference_linear",
    "weight_error",
    "fraction_mapped_to_4",
    "block_sum",
    "decode_blocks",
]

BLOCK_SIZE = 16

#: E2M1 magnitudes by code (the sign is bit 3).
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

# Rounding |y| to the E2M1 grid (half to even, saturating at 6) is a step
# function of t = 4|y| whose steps all sit on integers (the midpoints 0.25,
# 0.75, 1.25, 1.75, 2.5, 3.5, 5 times 4 are 1, 3, 5, 7, 10, 14, 20). So
# floor(t) + ceil(t) (even on integers, odd between them) indexes a table that
# also encodes each tie's direction. 4x faster than torch.bucketize on CPU.
_T_MAX = 21.0  # everything above 20 (y > 5) saturates to 6
_STEP_EDGES = ((1, False), (3, True), (5, False), (7, True), (10, False), (14, True), (20, False))


def _build_code_table() -> list[int]:
    table = []
    for idx in range(int(2 * _T_MAX) + 1):
        t2 = idx  # 2t when t is an integer (idx even), else 2t lies strictly inside (idx-1, idx+1)
        code = 0
        for edge, tie_up in _STEP_EDGES:
            if t2 > 2 * edge or (t2 == 2 * edge and tie_up):
                code += 1
        table.append(code)
    return table


_CODE_TABLE = _build_code_table()

class ScaleRule(str, enum.Enum):
    """How block scales are chosen (SPEC section 2)."""

    mse = "mse"
    mae = "mae"
    abs_max = "abs_max"
    static_6 = "static_6"
    static_4 = "static_4"

    @property
    def is_fouroversix(self) -> bool:
        """True for the adaptive rules that try both map-to-6 and map-to-4."""
        return self in (ScaleRule.mse, ScaleRule.mae, ScaleRule.abs_max)

    def __str__(self) -> str:  # argparse and f-strings show the plain name
        return self.value


@dataclass(frozen=True)
class RuleConstants:
    """M (E2M1 max the block max maps to) and S (E4M3 max used) of a rule."""

    M: float
    S: float

    @property
    def MS(self) -> float:  # noqa: N802 - the SPEC's name
        return self.M * self.S


_CONSTANTS = {
    ScaleRule.static_6: RuleConstants(6.0, 448.0),
    ScaleRule.static_4: RuleConstants(4.0, 448.0),
    ScaleRule.mse: RuleConstants(6.0, 256.0),
    ScaleRule.mae: RuleConstants(6.0, 256.0),
    ScaleRule.abs_max: RuleConstants(6.0, 256.0),
}


def rule_constants(rule: ScaleRule | str) -> RuleConstants:
    """The (M, S) pair of SPEC section 2 for ``rule``."""
    return _CONSTANTS[_as_rule(rule)]


@dataclass
class NVFP4Tensor:
    """A tensor quantized per SPEC: packed codes, block scales, global scale.

    ``data``: uint8 ``[..., K/2]`` (element 2i in the low nibble).
    ``scales``: float8_e4m3fn ``[..., K/16]``, row-major.
    ``global_scale``: float32 decode multiplier, shape ``[]`` per tensor or
    ``[..., 1]`` per row.
    """

    data: torch.Tensor
    scales: torch.Tensor
    global_scale: torch.Tensor
    rule: ScaleRule = ScaleRule.mse
    #: bool [..., K/16]: which blocks 4/6 mapped to 4 (None for static rules).
    mapped_to_4: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        """Shape of the unquantized tensor."""
        return torch.Size((*self.data.shape[:-1], self.data.shape[-1] * 2))

    @property
    def per_row(self) -> bool:
        return self.global_scale.dim() > 0

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self, dtype)


def _as_rule(rule: ScaleRule | str) -> ScaleRule:
    try:
        return ScaleRule(rule)
    except ValueError:
        names = ", ".join(r.value for r in ScaleRule)
        raise ValueError(f"unknown scale rule {rule!r}; expected one of: {names}") from None


def _check_input(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"{name} must be float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (a 0-d tensor has no blocks)")
    if x.shape[-1] % BLOCK_SIZE != 0:
        raise ValueError(
            f"{name}: the last dimension K={x.shape[-1]} must be a multiple of {BLOCK_SIZE}"
        )


def _e2m1_code_magnitude(y_abs: torch.Tensor) -> torch.Tensor:
    """int64 codes 0..7 of |y| rounded half-to-even onto the E2M1 grid, saturating at 6."""
    return _codes_from_t(y_abs * 4.0)


def _codes_from_t(t: torch.Tensor) -> torch.Tensor:
    """Codes from t = 4|y| (consumed in place)."""
    t = t.clamp_(max=_T_MAX)
    idx = t.floor().add_(t.ceil()).long()
    return torch.take(_code_table(t.device), idx)


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def _on_device(key: tuple, device: torch.device, build) -> torch.Tensor:
    """A small constant tensor built once per device (tables, divisors)."""
    k = (*key, device)
    t = _DEVICE_CACHE.get(k)
    if t is None:
        t = build().to(device)
        _DEVICE_CACHE[k] = t
    return t


def _code_table(device: torch.device) -> torch.Tensor:
    return _on_device(("codes",), device, lambda: torch.tensor(_CODE_TABLE, dtype=torch.int64))


def _const(v: float, device: torch.device) -> torch.Tensor:
    """A 0-d float32 tensor on ``device``, to divide by.

    On CUDA, torch computes ``t / python_float`` (or a CPU scalar tensor) as
    ``t * (1 / v)``, which rounds differently from the SPEC's division; a
    device tensor divisor gets a true IEEE division on every device.
    """
    return _on_device(("const", v), device, lambda: torch.tensor(v, dtype=torch.float32))


def _to_e4m3(s_hp: torch.Tensor) -> torch.Tensor:
    # Round to nearest even, saturating at 448 (e4m3fn has no inf).
    return s_hp.clamp(max=448.0).to(torch.float8_e4m3fn)


def _candidate(
    a: torch.Tensor,
    bmax: torch.Tensor,
    M: float,
    enc: torch.Tensor,
    dec: torch.Tensor,
    expand: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One scaling candidate: (codes of |x| [R, nb, 16], e4m3 scales [R, nb])."""
    s_hp = (bmax / _const(M, bmax.device)) * enc
    if expand:
        s_hp = s_hp * 1.5
    s = _to_e4m3(s_hp)
    sf = s.float()
    inv = torch.where(sf != 0, 1.0 / (dec * sf), torch.zeros_like(sf))
    # t = 4y in one multiply: scaling by 4 is exact, so a*(4*inv) == 4*(a*inv)
    # bit for bit (barring overflow, which saturates either way, and underflow
    # far below the first rounding step).
    t = a * (inv * 4.0).unsqueeze(-1)
    return _codes_from_t(t), s


def _lut(device: torch.device) -> torch.Tensor:
    return _on_device(("e2m1",), device, lambda: torch.tensor(E2M1_VALUES, dtype=torch.float32))


def _block_error(
    a: torch.Tensor, codes: torch.Tensor, s: torch.Tensor, amax: torch.Tensor, rule: ScaleRule
) -> torch.Tensor:
    # deq = q * float(s) * amax / 1536, left to right in FP32. Each block has
    # only 8 possible values, so build them per block once and gather.
    lut = _lut(a.device)
    table = (lut * s.float().unsqueeze(-1)) * amax.unsqueeze(-1) / _const(1536.0, a.device)  # [R, nb, 8]
    deq = torch.gather(table, -1, codes)
    # deq and x share their sign (or deq is 0), so |deq - x| = ||deq| - |x||.
    d = deq.sub_(a)
    if rule == ScaleRule.abs_max:
        return d.abs_().amax(-1)
    d = d.mul_(d) if rule == ScaleRule.mse else d.abs_()
    return block_sum(d)


def block_sum(e: torch.Tensor) -> torch.Tensor:
    """Sum of the 16 per-element errors of each block, in the fixed order
    ``sum_{j<8} (e[j] + e[j+8])`` accumulated left to right.

    A near tie between the two 4/6 candidates can flip with the rounding of
    this FP32 sum, so its order is part of the numerics: it is the order of
    torch's CPU reduction (so we stay bit-exact with the fouroversix reference
    on CPU), and every backend (CUDA torch, Triton, CuTe DSL) reproduces it.
    """
    # Pairs laid out [8, ...] so the sequential adds run on contiguous rows.
    p = (e[..., :8] + e[..., 8:]).movedim(-1, 0).contiguous()
    acc = p[0].clone()
    for j in range(1, 8):
        acc += p[j]
    return acc


# Rows are processed in chunks of about this many elements so that the
# temporaries of one chunk stay in cache on CPU (and allocations are reused
# instead of page-faulted in): 3-4x faster than whole-tensor passes there.
_CPU_CHUNK_ELEMS = 1 << 18


def quantize(
    x: torch.Tensor,
    rule: ScaleRule | str = ScaleRule.mse,
    *,
    per_row: bool = False,
    amax: torch.Tensor | float | None = None,
) -> NVFP4Tensor:
    """Quantize ``x`` [..., K] to NVFP4 with ``rule`` (SPEC section 2).

    ``per_row`` takes amax over each row (per-token global scales) instead of
    the whole tensor. ``amax`` overrides the computed amax (a scalar, or one
    value per row with ``per_row``): fused layers share one, static activation
    scales give one. Blocks larger than a given amax saturate.
    """
    rule = _as_rule(rule)
    _check_input(x)
    c = _CONSTANTS[rule]
    K = x.shape[-1]
    lead = x.shape[:-1]
    nb = K // BLOCK_SIZE
    x2 = x.reshape(-1, K)
    R = x2.shape[0]
    dev = x.device

    if amax is None:
        if R * K == 0:
            am = torch.zeros((R, 1) if per_row else (), device=dev)
        elif per_row:
            am = x2.abs().amax(-1, keepdim=True).float()
        else:
            am = x2.abs().max().float()
    else:
        am = _amax_override(amax, R, per_row, dev)
    am = am.float()
    am_rows = am if am.dim() else am.reshape(1, 1).expand(R, 1)  # [R, 1]

    data = torch.empty((R, K // 2), dtype=torch.uint8, device=dev)
    scales = torch.empty((R, nb), dtype=torch.uint8, device=dev)
    pick4 = torch.empty((R, nb), dtype=torch.bool, device=dev) if rule.is_fouroversix else None
    step = R if dev.type != "cpu" else max(1, _CPU_CHUNK_ELEMS // max(K, 1))
    for r0 in range(0, R, step):
        r1 = min(R, r0 + step)
        codes, s, p4 = _quantize_rows(x2[r0:r1], am_rows[r0:r1], rule, c)
        if codes is None:
            raise ValueError("x contains NaN or Inf")
        data[r0:r1] = pack_codes(codes.reshape(r1 - r0, K))
        scales[r0:r1] = s
        if pick4 is not None:
            pick4[r0:r1] = p4

    g = am / _const(c.MS, am.device)
    if per_row:
        g = g.reshape(*lead, 1)
    return NVFP4Tensor(
        data=data.reshape(*lead, K // 2),
        scales=scales.view(torch.float8_e4m3fn).reshape(*lead, nb),
        global_scale=g,
        rule=rule,
        mapped_to_4=None if pick4 is None else pick4.reshape(*lead, nb),
    )


def _amax_override(amax: torch.Tensor | float, rows: int, per_row: bool, device: torch.device) -> torch.Tensor:
    """A caller's amax as float32 [rows, 1] (per_row; a scalar is broadcast) or []."""
    am = torch.as_tensor(amax, dtype=torch.float32, device=device)
    if per_row:
        am = am.reshape(1, 1).expand(rows, 1) if am.numel() == 1 else am.reshape(rows, 1)
    elif am.numel() != 1:
        raise ValueError("amax must be a scalar unless per_row=True")
    else:
        am = am.reshape(())
    if not bool(torch.isfinite(am).all()) or bool((am < 0).any()):
        raise ValueError(f"amax must be finite and non-negative, got {amax!r}")
    return am


def _quantize_rows(
    x: torch.Tensor, am: torch.Tensor, rule: ScaleRule, c: RuleConstants
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """SPEC section 2 on rows ``x`` [r, K] with amax ``am`` [r, 1].

    Returns codes uint8 [r, nb, 16], scale bytes uint8 [r, nb] and, for 4/6
    rules, the bool map-to-4 choice [r, nb]; all None if x is not finite.
    """
    xf = x.reshape(x.shape[0], -1, BLOCK_SIZE).float()
    a = xf.abs()
    bmax = a.amax(-1)
    # NaN and Inf propagate into the block maxima: checking those is cheap.
    if bmax.numel() and not bool(torch.isfinite(bmax).all()):
        return None, None, None
    # amax 0: every code and scale is 0 (SPEC). An amax so small (below about
    # 4.5e-36) that (M*S)/amax overflows FP32 cannot be scaled either; it is
    # treated the same way (docs/NUMERICS.md).
    zero = (am == 0) | ~torch.isfinite(_const(c.MS, x.device) / am)
    safe = torch.where(zero, torch.ones_like(am), am)
    enc = _const(c.MS, x.device) / safe
    dec = 1.0 / enc
    enc = torch.where(zero, torch.zeros_like(enc), enc)
    codes, s = _candidate(a, bmax, c.M, enc, dec, expand=False)
    pick4 = None
    if rule.is_fouroversix:
        codes4, s4 = _candidate(a, bmax, c.M, enc, dec, expand=True)
        err6 = _block_error(a, codes, s, am, rule)
        err4 = _block_error(a, codes4, s4, am, rule)
        pick4 = err4 < err6  # ties go to map-to-6
        # Select on 1-byte codes: cheaper than on the int64 indices.
        codes = torch.where(pick4.unsqueeze(-1), codes4.to(torch.uint8), codes.to(torch.uint8))
        s = torch.where(pick4, s4.view(torch.uint8), s.view(torch.uint8)).view(torch.float8_e4m3fn)
    sb = s.view(torch.uint8)
    # Sign bit: negative inputs (also those that round to zero) get code | 8,
    # except in blocks whose scale is 0, where y is exactly 0.
    neg = xf < 0
    zero_scale = sb == 0
    if bool(zero_scale.any()):  # rare (zero or tiny blocks): skip the mask otherwise
        neg &= ~zero_scale.unsqueeze(-1)
    codes = codes.to(torch.uint8) | (neg.to(torch.uint8) << 3)
    return codes, sb, pick4


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Pack uint8 codes [..., K] two per byte: element 2i low nibble, 2i+1 high."""
    c = codes.to(torch.uint8)
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_codes(data: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: uint8 [..., K/2] -> codes [..., K]."""
    lo = data & 0x0F
    hi = data >> 4
    return torch.stack((lo, hi), dim=-1).reshape(*data.shape[:-1], data.shape[-1] * 2)


def decode_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes -> float32 values (code 8 decodes to -0.0)."""
    mag = _lut(codes.device)[(codes & 7).long()]
    return torch.where((codes & 8) != 0, -mag, mag)


def dequantize(t: NVFP4Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decoded value = e2m1 x float(block_scale) x global_scale (SPEC section 1)."""
    v = decode_blocks(t.data, t.scales)
    g = t.global_scale.float()
    return (v * g).to(dtype)


def swizzle_scales(scales: torch.Tensor) -> torch.Tensor:
    """Row-major block scales [..., rows, K/16] -> the 128x4 tensor-core layout.

    Rows are padded to a multiple of 128 and K/16 to a multiple of 4 (with
    zeros), then ``reshape(rows/128, 4, 32, K/64, 4).permute(0, 3, 2, 1, 4)``
    per batch (SPEC section 3). Returns a contiguous tensor of shape
    ``[..., rows_pad/128, K_pad/64, 32, 4, 4]``.
    """
    if scales.dim() < 2:
        raise ValueError("scales must have at least 2 dimensions [rows, K/16]")
    *batch, rows, cols = scales.shape
    rp = -(-rows // 128) * 128
    cp = -(-cols // 4) * 4
    raw = scales.view(torch.uint8) if scales.dtype == torch.float8_e4m3fn else scales
    if rp != rows or cp != cols:
        padded = raw.new_zeros((*batch, rp, cp))
        padded[..., :rows, :cols] = raw
        raw = padded
    nb = len(batch)
    out = raw.reshape(*batch, rp // 128, 4, 32, cp // 4, 4)
    perm = list(range(nb)) + [nb + 0, nb + 3, nb + 2, nb + 1, nb + 4]
    out = out.permute(*perm).contiguous()
    return out.view(scales.dtype) if scales.dtype == torch.float8_e4m3fn else out


def unswizzle_scales(swizzled: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`swizzle_scales`: back to row-major [..., rows, cols]."""
    raw = swizzled.view(torch.uint8) if swizzled.dtype == torch.float8_e4m3fn else swizzled
    rp = -(-rows // 128) * 128
    cp = -(-cols // 4) * 4
    batch = list(raw.shape[: raw.dim() - 5]) if raw.dim() >= 5 else []
    raw = raw.reshape(*batch, rp // 128, cp // 4, 32, 4, 4)
    nb = len(batch)
    # (rb, cb, j, i, c) -> (rb, i, j, cb, c)
    perm = list(range(nb)) + [nb + 0, nb + 3, nb + 2, nb + 1, nb + 4]
    out = raw.permute(*perm).reshape(*batch, rp, cp)[..., :rows, :cols].contiguous()
    return out.view(swizzled.dtype) if swizzled.dtype == torch.float8_e4m3fn else out


def reference_linear(
    x: torch.Tensor,
    w: NVFP4Tensor | torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    act_rule: ScaleRule | str = ScaleRule.mse,
    per_row: bool = True,
    act_quant: bool = True,
    act_amax: torch.Tensor | float | None = None,
    weight_rule: ScaleRule | str = ScaleRule.mse,
) -> torch.Tensor:
    """The oracle every backend is checked against (SPEC section 3).

    Quantizes ``x`` [..., K] with ``act_rule`` (per-row global scales with
    ``per_row``, a fixed amax with ``act_amax``; or not at all with
    ``act_quant=False``: weight-only), decodes both operands, multiplies in
    FP32, applies the product of global scales, adds ``bias`` and returns x's
    dtype. ``w`` is an :class:`NVFP4Tensor` [N, K] or a float weight that is
    first quantized with ``weight_rule``.
    """
    if not isinstance(w, NVFP4Tensor):
        w = quantize(w, weight_rule)
    K = x.shape[-1]
    if w.shape[-1] != K:
        raise ValueError(f"x has K={K} but the weight has K={w.shape[-1]}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    w_blocks = _decode_blocks(w)  # [N, K] without the global scale
    gw = w.global_scale.float().reshape(-1)  # [1] or [N]
    if act_quant:
        a = quantize(x2, act_rule, per_row=per_row, amax=act_amax)
        a_blocks = _decode_blocks(a)
        ga = a.global_scale.float().reshape(-1, 1) if per_row else a.global_scale.float()
        out = (a_blocks @ w_blocks.T) * (ga * gw)
    else:
        out = (x2.float() @ w_blocks.T) * gw
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype).reshape(*lead, w.shape[0])


def _byte_table(device: torch.device) -> torch.Tensor:
    """float32 [256, 2]: the (low nibble, high nibble) E2M1 values of each byte."""

    def build() -> torch.Tensor:
        mag = torch.tensor(E2M1_VALUES, dtype=torch.float32)
        codes = torch.cat([mag, -mag])  # code c: sign bit 3 -> -value (code 8 is -0.0)
        b = torch.arange(256)
        return torch.stack([codes[b & 15], codes[b >> 4]], dim=-1)

    return _on_device(("bytes",), device, build)


def decode_blocks(data: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Codes x block scales as float32 [..., K], without the global scale (what a
    tensor core sees). Decodes two values per byte through a 256-entry table."""
    lead = data.shape[:-1]
    k = data.shape[-1] * 2
    v = torch.nn.functional.embedding(data.reshape(-1, data.shape[-1]).long(), _byte_table(data.device))
    v = v.view(-1, k // BLOCK_SIZE, BLOCK_SIZE)
    v.mul_(scales.reshape(-1, k // BLOCK_SIZE).float().unsqueeze(-1))
    return v.view(*lead, k)


def _decode_blocks(t: NVFP4Tensor) -> torch.Tensor:
    return decode_blocks(t.data, t.scales)


def weight_error(w: torch.Tensor, t: NVFP4Tensor) -> float:
    """Relative Frobenius error ||Q(W) - W|| / ||W|| (0 for an all-zero W)."""
    wf = w.float()
    n = torch.linalg.vector_norm(wf).item()
    if n == 0:
        return 0.0
    return torch.linalg.vector_norm(dequantize(t) - wf).item() / n


def fraction_mapped_to_4(t: NVFP4Tensor) -> float:
    """Share of non-zero blocks that 4/6 mapped to 4 (0.0 for static rules)."""
    if t.mapped_to_4 is None:
        return 0.0
    nz = t.scales.view(torch.uint8) != 0
    n = int(nz.sum())
    return float((t.mapped_to_4 & nz).sum()) / n if n else 0.0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1); as ``triton.next_power_of_2``, which
    costs microseconds a call from Python, on the kernels' launch paths."""
    return 1 << max(0, n - 1).bit_length()

