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
  multiply that equals it (:func:`_div3`); no other fused multiply-adds (the
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

from vllm_fouroversix.kernels.device import e4m3_cvt_supported, num_sms, pdl_supported, resident_programs
from vllm_fouroversix.nvfp4 import BLOCK_SIZE, ScaleRule, rule_constants

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
# mse/mae: decide the 4/6 choice from cheap error estimates, the exact errors only for near ties
# (False: always the exact errors, for comparisons; 2: never, which is wrong: tests show the
# re-check matters).
_FAST_ERRORS: bool | int = True
# Whole rows: programs loop over rows (prefetching the next) instead of one row each.
_PERSIST = os.environ.get("VLLM_FOUROVERSIX_QUANT_PERSIST", "0") not in ("", "0")
_RESIDENT: dict = {}  # resident programs, per device and launch configuration
_PERSISTENT_PROGRAMS: int | None = None  # tests: several rows a program on CPU
_HW_CVT_OFF = os.environ.get("VLLM_FOUROVERSIX_NO_HW_CVT", "0") not in ("", "0")


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
def _deq(v, d1, d3h):
    """((q * s) * amax) / 1536 for E2M1 values v (fp32), from the per-block values
    d1 = ((1 * s) * amax) / 1536 and d3h = (((3 * s) * amax) / 1536) / 2.

    q * s is exact, and q is 2^k (q = 0.5, 1, 2, 4) or 3 * 2^k (q = 1.5, 3, 6):
    scaling by a power of two commutes with every rounding (no subnormals), so
    this equals the SPEC's per-element expression bit for bit with 2 divisions
    a block instead of 16. v with its mantissa bit cleared is 2^k (q = 2^k) or
    2^(k+1) (q = 3 * 2^k, hence d3 / 2).
    """
    vb = v.to(tl.int32, bitcast=True)
    p2 = (vb & 0x7F800000).to(tl.float32, bitcast=True)
    return p2 * tl.where((vb & 0x400000) != 0, d3h, d1)


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
    d1 = d1[:, None]
    d3h = d3h[:, None]
    e_lo = _deq(v_lo, d1, d3h) - a_lo
    e_hi = _deq(v_hi, d1, d3h) - a_hi
    if RULE == 2:  # mse
        return _seq8(e_lo * e_lo + e_hi * e_hi)
    elif RULE == 3:  # mae
        return _seq8(tl.abs(e_lo) + tl.abs(e_hi))
    else:  # abs_max
        return tl.max(tl.maximum(tl.abs(e_lo), tl.abs(e_hi)), axis=1)


@triton.jit
def _err_fast(a_lo, a_hi, v_lo, v_hi, d1, RULE: tl.constexpr):
    """A candidate's block error with every dequantized value taken as v * d1 (one FMA a
    value) and summed in FMA order: within :func:`_err_bound` of the SPEC's error."""
    # a - v * d1 = -(v * d1 - a) exactly (rounding is symmetric), and only its square or
    # magnitude counts: negating d1 once a block saves negating a once a value.
    nd = -d1[:, None]
    e_lo = tl.fma(v_lo, nd, a_lo)
    e_hi = tl.fma(v_hi, nd, a_hi)
    l0, l1, l2, l3, l4, l5, l6, l7 = _unpack8(e_lo)
    h0, h1, h2, h3, h4, h5, h6, h7 = _unpack8(e_hi)
    if RULE == 2:  # mse
        s = l0 * l0
        s = tl.fma(l1, l1, s)
        s = tl.fma(l2, l2, s)
        s = tl.fma(l3, l3, s)
        s = tl.fma(l4, l4, s)
        s = tl.fma(l5, l5, s)
        s = tl.fma(l6, l6, s)
        s = tl.fma(l7, l7, s)
        s = tl.fma(h0, h0, s)
        s = tl.fma(h1, h1, s)
        s = tl.fma(h2, h2, s)
        s = tl.fma(h3, h3, s)
        s = tl.fma(h4, h4, s)
        s = tl.fma(h5, h5, s)
        s = tl.fma(h6, h6, s)
        s = tl.fma(h7, h7, s)
    else:  # mae
        s = tl.abs(l0) + tl.abs(l1)
        s = s + tl.abs(l2)
        s = s + tl.abs(l3)
        s = s + tl.abs(l4)
        s = s + tl.abs(l5)
        s = s + tl.abs(l6)
        s = s + tl.abs(l7)
        s = s + tl.abs(h0)
        s = s + tl.abs(h1)
        s = s + tl.abs(h2)
        s = s + tl.abs(h3)
        s = s + tl.abs(h4)
        s = s + tl.abs(h5)
        s = s + tl.abs(h6)
        s = s + tl.abs(h7)
    return s


@triton.jit
def _err_bound(err, d1, RULE: tl.constexpr):
    """A bound on |_err_fast - the SPEC's error| (docs/hopper.md derives it: with u = 2^-24,
    at most 99u d1^2 + 128u err for mse and 394u d1 + 27u err for mae; here about 2x that).
    Needs d1 >= 2^-40 (no underflow in the squares); the caller checks."""
    if RULE == 2:
        return (d1 * d1 + err) * 1.52587890625e-05  # 2^-16
    else:
        return d1 * 6.103515625e-05 + err * 3.814697265625e-06  # 2^-14, 2^-18


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
    return (c0 >> 22) + (c1 >> 18) + (c2 >> 14) + (c3 >> 10) + (c4 >> 6) + (c5 >> 2) + (c6 << 2) + (c7 << 6)


@triton.jit
def _sign_bits(x):
    """x [B, 8] -> int32 word [B] with bit 4j + 3 set where x_j < 0 (not -0.0)."""
    n0, n1, n2, n3, n4, n5, n6, n7 = _unpack8(x < 0.0)
    w = tl.where(n0, 0x8, 0) | tl.where(n1, 0x80, 0) | tl.where(n2, 0x800, 0) | tl.where(n3, 0x8000, 0)
    w = w | tl.where(n4, 0x80000, 0) | tl.where(n5, 0x800000, 0) | tl.where(n6, 0x8000000, 0)
    return w | tl.where(n7, -2147483648, 0)


@triton.jit
def _same_codes(w6, w4):
    """Per word pair of packed magnitude codes: whether every map-to-4 code is 0, 1, 2 or 4
    (codes 0, 2, 4, 6) and the map-to-6 code is 1.5 times it (0, 3, 5, 7: the code + 1
    unless 0). With s4 = 1.5 s that is the same dequantized value everywhere."""
    even = (w4 & 0x11111111) == 0
    nz = ((w4 >> 1) | (w4 >> 2)) & 0x11111111  # 1 in each nonzero nibble (given even codes)
    return even & (w6 == w4 + nz)


@triton.jit
def _load_tile(x_row, blk0, nb, CB: tl.constexpr):
    """Blocks blk0 .. blk0+CB-1 of a row (those below nb) as two [CB, 8] halves in the
    input's dtype (each thread: whole blocks)."""
    blk = blk0 + tl.arange(0, CB)
    offs = blk[:, None] * 16 + tl.arange(0, 8)[None, :]
    m2 = (blk < nb)[:, None]
    x_lo = tl.load(x_row + offs, mask=m2, other=0.0)
    x_hi = tl.load(x_row + offs + 8, mask=m2, other=0.0)
    return x_lo, x_hi


@triton.jit
def _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, EXPAND: tl.constexpr, HW_CVT: tl.constexpr,
               CLAMP: tl.constexpr = True):
    """One candidate: its block scale (float, byte, d1), the reciprocal and the E2M1 values."""
    sf, sbyte, inv, d1 = _scale(bmax_m, enc, dec, amax, EXPAND, HW_CVT)
    inv2 = inv[:, None]
    return sf, sbyte, d1, inv, _e2m1_round(a_lo * inv2, CLAMP), _e2m1_round(a_hi * inv2, CLAMP)


