"""The 4/6 NVFP4 activation quantizer as one Triton kernel (SPEC section 2).

One program quantizes one row and each thread whole 16-element blocks (one
block a thread up to 16 warps): it reads the row once (per-token mode: the row
amax, then both candidates, the 4/6 selection, the packing and the scales from
registers; rows longer than ``_MAX_SINGLE_PASS_BLOCKS`` blocks, and with many
rows those over ``_SHORT_ROW_BLOCKS``, are read twice, the second time from
cache). A few long rows are each split over several programs instead, each
reading the whole row for the amax and quantizing its chunk. Per-tensor and
static modes take the amax from a one-element tensor.

Bit-exact with :func:`vllm_fouroversix.nvfp4.quantize` for every rule:

- every operation of SPEC section 2 in the same order, correctly rounded:
  divisions IEEE (``tl.div_rn``) or, for ``x / 3`` (the block max's ``/ 6`` and
  the ``/ 1536`` of the error's dequantization), one FMA-corrected reciprocal
  multiply that equals it (:func:`_div3`); the error's subtraction one FMA whose
  product is exact (:func:`_neg_deq_error`); no other fused multiply-adds (the
  launch passes ``enable_fp_fusion=False``);
- the E4M3 rounding by the hardware conversion on sm_89+ and in integer
  arithmetic elsewhere (the interpreter too), the E2M1 rounding by a
  magic-number add (the FPU's round-to-nearest-even);
- the block error sum of ``mse``/``mae`` in the order of PyTorch's CPU
  ``sum(-1)`` over 16 contiguous fp32 values with AVX2 vectors:
  ``p[k] = e[k] + e[k + 8]`` and then ``((p0 + p1) + p2) + ... + p7``. (With
  AVX-512 PyTorch sums the 16 values left to right instead, and on CUDA in yet
  another order, so the oracle itself can flip a near-tie between machines; see
  docs/hopper.md.)

Nothing here imports vLLM. The kernel also runs under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from vllm_fouroversix.kernels.device import (INTERPRET, capability, e4m3_cvt_supported, num_sms, pdl_launch,
                                             pdl_supported)
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.nvfp4 import BLOCK_SIZE, ScaleRule, ceil_div, next_pow2, rule_constants

__all__ = ["RULE_IDS", "quantize_triton", "QuantizedActivation"]

#: constexpr ids of the rules inside the kernel.
RULE_IDS = {
    ScaleRule.static_6: 0,
    ScaleRule.static_4: 1,
    ScaleRule.mse: 2,
    ScaleRule.mae: 3,
    ScaleRule.abs_max: 4,
}

# Rows of up to this many 16-element blocks are held in registers (one read).
_MAX_SINGLE_PASS_BLOCKS = 1024  # K <= 16384
_CHUNK_BLOCKS = 256
# With many rows, rows over _SHORT_ROW_BLOCKS blocks go in chunks of _MANY_ROWS_CHUNK_BLOCKS
# instead (read twice, the second time mostly from L2): a 16-warp program with two blocks a
# thread keeps too few rows in flight. H100, 4096 rows, mse (run 13c): K = 8192 107 -> 79 us,
# K = 11008 174 -> 117 us, K = 14336 173 -> 134 us; 16 rows of K = 14336 stay faster in one
# pass (9.5 vs 14.6 us: there the row's latency is the time), hence the row threshold.
_SHORT_ROW_BLOCKS = 256  # K <= 4096
_MANY_ROWS_CHUNK_BLOCKS = 128
_MANY_ROWS_PER_SM = 4
# Few long rows (at most _SPLIT_MAX_ROWS rows of over _SHORT_ROW_BLOCKS blocks): each row's
# chunks of _SPLIT_MIN_BLOCKS blocks or more run as parallel programs, about an SM's worth in
# all, each reading the whole row for its amax: there a row's latency is the time. H100, mse,
# W4A4 operand (run 14b): 1 x 14336 10.0 -> 6.8 us, 16 x 14336 10.2 -> 7.1 us; W4A4 end to
# end at 4096x14336 (14c): M = 1 23.1 -> 21.0 us, M = 16 31.2 -> 28.9 us. 32-block programs
# were slower at K = 4096 end to end (M = 16: 13.9 -> 14.5 us): K <= 4096 keeps one program a row.
_SPLIT_MAX_ROWS = 32
_SPLIT_MIN_BLOCKS = 128
_SPLIT_AMAX_PER_THREAD = 64  # values a thread reads at a time for the amax
# Blocks a thread handles (sets num_warps = blocks / 32 / this, 1..16).
_BLOCKS_PER_THREAD = 1
# Extra launch options (benchmark sweeps: e.g. maxnreg).
_EXTRA_LAUNCH: dict = {}
_HW_CVT_OFF = os.environ.get("VLLM_FOUROVERSIX_NO_HW_CVT", "0") not in ("", "0")


# The operand mode's 16-bit sign masks (off: the sign words, as the packed mode; experiments).
_SIGN_MASKS = True


def _sign_mask(rule: ScaleRule, dtype: torch.dtype, dev: torch.device, write_packed: bool,
               write_deq: bool) -> int:
    """The operand mode's sign path: 1 (bf16 input, sm_90+: ``set.lt.u32.bf16x2``), 2 (f16 input),
    0 (the sign words: packed codes, fp32 input, the interpreter, and the rules other than mse/mae,
    where the masks' registers cost CTAs an SM: abs_max 80 -> 91, static_6 40 -> 48 at K = 4096)."""
    if not _SIGN_MASKS or write_packed or not write_deq or INTERPRET or rule not in (ScaleRule.mse, ScaleRule.mae):
        return 0
    if dtype == torch.bfloat16:
        return 1 if capability(dev) >= (9, 0) else 0
    return 2 if dtype == torch.float16 else 0


def _hw_cvt(dev: torch.device) -> bool:
    """Use the hardware FP32 -> E4M3 conversion (sm_89+; not under the interpreter)."""
    return not _HW_CVT_OFF and e4m3_cvt_supported(dev)


@triton.jit
def _e4m3_round(v):
    """fp32 v in [0, 448] -> (float(e4m3(v)), its byte), round to nearest even."""
    bits = v.to(tl.int32, bitcast=True)
    exp = (bits >> 23) & 0xFF
    # Normal E4M3 (v >= 2^-6): keep 3 mantissa bits, round half to even.
    r = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -1048576  # ~0xFFFFF
    r_exp = (r >> 23) & 0xFF
    nbyte = ((r_exp - 120) << 3) | ((r >> 20) & 7)
    nval = r.to(tl.float32, bitcast=True)
    # Subnormal E4M3 (v < 2^-6): v * 512 rounded half to even to an integer 0..8
    # (8 is 2^-6, whose byte is 0x08 too). mant * 2^(exp - 141) = v * 512.
    mant = (bits & 0x7FFFFF) | 0x800000
    sh = tl.minimum(141 - exp, 31)
    sh = tl.maximum(sh, 1)
    q = mant >> sh
    rem = mant & ((1 << sh) - 1)
    half = 1 << (sh - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    q = q + up.to(tl.int32)
    sval = q.to(tl.float32) * 0.001953125  # 2^-9, exact
    is_normal = exp >= 121
    val = tl.where(is_normal, nval, sval)
    byte = tl.where(is_normal, nbyte, q)
    return val, byte


# fp32 -> E4M3 byte with the hardware's round-to-nearest-even conversion (sm_89+),
# and the byte's value back through f16 (exact). In: s (fp32, 0..448). Out: byte, value.
_E4M3_ASM = tl.constexpr("""
{
.reg .b16 p, lo, hi;
.reg .b32 h;
cvt.rn.satfinite.e4m3x2.f32 p, 0f00000000, $2;
cvt.rn.f16x2.e4m3x2 h, p;
mov.b32 {lo, hi}, h;
cvt.f32.f16 $1, lo;
cvt.u32.u16 $0, p;
}
""")


@triton.jit
def _e4m3_round_hw(v):
    """As :func:`_e4m3_round` with the hardware conversion (GPU, sm_89+)."""
    byte, val = tl.inline_asm_elementwise(
        _E4M3_ASM, "=r,=r,r", [v], dtype=(tl.int32, tl.float32), is_pure=True, pack=1
    )
    return val, byte


@triton.jit
def _div3(x):
    """x / 3 correctly rounded (FP32, x normal or 0): q = x * RN(1/3) and one FMA correction.

    Markstein's correction with the correctly rounded reciprocal; checked against
    IEEE division for every FP32 significand (docs/hopper.md), so it
    holds in every binade whose results are normal. 3 instructions instead of an
    IEEE division's ~10 and its slow-path branch.
    """
    q = x * 0.3333333432674408  # RN(1/3) in FP32, exactly
    rem = tl.fma(-q, 3.0, x)  # exact
    return tl.fma(rem, 0.3333333432674408, q)


@triton.jit
def _e2m1_round(y, CLAMP: tl.constexpr = True):
    """y >= 0 (fp32) -> its E2M1 value (fp32): round half to even, saturate at 6.

    SPEC: |y| < 2: round(2|y|)/2; 2 <= |y| < 4: round(|y|); |y| >= 4: 2*round(|y|/2).
    Adding the magic number 2^22, 2^23 or 2^24 (whose ulp is 0.5, 1 or 2) rounds
    y to that step with the FPU's round-to-nearest-even; subtracting it back is
    exact. The magic number is read off y's exponent (after clamping y to 6):
    ``max(exponent(y) + 22, 22)``, one integer add-and-max. ``CLAMP=False``
    when y < 7 is known (then y rounds to at most 6 anyway).
    """
    yc = tl.minimum(y, 6.0) if CLAMP else y
    mb = tl.maximum((yc.to(tl.int32, bitcast=True) & 0x7F800000) + (22 << 23), 149 << 23)
    magic = mb.to(tl.float32, bitcast=True)
    return (yc + magic) - magic


@triton.jit
def _neg_deq_error(v, a, nd1, nd3h):
    """a - deq for E2M1 values v (fp32) and |x| a, where deq = ((q * s) * amax) / 1536, from the
    per-block nd1 = -d1, d1 = ((1 * s) * amax) / 1536, and nd3h = -d3h, d3h = (((3 * s) * amax) / 1536) / 2.

    q * s is exact, and q is 2^k (q = 0.5, 1, 2, 4) or 3 * 2^k (q = 1.5, 3, 6): scaling by a
    power of two commutes with every rounding (no subnormals), so deq = p2 * d exactly, with p2 =
    v with its mantissa bit cleared (2^k, or 2^(k+1) for q = 3 * 2^k, hence d3 / 2): 2 divisions a
    block instead of 16. The product being exact, one FMA rounds only the difference, as the
    SPEC's subtraction does. The error comes out negated (rounding is symmetric, and the rules use
    only its square or magnitude); negating the block's d, not a, keeps no second copy of a live
    (run 33: 28 fewer instructions a block than a multiply and a subtraction)."""
    vb = v.to(tl.int32, bitcast=True)
    p2 = (vb & 0x7F800000).to(tl.float32, bitcast=True)
    return tl.fma(p2, tl.where((vb & 0x400000) != 0, nd3h, nd1), a)


@triton.jit
def _unpack8(p):
    """The 8 columns of p [B, 8] as 8 tensors [B] (register renames, no data movement)."""
    B: tl.constexpr = p.shape[0]
    e, o = tl.split(tl.reshape(p, (B, 4, 2)))  # e = p0 p2 p4 p6, o = p1 p3 p5 p7
    e04, e26 = tl.split(tl.reshape(e, (B, 2, 2)))  # (p0, p4), (p2, p6)
    o15, o37 = tl.split(tl.reshape(o, (B, 2, 2)))  # (p1, p5), (p3, p7)
    p0, p4 = tl.split(e04)
    p2, p6 = tl.split(e26)
    p1, p5 = tl.split(o15)
    p3, p7 = tl.split(o37)
    return p0, p1, p2, p3, p4, p5, p6, p7


@triton.jit
def _seq8(p):
    """((p0 + p1) + p2) + ... + p7 over the last axis (size 8) of p [B, 8]."""
    p0, p1, p2, p3, p4, p5, p6, p7 = _unpack8(p)
    s = p0 + p1
    s = s + p2
    s = s + p3
    s = s + p4
    s = s + p5
    s = s + p6
    s = s + p7
    return s


@triton.jit
def _scale(bmax_m, enc, dec, amax, EXPAND: tl.constexpr, HW_CVT: tl.constexpr):
    """One candidate's block scale: (float(s), its byte, 1 / (dec * s) or 0, d1).

    d1 = (s * amax) / 1536, correctly rounded: z / 1536 = (z / 3) * 2^-9
    exactly while the result is normal.
    """
    s_hp = bmax_m * enc  # bmax_m = max|x_b| / M
    if EXPAND:
        s_hp = s_hp * 1.5
    s_hp = tl.minimum(s_hp, 448.0)
    if HW_CVT:
        sf, sbyte = _e4m3_round_hw(s_hp)
    else:
        sf, sbyte = _e4m3_round(s_hp)
    one = tl.full(sf.shape, 1.0, tl.float32)
    inv = tl.where(sf != 0.0, tl.div_rn(one, dec * sf), 0.0)
    d1 = _div3(sf * amax) * 0.001953125
    return sf, sbyte, inv, d1


@triton.jit
def _d3h(sf, amax):
    """(((3 * s) * amax) / 1536) / 2, correctly rounded (see :func:`_scale`)."""
    return _div3((sf * 3.0) * amax) * 0.0009765625


@triton.jit
def _cand_error(a_lo, a_hi, v_lo, v_hi, d1, d3h, RULE: tl.constexpr):
    nd1 = -d1[:, None]
    nd3h = -d3h[:, None]
    e_lo = _neg_deq_error(v_lo, a_lo, nd1, nd3h)  # -(deq - a): the same square and magnitude
    e_hi = _neg_deq_error(v_hi, a_hi, nd1, nd3h)
    if RULE == 2:  # mse
        return _seq8(e_lo * e_lo + e_hi * e_hi)
    elif RULE == 3:  # mae
        return _seq8(tl.abs(e_lo) + tl.abs(e_hi))
    else:  # abs_max
        return tl.max(tl.maximum(tl.abs(e_lo), tl.abs(e_hi)), axis=1)


@triton.jit
def _pack_codes(v):
    """E2M1 values v [B, 8] (fp32 >= 0) -> one int32 word [B] with element j's magnitude
    code (0..7) in bits 4j..4j+2.

    v * 2^-126 has the E2M1 code in bits 22..24 (0.5 -> 2^-127 is the subnormal
    0x400000, 1 -> 0x800000, ..., 6 -> 0x1C00000): E2M1's encoding is FP32's
    at that exponent. FP32 subnormals are kept (no flush to zero here).
    """
    c = (v * 1.1754943508222875e-38).to(tl.int32, bitcast=True)  # 2^-126
    c0, c1, c2, c3, c4, c5, c6, c7 = _unpack8(c)
    w = (c0 >> 22) + (c1 >> 18) + (c2 >> 14) + (c3 >> 10)
    return w + (c4 >> 6) + (c5 >> 2) + (c6 << 2) + (c7 << 6)


@triton.jit
def _sign_bits(x):
    """x [B, 8] -> int32 word [B] with bit 4j + 3 set where x_j < 0 (not -0.0)."""
    n0, n1, n2, n3, n4, n5, n6, n7 = _unpack8(x < 0.0)
    w = tl.where(n0, 0x8, 0) | tl.where(n1, 0x80, 0) | tl.where(n2, 0x800, 0)
    w = w | tl.where(n3, 0x8000, 0) | tl.where(n4, 0x80000, 0) | tl.where(n5, 0x800000, 0)
    return w | tl.where(n6, 0x8000000, 0) | tl.where(n7, -2147483648, 0)


@triton.jit
def _with_sign(q, bit):
    """q (fp32 >= 0) with its sign bit set where bit 0 of ``bit`` is (-0.0 for q = 0, as -q)."""
    return (q.to(tl.int32, bitcast=True) | ((bit & 1) << 31)).to(tl.float32, bitcast=True)


@triton.jit
def _neg_mask(x, SIGN_MASK: tl.constexpr):
    """x [B, 8] fp32 (from bf16 if SIGN_MASK == 1, f16 if 2) -> int16 masks, 0xFFFF where x < 0."""
    if SIGN_MASK == 1:
        return tl.inline_asm_elementwise("{.reg .b32 z; mov.b32 z, 0; set.lt.u32.bf16x2 $0, $1, z;}", "=r,r",
                                         [x.to(tl.bfloat16)], dtype=tl.int16, is_pure=True, pack=2)
    else:
        return tl.inline_asm_elementwise("{.reg .b32 z; mov.b32 z, 0; set.lt.u32.f16x2 $0, $1, z;}", "=r,r",
                                         [x.to(tl.float16)], dtype=tl.int16, is_pure=True, pack=2)


@triton.jit
def _or_sign(q, m, keep):
    """16-bit q | (m & keep), two an instruction (q bf16/f16, m and keep int16)."""
    return tl.inline_asm_elementwise("lop3.b32 $0, $1, $2, $3, 0xF8;", "=r,r,r,r", [q, m, keep + tl.zeros_like(m)],
                                     dtype=q.dtype, is_pure=True, pack=2)


@triton.jit
def _load_tile(x_row, blk0, nb, CB: tl.constexpr):
    """Blocks blk0 .. blk0+CB-1 of a row as two [CB, 8] fp32 halves (each thread: whole blocks)."""
    blk = blk0 + tl.arange(0, CB)
    offs = blk[:, None] * 16 + tl.arange(0, 8)[None, :]
    m2 = (blk < nb)[:, None]
    x_lo = tl.load(x_row + offs, mask=m2, other=0.0).to(tl.float32)
    x_hi = tl.load(x_row + offs + 8, mask=m2, other=0.0).to(tl.float32)
    return x_lo, x_hi


@triton.jit
def _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, EXPAND: tl.constexpr, HW_CVT: tl.constexpr,
               CLAMP: tl.constexpr = True):
    """One candidate: its block scale (float, byte, d1) and the E2M1 values."""
    sf, sbyte, inv, d1 = _scale(bmax_m, enc, dec, amax, EXPAND, HW_CVT)
    inv2 = inv[:, None]
    return sf, sbyte, d1, _e2m1_round(a_lo * inv2, CLAMP), _e2m1_round(a_hi * inv2, CLAMP)


@triton.jit
def _quant_tile(
    x_lo, x_hi, data_row, scales_row, deq_row, blk0, nb, amax, enc, dec,
    CB: tl.constexpr, RULE: tl.constexpr, M: tl.constexpr,
    WRITE_PACKED: tl.constexpr, WRITE_DEQ: tl.constexpr, HW_CVT: tl.constexpr, AMAX_IS_MAX: tl.constexpr,
    SIGN_MASK: tl.constexpr = 0, PERM64: tl.constexpr = False,
):
    blk = blk0 + tl.arange(0, CB)
    if SIGN_MASK:
        # Operand mode only: the signs as 16-bit masks (0xFFFF where x < 0, not -0.0), two an
        # instruction, OR-ed into the bf16/f16 output pairs at the end (one lop3 a pair)
        m_lo = _neg_mask(x_lo, SIGN_MASK)
        m_hi = _neg_mask(x_hi, SIGN_MASK)
    bmask = blk < nb
    # The signs as two words a block (bit 4j + 3: x_j < 0), taken now so that x need not stay
    # in registers (run 23: the operand mode kept x to the end, 71 instead of 48 registers); unused,
    # and so not computed, where SIGN_MASK keeps the masks above instead (8 registers, not 16 for x).
    sg_lo = _sign_bits(x_lo)
    sg_hi = _sign_bits(x_hi)
    a_lo = tl.abs(x_lo)
    a_hi = tl.abs(x_hi)
    bmax = tl.max(tl.maximum(a_lo, a_hi), axis=1)
    if M == 4:
        bmax_m = bmax * 0.25  # exact: equals the correctly rounded bmax / 4
    else:
        bmax_m = _div3(bmax) * 0.5  # M = 6: the correctly rounded bmax / 6
    # Mapping to 4 with bmax <= amax (AMAX_IS_MAX), y < 4 * 1.5 (the largest ratio of an
    # E4M3 value to the number it rounds from, subnormals included) rounds to at most 6
    # anyway: no clamp. Mapping to 6 can reach y >= 7 with a subnormal scale.
    sf, sbyte, d1, v_lo, v_hi = _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, False, HW_CVT,
                                           M == 6 or not AMAX_IS_MAX)
    # Each candidate's codes are packed (two words a block) as soon as its error is known:
    # its E2M1 values need not stay in registers for the choice.
    w_lo = _pack_codes(v_lo)
    w_hi = _pack_codes(v_hi)
    if RULE >= 2:
        e6 = _cand_error(a_lo, a_hi, v_lo, v_hi, d1, _d3h(sf, amax), RULE)
        if WRITE_DEQ:
            v6_lo = v_lo
            v6_hi = v_hi
        sf4, sbyte4, d14, v_lo, v_hi = _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, True, HW_CVT,
                                                  not AMAX_IS_MAX)
        e4 = _cand_error(a_lo, a_hi, v_lo, v_hi, d14, _d3h(sf4, amax), RULE)
        pick4 = e4 < e6  # ties go to map-to-6
        w_lo = tl.where(pick4, _pack_codes(v_lo), w_lo)
        w_hi = tl.where(pick4, _pack_codes(v_hi), w_hi)
        sbyte = tl.where(pick4, sbyte4, sbyte)
        if WRITE_DEQ:
            p2 = pick4[:, None]
            v_lo = tl.where(p2, v_lo, v6_lo)
            v_hi = tl.where(p2, v_hi, v6_hi)
            sf = tl.where(pick4, sf4, sf)
    # Sign bit (bit 3 of the nibble): x < 0 (not -0.0), except in blocks whose scale is 0.
    keep = tl.where(sbyte != 0, -2004318072, 0)  # 0x88888888: scale 0, no sign bits
    sg_lo = sg_lo & keep
    sg_hi = sg_hi & keep
    if WRITE_PACKED:
        w = tl.join(w_lo | sg_lo, w_hi | sg_hi)  # [CB, 2]
        words = data_row.to(tl.pointer_type(tl.int32), bitcast=True)
        woffs = blk[:, None] * 2 + tl.arange(0, 2)[None, :]
        tl.store(words + woffs, w, mask=bmask[:, None])
        tl.store(scales_row + blk, sbyte.to(tl.uint8), mask=bmask)
    if WRITE_DEQ:
        # q * float(s) without the global scale: exact in bf16 (<= 6 significant bits). The plain
        # order's stores stay where they were before PERM64 existed (the same SASS as then).
        offs = blk[:, None] * 16 + tl.arange(0, 8)[None, :]
        m2 = bmask[:, None]
        sf2 = sf[:, None]
        ty = deq_row.dtype.element_ty
        if SIGN_MASK:
            keep16 = tl.where(sbyte != 0, -32768, 0).to(tl.int16)[:, None]  # 0x8000: scale 0, no sign
            o_lo = _or_sign((v_lo * sf2).to(ty), m_lo, keep16)
            if not PERM64:
                tl.store(deq_row + offs, o_lo, mask=m2)
            o_hi = _or_sign((v_hi * sf2).to(ty), m_hi, keep16)
            if not PERM64:
                tl.store(deq_row + offs + 8, o_hi, mask=m2)
        else:
            sh = tl.arange(0, 8)[None, :] * 4 + 3  # element j's sign bit in its word
            q_lo = _with_sign(v_lo * sf2, sg_lo[:, None] >> sh)  # -0.0 where q = 0 and x < 0, as -q was
            q_hi = _with_sign(v_hi * sf2, sg_hi[:, None] >> sh)
            o_lo = q_lo.to(ty)
            if not PERM64:
                tl.store(deq_row + offs, o_lo, mask=m2)
            o_hi = q_hi.to(ty)
            if not PERM64:
                tl.store(deq_row + offs + 8, o_hi, mask=m2)
        if PERM64:
            _store_perm64(deq_row, blk0, nb, o_lo, o_hi)


@triton.jit
def _store_perm64(deq_row, blk0, nb, v_lo, v_hi):
    """Store the tile's operand (v_lo, v_hi [CB, 8]: elements 0..7 and 8..15 of each block) in the K
    order of ``kernels.k64_order``: element 16c + 8w + 4ol + 2e + oh of a 64-value chunk (block c of the
    chunk) goes to 32w + 16oh + 8ol + 2c + e. As [CB / 4, 64] chunks, which Triton moves between the
    threads through shared memory for 16-byte stores (run 36b: [1024, 4096] 1.03x the plain store's
    time; each thread storing its 4-byte pairs took 1.09x, W4A4 end to end within +-2% of this)."""
    CB: tl.constexpr = v_lo.shape[0]
    t = tl.reshape(tl.join(v_lo, v_hi), (CB // 4, 4, 2, 2, 2, 2))  # [chunk, c, ol, e, oh, w]
    t = tl.reshape(tl.permute(t, (0, 5, 4, 2, 1, 3)), (CB // 4, 64))  # [chunk, 32w + 16oh + 8ol + 2c + e]
    ch = blk0 // 4 + tl.arange(0, CB // 4)
    tl.store(deq_row + ch[:, None] * 64 + tl.arange(0, 64)[None, :], t, mask=(ch < nb // 4)[:, None])


@triton.jit
def _quantize_kernel(
    x_ptr, amax_ptr, data_ptr, scales_ptr, gs_ptr, deq_ptr,
    K, stride_x, stride_deq,
    RULE: tl.constexpr, M: tl.constexpr, MS: tl.constexpr,
    ROW_AMAX: tl.constexpr, AMAX_PER_ROW: tl.constexpr, NUM_CHUNKS: tl.constexpr, CB: tl.constexpr,
    WRITE_PACKED: tl.constexpr, WRITE_DEQ: tl.constexpr, HW_CVT: tl.constexpr,
    LAUNCH_DEPENDENTS: tl.constexpr = False, SPLIT: tl.constexpr = False, AMAX_TILE: tl.constexpr = 1024,
    SIGN_MASK: tl.constexpr = 0,
    AMAX_ITERS: tl.constexpr = 1, AMAX_IS_MAX: tl.constexpr = False, PDL_WAIT: tl.constexpr = False,
    PERM64: tl.constexpr = False,
):
    """Program (row, c): row ``row``; all its NUM_CHUNKS chunks of CB blocks, or with
    ``SPLIT`` only chunk c = program_id(1) (few rows: a row's chunks run in parallel,
    each program reading the whole row for the amax, AMAX_TILE values at a time,
    AMAX_ITERS times). AMAX_IS_MAX: the amax is the true max of the row or tensor."""
    if LAUNCH_DEPENDENTS:
        # Let a GEMM launched with PDL start now: its launch and set-up overlap this
        # kernel, and it waits for this kernel's completion before reading the output.
        tl.extra.cuda.gdc_launch_dependents()
    if PDL_WAIT:
        # Launched as a programmatic dependent of the kernel before it (which writes x): only
        # the launch overlaps that kernel's end; nothing is read before this wait.
        tl.extra.cuda.gdc_wait()
    row = tl.program_id(0).to(tl.int64)
    nb = K // 16
    x_row = x_ptr + row * stride_x
    data_row = data_ptr + row * (K // 2)
    scales_row = scales_ptr + row * nb
    deq_row = deq_ptr + row * stride_deq
    if NUM_CHUNKS == 1:
        x_lo, x_hi = _load_tile(x_row, 0, nb, CB)  # the whole row in registers: one read
    elif SPLIT:
        c = tl.program_id(1)
        x_lo, x_hi = _load_tile(x_row, c * CB, nb, CB)  # this program's chunk, read with the amax's
    # The amax: of this row (ROW_AMAX), given for this row (AMAX_PER_ROW, e.g. reduced
    # over tensor-parallel ranks), or one for the tensor; its global scale amax / MS.
    if ROW_AMAX:
        if NUM_CHUNKS == 1:
            amax = tl.max(tl.max(tl.maximum(tl.abs(x_lo), tl.abs(x_hi)), axis=1), axis=0)
        elif SPLIT:
            amax = _row_amax(x_row, K, AMAX_TILE, AMAX_ITERS)
        else:
            # One chunk a tile: an elementwise max over the chunks, then one reduction (a reduction
            # a chunk put a CTA-wide barrier between one chunk's load and the next, run 21b).
            amax = _row_amax(x_row, K, CB * 16, NUM_CHUNKS)
        tl.store(gs_ptr + row, tl.div_rn(amax, MS))  # SPLIT: each program of the row, the same value
    elif AMAX_PER_ROW:
        amax = tl.load(amax_ptr + row).to(tl.float32)
        tl.store(gs_ptr + row, tl.div_rn(amax, MS))
    else:
        amax = tl.load(amax_ptr).to(tl.float32)
        if row == 0:
            tl.store(gs_ptr, tl.div_rn(amax, MS))
    enc, dec = _enc_dec(amax, MS)
    if NUM_CHUNKS == 1:
        _quant_tile(x_lo, x_hi, data_row, scales_row, deq_row, 0, nb, amax, enc, dec,
                    CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, AMAX_IS_MAX, SIGN_MASK, PERM64)
    elif SPLIT:
        _quant_tile(x_lo, x_hi, data_row, scales_row, deq_row, c * CB, nb, amax, enc, dec,
                    CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, AMAX_IS_MAX, SIGN_MASK, PERM64)
    else:
        # The next chunk is requested before this one is quantized, so that its read overlaps
        # the compute (run 21b: [1024..4096, 14336] 12-13% faster in the operand mode).
        x_lo, x_hi = _load_tile(x_row, 0, nb, CB)
        for c in range(NUM_CHUNKS):
            n_lo, n_hi = _load_tile(x_row, (c + 1) * CB, nb, CB)  # masked off past the row's end
            _quant_tile(x_lo, x_hi, data_row, scales_row, deq_row, c * CB, nb, amax, enc, dec,
                        CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, AMAX_IS_MAX, SIGN_MASK, PERM64)
            x_lo = n_lo
            x_hi = n_hi


@triton.jit
def _row_amax(x_row, K, TILE: tl.constexpr, ITERS: tl.constexpr):
    """max |x| over a row of K <= ITERS * TILE values (the loop unrolled: its loads issue together)."""
    m = tl.zeros((TILE,), tl.float32)
    for i in tl.static_range(ITERS):
        offs = i * TILE + tl.arange(0, TILE)
        m = tl.maximum(m, tl.abs(tl.load(x_row + offs, mask=offs < K, other=0.0).to(tl.float32)))
    return tl.max(m, axis=0)


@triton.jit
def _enc_dec(amax, MS: tl.constexpr):
    # amax 0, or so small that MS / amax overflows: every code and scale is 0 (as nvfp4).
    enc = tl.div_rn(MS, tl.where(amax == 0.0, 1.0, amax))
    zero = (amax == 0.0) | (enc == float("inf"))
    enc = tl.where(zero, 1.0, enc)
    dec = tl.div_rn(1.0, enc)
    enc = tl.where(zero, 0.0, enc)
    return enc, dec


@triton.jit
def _amax_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    """max |x| over a contiguous tensor: a max per program, then an integer atomic max
    on the FP32 bits (non-negative floats order like their bit patterns). Exact."""
    base = tl.program_id(0).to(tl.int64) * (BLOCK * ITERS)
    m = tl.zeros((BLOCK,), tl.float32)
    for i in range(ITERS):
        offs = base + i * BLOCK + tl.arange(0, BLOCK)
        m = tl.maximum(m, tl.abs(tl.load(x_ptr + offs, mask=offs < n, other=0.0).to(tl.float32)))
    tl.atomic_max(out_ptr, tl.max(m, axis=0).to(tl.int32, bitcast=True))


# Launched through FastKernel: once a specialization is compiled, Triton's per-call launch Python is skipped
# (kernels/launch.py; host time a call, docs/hopper.md).
_QUANTIZE = FastKernel(_quantize_kernel)
_AMAX = FastKernel(_amax_kernel)


def _amax(x: torch.Tensor) -> torch.Tensor:
    """float32 [1]: max |x| (one read of x; x contiguous)."""
    out = torch.zeros(1, dtype=torch.int32, device=x.device)
    n = x.numel()
    if n:
        block, iters = 4096, 8
        _AMAX[(ceil_div(n, block * iters),)](x, out, n, BLOCK=block, ITERS=iters, num_warps=8)
    return out.view(torch.float32)


class QuantizedActivation:
    """What :func:`quantize_triton` returns: any of packed codes, scales, decoded values."""

    __slots__ = ("data", "scales", "global_scale", "dequant")

    def __init__(self, data, scales, global_scale, dequant):
        self.data = data  # uint8 [R, K/2] or None
        self.scales = scales  # float8_e4m3fn [R, K/16] or None
        self.global_scale = global_scale  # float32 [R] (per row) or [] (per tensor)
        self.dequant = dequant  # [R, K] q * s without the global scale, or None


def quantize_triton(
    x: torch.Tensor,
    rule: ScaleRule | str = ScaleRule.mse,
    *,
    per_row: bool = True,
    amax: torch.Tensor | float | None = None,
    write_packed: bool = True,
    dequant_dtype: torch.dtype | None = None,
    launch_dependents: bool = False,
    pdl_wait: bool = False,
    perm_k64: bool = False,
) -> QuantizedActivation:
    """Quantize ``x`` [R, K] (bf16/fp16/fp32, rows contiguous) with the Triton kernel.

    ``per_row``: one amax a row, computed in the kernel, or given as ``amax``
    (float32 [R], or a scalar for every row: e.g. the rows' amax over the full K
    of a tensor-parallel layer); otherwise one amax for the tensor (``amax``
    given: static, else computed with one reduction first). As
    ``nvfp4.quantize``'s ``amax``: finite and non-negative. ``dequant_dtype``
    also writes q * s (no global scale) in that dtype, the operand the Hopper
    GEMM consumes for W4A4. ``launch_dependents``: the kernel lets a following
    ``fp4_gemm(..., pdl=True)`` launch at once (sm_90+ programmatic dependent
    launch; that GEMM waits for this kernel before reading its output). ``pdl_wait``:
    the quantizer itself is launched as a programmatic dependent of the kernel before it
    in the stream, and waits for that kernel at its start (sm_90+; run 25a: W4A4 at
    M = 1..4 1.7-5.6% faster on three of the four Llama-3-8B shapes, 1.3-1.7% slower at
    4096 x 14336). ``perm_k64``: ``dequant`` in the K order of :mod:`kernels.k64_order`
    (needs ``dequant_dtype`` and K % 64 == 0), which the Hopper wgmma GEMM reads directly
    (``fp4_gemm(a_k64=True)``).
    """
    rule = ScaleRule(rule)
    if x.dim() != 2:
        raise ValueError("quantize_triton takes a 2-D [rows, K] tensor")
    R, K = x.shape
    if K % BLOCK_SIZE:
        raise ValueError(f"K={K} must be a multiple of {BLOCK_SIZE}")
    if perm_k64 and (dequant_dtype is None or K % 64):
        raise ValueError(f"perm_k64 needs dequant_dtype and K % 64 == 0 (K={K}, dequant_dtype={dequant_dtype})")
    if x.stride(1) != 1:
        x = x.contiguous()
    c = rule_constants(rule)
    dev = x.device
    amax_per_row = per_row and amax is not None
    # No finiteness check here (it would sync the device on the serving path).
    amax_t = None if amax is None else torch.as_tensor(amax, dtype=torch.float32, device=dev).reshape(-1)
    if per_row:
        gs = torch.empty(R, dtype=torch.float32, device=dev)
        if amax_t is None:
            amax_t = gs  # unused
        elif amax_t.numel() == 1:
            amax_t = amax_t.expand(R).contiguous()
        elif amax_t.numel() != R:
            raise ValueError(f"per-row amax has {amax_t.numel()} values for {R} rows")
    else:
        if amax_t is None:
            amax_t = _amax(x if x.is_contiguous() else x.contiguous())
        elif amax_t.numel() != 1:
            raise ValueError("amax must be a scalar unless per_row=True")
        gs = torch.empty((), dtype=torch.float32, device=dev)  # written by the kernel (IEEE division)
    nb = K // BLOCK_SIZE
    data = torch.empty((R, K // 2), dtype=torch.uint8, device=dev) if write_packed else None
    scales = torch.empty((R, nb), dtype=torch.uint8, device=dev) if write_packed else None
    deq = torch.empty((R, K), dtype=dequant_dtype, device=dev) if dequant_dtype is not None else None
    if R == 0:
        if not per_row:
            gs = (amax_t / c.MS).reshape(())
        return QuantizedActivation(data, None if scales is None else scales.view(torch.float8_e4m3fn), gs, deq)
    sms = num_sms(dev)
    many_rows = R >= _MANY_ROWS_PER_SM * sms
    # Programs a row: > 1 only for few rows (their chunks run in parallel).
    few_long = R <= _SPLIT_MAX_ROWS and nb > _SHORT_ROW_BLOCKS
    row_progs = max(1, min(nb // _SPLIT_MIN_BLOCKS, sms // R)) if few_long else 1
    split = row_progs > 1
    if split:
        cb = next_pow2(ceil_div(nb, row_progs))
        chunks = ceil_div(nb, cb)  # >= 2
    elif nb <= _MAX_SINGLE_PASS_BLOCKS and (nb <= _SHORT_ROW_BLOCKS or not many_rows):
        cb, chunks = next_pow2(nb), 1
    else:
        cb = _MANY_ROWS_CHUNK_BLOCKS if many_rows else _CHUNK_BLOCKS
        chunks = ceil_div(nb, cb)
    dummy = data if data is not None else deq
    assert not perm_k64 or cb % 4 == 0  # whole 64-value chunks a program (K % 64 == 0, cb a power of 2)
    # One 16-element block a thread (its max and error sums stay in registers),
    # up to 16 warps; longer rows give a thread several blocks.
    num_warps = max(1, min(16, cb // (32 * _BLOCKS_PER_THREAD)))
    # split: the amax read's tile (else unused: the default, so as not to add compiled variants)
    amax_tile = min(next_pow2(K), num_warps * 32 * _SPLIT_AMAX_PER_THREAD) if split else 1024
    _QUANTIZE[(R, chunks if split else 1)](
        x, amax_t, dummy if data is None else data, dummy if scales is None else scales, gs,
        dummy if deq is None else deq,
        K, x.stride(0), 0 if deq is None else deq.stride(0),
        RULE=RULE_IDS[rule], M=c.M, MS=c.MS, ROW_AMAX=per_row and not amax_per_row, AMAX_PER_ROW=amax_per_row,
        NUM_CHUNKS=chunks, CB=cb,
        WRITE_PACKED=write_packed, WRITE_DEQ=deq is not None, HW_CVT=_hw_cvt(dev),
        LAUNCH_DEPENDENTS=launch_dependents and pdl_supported(dev),
        SPLIT=split, AMAX_TILE=amax_tile, AMAX_ITERS=ceil_div(K, amax_tile) if split else 1,
        AMAX_IS_MAX=amax is None, SIGN_MASK=_sign_mask(rule, x.dtype, dev, write_packed, deq is not None),
        num_warps=num_warps, enable_fp_fusion=False, **_EXTRA_LAUNCH,
        **pdl_launch(pdl_wait and pdl_supported(dev), "PDL_WAIT"), **({"PERM64": True} if perm_k64 else {}),
    )
    return QuantizedActivation(data, None if scales is None else scales.view(torch.float8_e4m3fn), gs, deq)