@triton.jit
def _quant_tile(
    x_lo, x_hi, x_row, data_row, scales_row, deq_row, blk0, nb, amax, enc, dec,
    CB: tl.constexpr, RULE: tl.constexpr, M: tl.constexpr,
    WRITE_PACKED: tl.constexpr, WRITE_DEQ: tl.constexpr, HW_CVT: tl.constexpr,
    FAST_ERRORS: tl.constexpr,
):
    blk = blk0 + tl.arange(0, CB)
    bmask = blk < nb
    if WRITE_PACKED:
        sg_lo = _sign_bits(x_lo)  # taken now, so that x need not stay in registers
        sg_hi = _sign_bits(x_hi)
    a_lo = tl.abs(x_lo)
    a_hi = tl.abs(x_hi)
    bmax = tl.max(tl.maximum(a_lo, a_hi), axis=1)
    if M == 4:
        bmax_m = bmax * 0.25  # exact: equals the correctly rounded bmax / 4
    else:
        bmax_m = _div3(bmax) * 0.5  # M = 6: the correctly rounded bmax / 6
    # mse/mae: the 4/6 choice from cheap error estimates (see below)
    fast: tl.constexpr = FAST_ERRORS >= 1 and (RULE == 2 or RULE == 3)
    # There the E2M1 rounding skips the clamp at 6: with a normal E4M3 scale (s >= 2^-6)
    # and bmax <= amax, y < 6.4 (map-to-6) and y < 4.3 (map-to-4) round to at most 6
    # anyway; blocks without both take the exact path below, clamped.
    sf, sbyte, d1, inv, v_lo, v_hi = _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, False, HW_CVT, not fast)
    # Each candidate's codes are packed (two words a block) as soon as its error is known:
    # the E2M1 values need not stay in registers for the choice.
    w_lo = _pack_codes(v_lo)
    w_hi = _pack_codes(v_hi)
    if RULE >= 2:
        if fast:
            e6 = _err_fast(a_lo, a_hi, v_lo, v_hi, d1, RULE)
        else:
            e6 = _cand_error(a_lo, a_hi, v_lo, v_hi, d1, _d3h(sf, amax), RULE)
        if WRITE_DEQ:
            v6_lo = v_lo
            v6_hi = v_hi
        sf4, sbyte4, d14, inv4, v_lo, v_hi = _candidate(a_lo, a_hi, bmax_m, enc, dec, amax, True, HW_CVT, not fast)
        w4_lo = _pack_codes(v_lo)
        w4_hi = _pack_codes(v_hi)
        if fast:
            # Errors from v * d1 (2 instructions a value instead of 7) decide wherever they
            # are further apart than their error bounds; blocks whose two candidates
            # dequantize identically are ties (map-to-6); zero blocks are ties too. Any
            # other block (a near tie: about 1 in 5,000 for Gaussian data; a tiny or
            # saturated scale; see docs/hopper.md) sends the whole tile through the exact,
            # clamped path: a branch every thread takes or none does.
            e4 = _err_fast(a_lo, a_hi, v_lo, v_hi, d14, RULE)
            tie = _same_codes(w_lo, w4_lo) & _same_codes(w_hi, w4_hi) & (sf4 == sf * 1.5)
            apart = tl.abs(e6 - e4) > _err_bound(e6, d1, RULE) + _err_bound(e4, d14, RULE)
            pick4 = (e4 < e6) & ~tie
            # d1 >= 2^-40: no underflow in the estimates; s >= 2^-6 and bmax <= amax: no clamp
            ok = (d1 >= 9.094947017729282e-13) & (sf >= 0.015625) & (bmax <= amax)
            sure = (bmax == 0.0) | (ok & (tie | apart))
            if FAST_ERRORS == 1 and tl.max((~sure).to(tl.int32), axis=0) != 0:
                # x read again (from cache) rather than kept in registers across the branch;
                # y again as fma(a, inv, 0) (= a * inv): not the same expression as above, so
                # that the compiler does not keep those products alive either
                t_lo, t_hi = _load_tile(x_row, blk0, nb, CB)
                a_lo = tl.abs(t_lo.to(tl.float32))
                a_hi = tl.abs(t_hi.to(tl.float32))
                inv2 = inv[:, None]
                v6c_lo = _e2m1_round(tl.fma(a_lo, inv2, 0.0))
                v6c_hi = _e2m1_round(tl.fma(a_hi, inv2, 0.0))
                inv42 = inv4[:, None]
                v_lo = _e2m1_round(tl.fma(a_lo, inv42, 0.0))
                v_hi = _e2m1_round(tl.fma(a_hi, inv42, 0.0))
                err6 = _cand_error(a_lo, a_hi, v6c_lo, v6c_hi, d1, _d3h(sf, amax), RULE)
                err4 = _cand_error(a_lo, a_hi, v_lo, v_hi, d14, _d3h(sf4, amax), RULE)
                pick4 = err4 < err6
                w_lo = _pack_codes(v6c_lo)
                w_hi = _pack_codes(v6c_hi)
                w4_lo = _pack_codes(v_lo)
                w4_hi = _pack_codes(v_hi)
                if WRITE_DEQ:
                    v6_lo = v6c_lo
                    v6_hi = v6c_hi
        else:
            # abs_max (a max rounds nothing: exact in 5 instructions a value), or every rule
            # exactly (FAST_ERRORS off)
            e4 = _cand_error(a_lo, a_hi, v_lo, v_hi, d14, _d3h(sf4, amax), RULE)
            pick4 = e4 < e6  # ties go to map-to-6
        w_lo = tl.where(pick4, w4_lo, w_lo)
        w_hi = tl.where(pick4, w4_hi, w_hi)
        sbyte = tl.where(pick4, sbyte4, sbyte)
        if WRITE_DEQ:
            p2 = pick4[:, None]
            v_lo = tl.where(p2, v_lo, v6_lo)
            v_hi = tl.where(p2, v_hi, v6_hi)
            sf = tl.where(pick4, sf4, sf)
    # Sign bit (bit 3 of the nibble): x < 0 (not -0.0), except in blocks whose scale is 0.
    if WRITE_PACKED:
        keep = tl.where(sbyte != 0, -2004318072, 0)  # 0x88888888: scale 0, no sign bits
        w = tl.join(w_lo | (sg_lo & keep), w_hi | (sg_hi & keep))  # [CB, 2]
        words = data_row.to(tl.pointer_type(tl.int32), bitcast=True)
        woffs = blk[:, None] * 2 + tl.arange(0, 2)[None, :]
        tl.store(words + woffs, w, mask=bmask[:, None])
        tl.store(scales_row + blk, sbyte.to(tl.uint8), mask=bmask)
    if WRITE_DEQ:
        # q * float(s) without the global scale: exact in bf16 (<= 6 significant bits).
        offs = blk[:, None] * 16 + tl.arange(0, 8)[None, :]
        m2 = bmask[:, None]
        sf2 = sf[:, None]
        nz = (sbyte != 0)[:, None]
        q_lo = v_lo * sf2
        q_hi = v_hi * sf2
        q_lo = tl.where((x_lo < 0.0) & nz, -q_lo, q_lo)
        q_hi = tl.where((x_hi < 0.0) & nz, -q_hi, q_hi)
        tl.store(deq_row + offs, q_lo.to(deq_row.dtype.element_ty), mask=m2)
        tl.store(deq_row + offs + 8, q_hi.to(deq_row.dtype.element_ty), mask=m2)


@triton.jit
def _quantize_kernel(
    x_ptr, amax_ptr, data_ptr, scales_ptr, gs_ptr, deq_ptr,
    R, K, stride_x, stride_deq,
    RULE: tl.constexpr, M: tl.constexpr, MS: tl.constexpr,
    ROW_AMAX: tl.constexpr, AMAX_PER_ROW: tl.constexpr, NUM_CHUNKS: tl.constexpr, CB: tl.constexpr,
    WRITE_PACKED: tl.constexpr, WRITE_DEQ: tl.constexpr, HW_CVT: tl.constexpr,
    LAUNCH_DEPENDENTS: tl.constexpr = False, SPLIT: tl.constexpr = False, AMAX_TILE: tl.constexpr = 1024,
    AMAX_ITERS: tl.constexpr = 1, FAST_ERRORS: tl.constexpr = 1, PERSIST: tl.constexpr = False,
):
    """Program (row, c): row ``row``; all its NUM_CHUNKS chunks of CB blocks, or with
    ``SPLIT`` only chunk c = program_id(1) (few rows: a row's chunks run in parallel,
    each program reading the whole row for the amax, AMAX_TILE values at a time,
    AMAX_ITERS times). FAST_ERRORS: see :func:`_quant_tile`."""
    if LAUNCH_DEPENDENTS:
        # Let a GEMM launched with PDL start now: its launch and set-up overlap this
        # kernel, and it waits for this kernel's completion before reading the output.
        tl.extra.cuda.gdc_launch_dependents()
    nb = K // 16
    if PERSIST:
        # Whole rows, program p: rows p, p + G, p + 2G, ... (G programs, as many as are
        # resident), each row's read issued before the previous row is computed.
        G = tl.num_programs(0)
        r = tl.program_id(0).to(tl.int64)
        c_lo, c_hi = _load_tile(x_ptr + r * stride_x, 0, nb, CB)
        for _ in range(tl.program_id(0), R, G):
            nxt = r + G
            n_lo, n_hi = _load_tile(x_ptr + nxt * stride_x, 0, tl.where(nxt < R, nb, 0), CB)
            _whole_row(r, c_lo.to(tl.float32), c_hi.to(tl.float32), x_ptr, amax_ptr, data_ptr, scales_ptr,
                       gs_ptr, deq_ptr, K, stride_x, stride_deq, RULE, M, MS, ROW_AMAX, AMAX_PER_ROW, CB,
                       WRITE_PACKED, WRITE_DEQ, HW_CVT, FAST_ERRORS)
            r = nxt
            c_lo = n_lo
            c_hi = n_hi
        return
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    data_row = data_ptr + row * (K // 2)
    scales_row = scales_ptr + row * nb
    deq_row = deq_ptr + row * stride_deq
    if NUM_CHUNKS == 1:
        x_lo, x_hi = _load_tile(x_row, 0, nb, CB)  # the whole row in registers: one read
        x_lo = x_lo.to(tl.float32)
        x_hi = x_hi.to(tl.float32)
    elif SPLIT:
        c = tl.program_id(1)
        x_lo, x_hi = _load_tile(x_row, c * CB, nb, CB)  # this program's chunk, read with the amax's
        x_lo = x_lo.to(tl.float32)
        x_hi = x_hi.to(tl.float32)
    # The amax: of this row (ROW_AMAX), given for this row (AMAX_PER_ROW, e.g. reduced
    # over tensor-parallel ranks), or one for the tensor; its global scale amax / MS.
    if ROW_AMAX:
        if NUM_CHUNKS == 1:
            amax = tl.max(tl.max(tl.maximum(tl.abs(x_lo), tl.abs(x_hi)), axis=1), axis=0)
        elif SPLIT:
            amax = _row_amax(x_row, K, AMAX_TILE, AMAX_ITERS)
        else:
            amax = 0.0
            for c in range(NUM_CHUNKS):
                offs = c * CB * 16 + tl.arange(0, CB * 16)
                xa = tl.abs(tl.load(x_row + offs, mask=offs < K, other=0.0).to(tl.float32))
                amax = tl.maximum(amax, tl.max(xa, axis=0))
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
        _quant_tile(x_lo, x_hi, x_row, data_row, scales_row, deq_row, 0, nb, amax, enc, dec,
                    CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, FAST_ERRORS)
    elif SPLIT:
        _quant_tile(x_lo, x_hi, x_row, data_row, scales_row, deq_row, c * CB, nb, amax, enc, dec,
                    CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, FAST_ERRORS)
    else:
        for c in range(NUM_CHUNKS):
            x_lo, x_hi = _load_tile(x_row, c * CB, nb, CB)
            _quant_tile(x_lo.to(tl.float32), x_hi.to(tl.float32), x_row, data_row, scales_row, deq_row,
                        c * CB, nb, amax, enc, dec, CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, FAST_ERRORS)


@triton.jit
def _whole_row(
    row, x_lo, x_hi, x_ptr, amax_ptr, data_ptr, scales_ptr, gs_ptr, deq_ptr, K, stride_x, stride_deq,
    RULE: tl.constexpr, M: tl.constexpr, MS: tl.constexpr, ROW_AMAX: tl.constexpr, AMAX_PER_ROW: tl.constexpr,
    CB: tl.constexpr, WRITE_PACKED: tl.constexpr, WRITE_DEQ: tl.constexpr, HW_CVT: tl.constexpr,
    FAST_ERRORS: tl.constexpr,
):
    """Row ``row`` (int64) given whole as x_lo/x_hi (fp32): its amax and global scale, then the tile."""
    nb = K // 16
    if ROW_AMAX:
        amax = tl.max(tl.max(tl.maximum(tl.abs(x_lo), tl.abs(x_hi)), axis=1), axis=0)
        tl.store(gs_ptr + row, tl.div_rn(amax, MS))
    elif AMAX_PER_ROW:
        amax = tl.load(amax_ptr + row).to(tl.float32)
        tl.store(gs_ptr + row, tl.div_rn(amax, MS))
    else:
        amax = tl.load(amax_ptr).to(tl.float32)
        if row == 0:
            tl.store(gs_ptr, tl.div_rn(amax, MS))
    enc, dec = _enc_dec(amax, MS)
    _quant_tile(x_lo, x_hi, x_ptr + row * stride_x, data_ptr + row * (K // 2), scales_ptr + row * nb,
                deq_ptr + row * stride_deq, 0, nb, amax, enc, dec,
                CB, RULE, M, WRITE_PACKED, WRITE_DEQ, HW_CVT, FAST_ERRORS)


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


def _amax(x: torch.Tensor) -> torch.Tensor:
    """float32 [1]: max |x| (one read of x; x contiguous)."""
    out = torch.zeros(1, dtype=torch.int32, device=x.device)
    n = x.numel()
    if n:
        block, iters = 4096, 8
        _amax_kernel[(triton.cdiv(n, block * iters),)](x, out, n, BLOCK=block, ITERS=iters, num_warps=8)
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
    launch; that GEMM waits for this kernel before reading its output).
    """
    rule = ScaleRule(rule)
    if x.dim() != 2:
        raise ValueError("quantize_triton takes a 2-D [rows, K] tensor")
    R, K = x.shape
    if K % BLOCK_SIZE:
        raise ValueError(f"K={K} must be a multiple of {BLOCK_SIZE}")
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
        cb = triton.next_power_of_2(triton.cdiv(nb, row_progs))
        chunks = triton.cdiv(nb, cb)  # >= 2
    elif nb <= _MAX_SINGLE_PASS_BLOCKS and (nb <= _SHORT_ROW_BLOCKS or not many_rows):
        cb, chunks = triton.next_power_of_2(nb), 1
    else:
        cb = _MANY_ROWS_CHUNK_BLOCKS if many_rows else _CHUNK_BLOCKS
        chunks = triton.cdiv(nb, cb)
    dummy = data if data is not None else deq
    # One 16-element block a thread (its max and error sums stay in registers),
    # up to 16 warps; longer rows give a thread several blocks.
    num_warps = max(1, min(16, cb // (32 * _BLOCKS_PER_THREAD)))
    # split: the amax read's tile (else unused: the default, so as not to add compiled variants)
    amax_tile = min(triton.next_power_of_2(K), num_warps * 32 * _SPLIT_AMAX_PER_THREAD) if split else 1024
    args = (x, amax_t, dummy if data is None else data, dummy if scales is None else scales, gs,
            dummy if deq is None else deq, R, K, x.stride(0), 0 if deq is None else deq.stride(0))
    meta = dict(
        RULE=RULE_IDS[rule], M=c.M, MS=c.MS, ROW_AMAX=per_row and not amax_per_row, AMAX_PER_ROW=amax_per_row,
        NUM_CHUNKS=chunks, CB=cb,
        WRITE_PACKED=write_packed, WRITE_DEQ=deq is not None, HW_CVT=_hw_cvt(dev),
        LAUNCH_DEPENDENTS=launch_dependents and pdl_supported(dev),
        SPLIT=split, AMAX_TILE=amax_tile, AMAX_ITERS=triton.cdiv(K, amax_tile) if split else 1,
        FAST_ERRORS=int(_FAST_ERRORS), num_warps=num_warps, enable_fp_fusion=False, **_EXTRA_LAUNCH,
    )
    if chunks == 1 and _PERSIST:
        # Whole rows: programs loop over rows, as many programs as are resident at once
        # (known once the kernel is compiled: the first launch gives every row its own).
        meta["PERSIST"] = True
        key = (dev.index, *meta.values())
        progs = _PERSISTENT_PROGRAMS or _RESIDENT.get(key, R)
        kernel = _quantize_kernel[(max(1, min(R, progs)),)](*args, **meta)
        if key not in _RESIDENT and kernel is not None and dev.type == "cuda":
            _RESIDENT[key] = resident_programs(kernel, num_warps, dev)
    else:
        _quantize_kernel[(R, chunks if split else 1)](*args, **meta)
    return QuantizedActivation(data, None if scales is None else scales.view(torch.float8_e4m3fn), gs, deq)
