"""NVFP4-weight GEMMs in Triton for GPUs without FP4 tensor cores (Hopper, Ampere).

``out[m, n] = sum_k A[m, k] * (q[n, k] * s[n, k // 16]) * ga[m] * gw[n] + bias[n]``

The weight stays packed (uint8 [N, K/2], two E2M1 codes a byte, and E4M3 block
scales [N, K/16], both SPEC row-major) and is decoded in registers inside the
GEMM: an E2M1 code times an E4M3 scale has at most 6 significant bits, so the
decoded weight is exact in bf16 (and fp16), and the bf16 tensor-core product
with FP32 accumulation differs from ``nvfp4.reference_linear`` only in the
order of the FP32 additions. Global scales and bias are applied in FP32 in the
epilogue, in the reference's order: ``(acc * (ga * gw)) + bias``.

``A`` is bf16/fp16: the raw activations for W4A16, or the 4/6-quantized and
decoded activations (``q * s``, exact in bf16, from
:func:`vllm_fouroversix.kernels.triton_quantize.quantize_triton`) with their
per-row global scales ``ga`` for W4A4.

Paths, chosen by M (:func:`select_config`):
- ``gemv2`` (M = 1, and M = 2 where ``mma`` is not available; bf16/fp16
  activations): CUDA-core kernel with no layout conversion in its loop
  (activations read as int32 pairs in the weight bytes' shape and layout); block
  partial sums are scaled per 16 elements; split over K for parallelism.
  ``gemv``: the older GEMV (fp32 activations).
- ``mma`` (M 2..8, bf16, CUDA sm_80+ with Gluon): :mod:`.gluon_gemm`, mma.sync
  on the weight decoded straight into its operand registers.
- ``tc`` (M 3..128; to 256 for W4A4 or N >= 16384; on sm_90 with Gluon M <= 16 and where
  ``wgmma`` does not take it): tensor-core tiles with BM = 16..128 and split-K.
- ``wgmma`` (M > 16, bf16, sm_90 with Gluon, where its tiles fill the SMs; up to M = 128 with K
  split over CTAs; above M = 1024 only W4A4, and W4A16 with a per-row weight scale up to
  M = 2048): :mod:`.gluon_wgmma`, the weight decoded straight into wgmma's A registers.
- ``dq`` (larger M, prefill, where ``wgmma`` does not take it): the weight decoded
  once to bf16, then a plain GEMM (cuBLAS, or :mod:`.triton_prefill`).
Split-K partials are reduced by the last program of each tile in a fixed
order (deterministic, one launch).

On the GPU the E2M1 decode is inline PTX, 2.25 integer/bf16x2 instructions per
weight (prmt, then mask, multiply, mask and one bf16x2 fma a pair of codes); the tc
tiles fold the block scale into that fma (q * s * 2^-8, sums times 2^8) instead of
a separate multiply. Under ``TRITON_INTERPRET=1`` (CPU) the same values come from
plain arithmetic. No vLLM imports.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from vllm_fouroversix.kernels.device import INTERPRET, e4m3_cvt_supported, num_sms, pdl_launch, pdl_supported
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.kernels.triton_prefill import epilogue_args, grouped_pid, prefill_gemm, scaled_output
from vllm_fouroversix.nvfp4 import ceil_div, next_pow2  # host side: triton.cdiv and triton.next_power_of_2 cost microseconds a call from Python

__all__ = ["GemmConfig", "select_config", "fp4_gemm", "k64_operand", "dequantize_weight", "INTERPRET"]


def _decode_asm(outs: list[str], in_reg: str, extra: tuple[str, ...] = ()) -> str:
    """The PTX of the E2M1 decode of one b32 of 4 packed bytes (``in_reg``).

    Four steps, each placing two codes (the low nibbles of bytes 0/1 or 2/3, then
    the high nibbles) as bf16x2 bits q * 2^-126; ``outs[i]`` are the PTX lines that
    scale step i's result ``a`` (one bf16x2 fma) and store it. A step is one mask, one
    multiply and one mask: the nibble n, alone in each half, times 2^6 + 2^12 (or
    2^2 + 2^8 from the high nibble) puts its magnitude bits at 6..8 and its sign bit at
    15 with no overlap, and the last mask keeps those (run 22: 3 instructions instead of
    two shifts and two logic operations). ``extra``: PTX lines before the steps (registers
    m01 and m23 are declared for them).
    """
    steps = [("t0", "0x000F000F", 4160), ("t1", "0x000F000F", 4160),
             ("t0", "0x00F000F0", 260), ("t1", "0x00F000F0", 260)]
    lines = [
        "{",
        ".reg .b32 t0, t1, a, c126, nz, m01, m23;",
        "mov.b32 c126, 0x7E807E80;",
        "mov.b32 nz, 0x80008000;",
        f"prmt.b32 t0, {in_reg}, 0, 0x4140;",
        f"prmt.b32 t1, {in_reg}, 0, 0x4342;",
        *extra,
    ]
    for (t, mask, mul), out in zip(steps, outs):
        lines += [
            f"and.b32 a, {t}, {mask};",
            f"mul.lo.u32 a, a, {mul};",
            "and.b32 a, a, 0x81C081C0;",
            out,
        ]
    return "\n" + "\n".join(lines + ["}"]) + "\n"


# PTX: an int32 word of 4 E4M3 scale bytes ($1) and a prmt selector ($2) that puts byte j in
# the low byte of both halves -> the bf16x2 (s_j * 2^118, s_j * 2^118). ``b << 4`` as bf16 bits
# is exactly s * 2^-120 (E4M3's exponent and mantissa land in bf16's, its subnormals in bf16's
# subnormals); two exact multiplies by 2^119 (0x7B00) give s * 2^118 <= 448 * 2^118 < 2^127.
# The multiplies are fmas with a -0 addend (the same bits, +0 stays +0): mul.bf16x2 needs sm_90,
# fma.bf16x2 sm_80 (tools/compile_triton.py found it, compiling for the A100).
_SCALE_PTX = """
{
.reg .b32 t, c, nz;
mov.b32 c, 0x7B007B00;
mov.b32 nz, 0x80008000;
prmt.b32 t, $1, 0, $2;
shl.b32 t, t, 4;
fma.rn.bf16x2 t, t, c, nz;
fma.rn.bf16x2 $0, t, c, nz;
}
"""

# E2M1 code -> bf16 bits via PTX. In: 4 packed bytes (8 codes). Out: the low
# nibbles' values (2 regs of bf16x2) and the high nibbles' values (2 regs).
# Each code c is placed as sign -> bit 15, magnitude bits -> bits 6..8 of a
# bf16, which is then exactly value * 2^-126 (the e = 0 codes land in the
# subnormals); one bf16x2 fma by 2^126 (0x7E80) makes it exact.
_DECODE_PTX = _decode_asm([f"fma.rn.bf16x2 ${i}, a, c126, nz;" for i in range(4)], "$4")
_DECODE_ASM = tl.constexpr(_DECODE_PTX)

# Same decode, each bf16x2 times its bytes' multipliers s * 2^118 (from _SCALE_PTX) in the same
# fma: q * s * 2^-8, exact (the scale's own multiply folded in, run 22). _DECODE_SCALED_PTX takes
# one multiplier ($5) for the four bytes: only for layouts that keep a b32's bytes in one 16-value
# block (gluon_gemm's); _DECODE_SCALED_ASM takes byte j's from $5 + j (Triton picks the layout, and
# a pack of four elements need not be four adjacent bytes) and pairs them with two prmt.
_DECODE_SCALED_PTX = _decode_asm(["fma.rn.bf16x2 $%d, a, $5, nz;" % i for i in range(4)], "$4")
_DECODE_SCALED_ASM = tl.constexpr(_decode_asm(
    ["fma.rn.bf16x2 $%d, a, %s, nz;" % (i, ("m01", "m23")[i % 2]) for i in range(4)], "$4",
    ("prmt.b32 m01, $5, $6, 0x7610;", "prmt.b32 m23, $7, $8, 0x7610;")))
_SCALE_ASM = tl.constexpr(_SCALE_PTX)

# Same decode, fp32 results: the bf16x2 pair of each step is widened in place
# (low half << 16, high half & 0xFFFF0000). Out: $0..$3 the low nibbles of
# bytes 0..3, $4..$7 the high nibbles; in: $8 (4 packed bytes).
_DECODE_F32_ASM = tl.constexpr(
    _decode_asm(
        [
            f"fma.rn.bf16x2 a, a, c126, nz;\nshl.b32 ${2 * i}, a, 16;\nand.b32 ${2 * i + 1}, a, 0xFFFF0000;"
            for i in range(4)
        ],
        "$8",
    )
)


# 4 E4M3 scale bytes (one b32) -> 4 fp32 values, by the hardware conversion
# (sm_89+): e4m3x2 -> f16x2 is exact, f16 -> f32 too.
_E4M3X4_ASM = tl.constexpr("""
{
.reg .b16 b0, b1, h0, h1, h2, h3;
.reg .b32 f0, f1;
mov.b32 {b0, b1}, $4;
cvt.rn.f16x2.e4m3x2 f0, b0;
cvt.rn.f16x2.e4m3x2 f1, b1;
mov.b32 {h0, h1}, f0;
mov.b32 {h2, h3}, f1;
cvt.f32.f16 $0, h0;
cvt.f32.f16 $1, h1;
cvt.f32.f16 $2, h2;
cvt.f32.f16 $3, h3;
}
""")


@triton.jit
def _e2m1_arith(c, DT: tl.constexpr):
    """Codes (int32, 0..15) -> exact E2M1 values in DT (portable path)."""
    mag = c & 7
    cf = mag.to(tl.float32)
    v = tl.where(mag < 4, cf * 0.5, tl.where(mag < 6, cf - 2.0, cf * 2.0 - 8.0))
    v = tl.where((c & 8) != 0, -v, v)
    return v.to(DT)


@triton.jit
def _e4m3_to_f32(b):
    """E4M3 bytes (as int32 0..255, no NaN 0x7F/0xFF expected) -> fp32."""
    e = (b >> 3) & 15
    m = b & 7
    normal = (((e + 120) << 23) | (m << 20)).to(tl.float32, bitcast=True)
    v = tl.where(e == 0, m.to(tl.float32) * 0.001953125, normal)
    return tl.where((b & 128) != 0, -v, v)


@triton.jit
def _decode_codes(wp, DT: tl.constexpr, USE_ASM: tl.constexpr):
    """Packed bytes [R, C] -> (values of low nibbles, of high nibbles) [R, C] in DT (no scale)."""
    if USE_ASM:
        lo, hi = tl.inline_asm_elementwise(
            _DECODE_ASM, "=r,=r,=r,=r,r", [wp], dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4
        )
        lo = lo.to(DT)
        hi = hi.to(DT)
    else:
        p = wp.to(tl.int32)
        lo = _e2m1_arith(p & 15, DT)
        hi = _e2m1_arith((p >> 4) & 15, DT)
    return lo, hi


@triton.jit
def _scale_values(sb, HW_E4M3: tl.constexpr):
    """E4M3 scale bytes -> fp32 values: the hardware conversion on sm_89+, else integer arithmetic."""
    if HW_E4M3:
        return tl.inline_asm_elementwise(_E4M3X4_ASM, "=r,=r,=r,=r,r", [sb], dtype=tl.float32, is_pure=True, pack=4)
    else:
        return _e4m3_to_f32(sb.to(tl.int32))


@triton.jit
def _decode_tile(wp, sb, BN: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr, USE_ASM: tl.constexpr,
                 HW_E4M3: tl.constexpr = False, SCALED_2M8: tl.constexpr = False):
    """Packed [BN, BK/2] uint8 + scale bytes [BN, BK/16] -> decoded q * s [BN, BK] in DT
    (``SCALED_2M8``, bf16 and the PTX decode only: q * s * 2^-8, the scale folded into the
    decode's fma; the caller multiplies its FP32 sums by 2^8)."""
    if SCALED_2M8:
        si = sb.to(tl.int32)
        s2 = tl.inline_asm_elementwise(_SCALE_ASM, "=r,r,r", [si, si * 0 + 0x4040], dtype=tl.int32,
                                       is_pure=True, pack=1)  # bf16x2 (s * 2^118, twice)
        s2 = tl.reshape(tl.broadcast_to(s2[:, :, None], (BN, BK // 16, 8)), (BN, BK // 2))
        lo, hi = tl.inline_asm_elementwise(_DECODE_SCALED_ASM, "=r,=r,=r,=r,r,r,r,r,r", [wp, s2],
                                           dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4)
        return tl.reshape(tl.join(lo, hi), (BN, BK))
    if USE_ASM:
        lo, hi = _decode_codes(wp, DT, USE_ASM)
        q = tl.reshape(tl.join(lo, hi), (BN, BK // 16, 16))
        s = _scale_values(sb, HW_E4M3).to(DT)
        w = q * s[:, :, None]  # exact in bf16: no rounding, so the multiply's precision is moot
    else:
        # Portable path (the interpreter has no bf16 arithmetic): fp32 product, exact, then cast.
        lo, hi = _decode_codes(wp, tl.float32, USE_ASM)
        q = tl.reshape(tl.join(lo, hi), (BN, BK // 16, 16))
        s = _e4m3_to_f32(sb.to(tl.int32))
        w = (q * s[:, :, None]).to(DT)
    return tl.reshape(w, (BN, BK))


@triton.jit
def _split_k_range(k_tiles, pid_k, SPLIT_K: tl.constexpr):
    """K tiles [kt0, kt1) of split pid_k: equal runs of cdiv(k_tiles, SPLIT_K), the last ones shorter or empty."""
    per = tl.cdiv(k_tiles, SPLIT_K)
    kt0 = pid_k * per
    return kt0, tl.minimum(kt0 + per, k_tiles)


@triton.jit
def _epilogue_store(
    acc, offs_m, offs_n, M, N, gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga,
    GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """acc [BM, BN] fp32 -> (acc * (ga * gw)) + bias -> out dtype."""
    mm = offs_m < M
    nm = offs_n < N
    out = scaled_output(acc, offs_m, offs_n, M, N, ga_ptr, gw_ptr, bias_ptr, stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    ptrs = out_ptr + offs_m[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(ptrs, out.to(out_ptr.dtype.element_ty), mask=mm[:, None] & nm[None, :])


@triton.jit
def _split_k_fixup(
    acc, pid_k, tile_id, part_ptr, lock_ptr, offs_m, offs_n, M, N, MN,
    gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga,
    SPLIT_K: tl.constexpr, GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """Store this split's partial; the last program of the tile sums all in order 0..SPLIT_K-1."""
    mm = offs_m < M
    nm = offs_n < N
    mask = mm[:, None] & nm[None, :]
    poffs = offs_m[:, None].to(tl.int64) * N + offs_n[None, :]
    tl.store(part_ptr + pid_k.to(tl.int64) * MN + poffs, acc, mask=mask)
    tl.debug_barrier()
    cnt = tl.atomic_add(lock_ptr + tile_id, 1, sem="acq_rel")
    if cnt == SPLIT_K - 1:
        total = tl.load(part_ptr + poffs, mask=mask, other=0.0, cache_modifier=".cg")
        for k in range(1, SPLIT_K):
            total += tl.load(part_ptr + k * MN + poffs, mask=mask, other=0.0, cache_modifier=".cg")
        _epilogue_store(total, offs_m, offs_n, M, N, gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om,
                        stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
        # Ready for the next launch. A plain store: every other program of the tile has already
        # counted, and the kernel's end orders it before the next launch's atomics. An atomic
        # exchange here made the tile wait for one more round trip (run 24b: M = 16 split-K tiles
        # 2-5% faster without it).
        tl.store(lock_ptr + tile_id, 0)


@triton.jit
def _fp4_gemm_kernel(
    a_ptr, w_ptr, ws_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr, part_ptr, lock_ptr,
    M, N, K, stride_am, stride_om, stride_ga, stride_pk, stride_w, stride_s,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, DT: tl.constexpr, USE_ASM: tl.constexpr,
    GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
    SWAP: tl.constexpr = False, PREFETCH: tl.constexpr = False,
    HW_E4M3: tl.constexpr = False, SCALED_2M8: tl.constexpr = False, PDL: tl.constexpr = False,
):
    if PDL:
        # Launched as a programmatic dependent of the kernel before it: its launch overlaps that
        # kernel's end, and it waits for that kernel before touching memory. (Reading the first
        # weight tile before the wait was slower: run 25b.)
        tl.extra.cuda.gdc_wait()
    pid_k = tl.program_id(1)
    num_pid_n = tl.cdiv(N, BN)
    pid_m, pid_n = grouped_pid(tl.program_id(0), tl.cdiv(M, BM), num_pid_n, GROUP_M)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mm = offs_m < M
    nm = offs_n < N
    k_tiles = tl.cdiv(K, BK)
    kt0, kt1 = _split_k_range(k_tiles, pid_k, SPLIT_K)
    a_rows = a_ptr + offs_m[:, None].to(tl.int64) * stride_am
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w  # = K // 2
    s_rows = ws_ptr + offs_n[:, None].to(tl.int64) * stride_s  # = K // 16
    ka = tl.arange(0, BK)
    kw = tl.arange(0, BK // 2)
    ks = tl.arange(0, BK // 16)
    if SWAP:
        acc = tl.zeros((BN, BM), dtype=tl.float32)  # out^T = W x^T: the weight is the A operand
    else:
        acc = tl.zeros((BM, BN), dtype=tl.float32)
    if PREFETCH:
        # Registers double-buffer the next K tile's loads (activations, weight
        # bytes, scales) while this one is decoded and multiplied.
        a_n = _load_a_tile(a_rows, kt0 * BK, kt1 * BK, mm, K, ka, EVEN_K)
        wp_n, sb_n = _load_w_tile(w_rows, s_rows, kt0 * BK, kt1 * BK, nm, K, kw, ks, EVEN_K)
        for kt in range(kt0, kt1):
            a = a_n
            wp = wp_n
            sb = sb_n
            a_n = _load_a_tile(a_rows, (kt + 1) * BK, kt1 * BK, mm, K, ka, EVEN_K)
            wp_n, sb_n = _load_w_tile(w_rows, s_rows, (kt + 1) * BK, kt1 * BK, nm, K, kw, ks, EVEN_K)
            w = _decode_tile(wp, sb, BN, BK, DT, USE_ASM, HW_E4M3, SCALED_2M8)
            acc = _mma(a, w, acc, DT, IEEE, SWAP)
    for kt in range(kt0, kt1 if not PREFETCH else kt0):
        k0 = kt * BK
        if EVEN_K:
            a = tl.load(a_rows + (k0 + ka)[None, :], mask=mm[:, None], other=0.0)
            wp = tl.load(w_rows + (k0 // 2 + kw)[None, :], mask=nm[:, None], other=0)
            sb = tl.load(s_rows + (k0 // 16 + ks)[None, :], mask=nm[:, None], other=0)
        else:
            a = tl.load(a_rows + (k0 + ka)[None, :], mask=mm[:, None] & ((k0 + ka) < K)[None, :], other=0.0)
            wp = tl.load(w_rows + (k0 // 2 + kw)[None, :], mask=nm[:, None] & ((k0 // 2 + kw) < K // 2)[None, :], other=0)
            sb = tl.load(s_rows + (k0 // 16 + ks)[None, :], mask=nm[:, None] & ((k0 // 16 + ks) < K // 16)[None, :], other=0)
        w = _decode_tile(wp, sb, BN, BK, DT, USE_ASM, HW_E4M3, SCALED_2M8)
        acc = _mma(a, w, acc, DT, IEEE, SWAP)
    if SCALED_2M8:
        acc = acc * 256.0  # the decoded weight was q * s * 2^-8 (exact: a power of two)
    if SWAP:
        acc = tl.trans(acc)
    if SPLIT_K == 1:
        _epilogue_store(acc, offs_m, offs_n, M, N, gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om,
                        stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    else:
        _split_k_fixup(acc, pid_k, pid_m * num_pid_n + pid_n, part_ptr, lock_ptr, offs_m, offs_n, M, N, stride_pk,
                       gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga,
                       SPLIT_K, GW_VEC, HAS_GA, HAS_BIAS)


@triton.jit
def _load_a_tile(a_rows, k0, kend, mm, K, ka, EVEN_K: tl.constexpr):
    ok = ((k0 + ka * 0) < kend)[None, :]
    if EVEN_K:
        return tl.load(a_rows + (k0 + ka)[None, :], mask=mm[:, None] & ok, other=0.0)
    else:
        return tl.load(a_rows + (k0 + ka)[None, :], mask=mm[:, None] & ok & ((k0 + ka) < K)[None, :], other=0.0)


@triton.jit
def _mma(a, w, acc, DT: tl.constexpr, IEEE: tl.constexpr, SWAP: tl.constexpr):
    if SWAP:
        if IEEE:
            acc = tl.dot(w.to(DT), tl.trans(a.to(DT)), acc, input_precision="ieee")
        else:
            acc = tl.dot(w.to(DT), tl.trans(a.to(DT)), acc)
    elif IEEE:
        acc = tl.dot(a.to(DT), tl.trans(w.to(DT)), acc, input_precision="ieee")
    else:
        acc = tl.dot(a.to(DT), tl.trans(w.to(DT)), acc)
    return acc


@triton.jit
def _load_w_tile(w_rows, s_rows, k0, kend, nm, K, kw, ks, EVEN_K: tl.constexpr):
    """Packed bytes [BN, BK/2] and scale bytes [BN, BK/16] of the tile at k0 (zeros if k0 >= kend)."""
    okw = ((k0 + kw * 0) < kend)[None, :]
    oks = ((k0 + ks * 0) < kend)[None, :]
    if EVEN_K:
        wp = tl.load(w_rows + (k0 // 2 + kw)[None, :], mask=nm[:, None] & okw, other=0)
        sb = tl.load(s_rows + (k0 // 16 + ks)[None, :], mask=nm[:, None] & oks, other=0)
    else:
        wp = tl.load(w_rows + (k0 // 2 + kw)[None, :], mask=nm[:, None] & okw & ((k0 // 2 + kw) < K // 2)[None, :], other=0)
        sb = tl.load(s_rows + (k0 // 16 + ks)[None, :], mask=nm[:, None] & oks & ((k0 // 16 + ks) < K // 16)[None, :], other=0)
    return wp, sb


@triton.jit
def _load_a(a_row, k0, K, m, M, BK: tl.constexpr, EVEN_K: tl.constexpr):
    """Activations k0 .. k0+BK-1 of row m as [BK/2, 2] (zeros past M or K)."""
    kk = k0 + 2 * tl.arange(0, BK // 2)[:, None] + tl.arange(0, 2)[None, :]
    if EVEN_K:
        return tl.load(a_row + kk, mask=(kk * 0 + m) < M, other=0.0)
    else:
        return tl.load(a_row + kk, mask=((kk * 0 + m) < M) & (kk < K), other=0.0)


@triton.jit
def _gemv_row(a2, lo, hi, s, BN: tl.constexpr, BK: tl.constexpr):
    """One activation row: per-16-block partial dot products times the block scales, [BN, BK/16] fp32."""
    xe, xo = tl.split(a2.to(tl.float32))  # elements 2j (low nibbles), 2j + 1 (high nibbles)
    prod = lo * xe[None, :] + hi * xo[None, :]  # [BN, BK/2], one byte = 2 weights
    blk = tl.sum(tl.reshape(prod, (BN, BK // 16, 8)), axis=2)
    return blk * s


@triton.jit
def _gemv_step(wp, sb, a_c, a0, k0, K, m0, M, stride_am, acc0, acc1, acc2, acc3,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, EVEN_K: tl.constexpr, USE_ASM: tl.constexpr):
    if USE_ASM:
        lo, hi = _decode_codes(wp, tl.bfloat16, USE_ASM)
        lo = lo.to(tl.float32)
        hi = hi.to(tl.float32)
    else:
        lo, hi = _decode_codes(wp, tl.float32, USE_ASM)
    s = _e4m3_to_f32(sb.to(tl.int32))
    acc0 += _gemv_row(a_c, lo, hi, s, BN, BK)
    if BM > 1:
        acc1 += _gemv_row(_load_a(a0 + 1 * stride_am, k0, K, m0 + 1, M, BK, EVEN_K), lo, hi, s, BN, BK)
    if BM > 2:
        acc2 += _gemv_row(_load_a(a0 + 2 * stride_am, k0, K, m0 + 2, M, BK, EVEN_K), lo, hi, s, BN, BK)
    if BM > 3:
        acc3 += _gemv_row(_load_a(a0 + 3 * stride_am, k0, K, m0 + 3, M, BK, EVEN_K), lo, hi, s, BN, BK)
    return acc0, acc1, acc2, acc3


@triton.jit
def _gemv_finish(acc0, acc1, acc2, acc3, m0, offs_n, pid_k, pid_m, pid_n, M, N, part_ptr, lock_ptr, stride_pk,
                 gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga, BM: tl.constexpr, BN: tl.constexpr,
                 SPLIT_K: tl.constexpr, GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The GEMV kernels' end: reduce each row's [BN, ...] partial products, then the
    epilogue (or the split-K fix-up)."""
    im = tl.arange(0, BM)[:, None]
    acc = tl.where(im == 0, tl.sum(acc0, axis=1)[None, :], 0.0)
    if BM > 1:
        acc = tl.where(im == 1, tl.sum(acc1, axis=1)[None, :], acc)
    if BM > 2:
        acc = tl.where(im == 2, tl.sum(acc2, axis=1)[None, :], acc)
    if BM > 3:
        acc = tl.where(im == 3, tl.sum(acc3, axis=1)[None, :], acc)
    offs_m = m0 + tl.arange(0, BM)
    if SPLIT_K == 1:
        _epilogue_store(acc, offs_m, offs_n, M, N, gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om,
                        stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    else:
        num_pid_n = tl.cdiv(N, BN)
        _split_k_fixup(acc, pid_k, pid_m * num_pid_n + pid_n, part_ptr, lock_ptr, offs_m, offs_n, M, N, stride_pk,
                       gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga,
                       SPLIT_K, GW_VEC, HAS_GA, HAS_BIAS)


@triton.jit
def _fp4_gemv_kernel(
    a_ptr, w_ptr, ws_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr, part_ptr, lock_ptr,
    M, N, K, stride_am, stride_om, stride_ga, stride_pk, stride_w, stride_s,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr,
    EVEN_K: tl.constexpr, USE_ASM: tl.constexpr,
    GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr, PREFETCH: tl.constexpr = False,
):
    """CUDA-core path for tiny M (BM <= 4 rows a program).

    Each program keeps [BN, BK/16] per-block fp32 accumulators (one per
    activation row) in registers and reduces them over K once, after the loop:
    per weight byte the loop does the decode, one multiply and one FMA.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nm = offs_n < N
    k_tiles = tl.cdiv(K, BK)
    kt0, kt1 = _split_k_range(k_tiles, pid_k, SPLIT_K)
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w  # = K // 2
    s_rows = ws_ptr + offs_n[:, None].to(tl.int64) * stride_s  # = K // 16
    kw = tl.arange(0, BK // 2)
    ks = tl.arange(0, BK // 16)
    m0 = pid_m * BM
    a0 = a_ptr + m0.to(tl.int64) * stride_am
    acc0 = tl.zeros((BN, BK // 16), dtype=tl.float32)
    acc1 = tl.zeros((BN, BK // 16), dtype=tl.float32)
    acc2 = tl.zeros((BN, BK // 16), dtype=tl.float32)
    acc3 = tl.zeros((BN, BK // 16), dtype=tl.float32)
    # PREFETCH: software pipelining in registers (the next tile's weight bytes,
    # scales and activations are requested before this tile is decoded); else
    # the loads are left to Triton's pipeliner (num_stages).
    if PREFETCH:
        wp_n, sb_n = _load_w_tile(w_rows, s_rows, kt0 * BK, kt1 * BK, nm, K, kw, ks, EVEN_K)
        a_n = _load_a(a0, kt0 * BK, K, m0, M, BK, EVEN_K)
        for kt in range(kt0, kt1):
            k0 = kt * BK
            wp = wp_n
            sb = sb_n
            a_c = a_n
            wp_n, sb_n = _load_w_tile(w_rows, s_rows, k0 + BK, kt1 * BK, nm, K, kw, ks, EVEN_K)
            a_n = _load_a(a0, k0 + BK, K, m0 + (kt + 1 >= kt1) * M, M, BK, EVEN_K)
            acc0, acc1, acc2, acc3 = _gemv_step(wp, sb, a_c, a0, k0, K, m0, M, stride_am, acc0, acc1, acc2, acc3,
                                                BM, BN, BK, EVEN_K, USE_ASM)
    else:
        for kt in range(kt0, kt1):
            k0 = kt * BK
            wp, sb = _load_w_tile(w_rows, s_rows, k0, kt1 * BK, nm, K, kw, ks, EVEN_K)
            a_c = _load_a(a0, k0, K, m0, M, BK, EVEN_K)
            acc0, acc1, acc2, acc3 = _gemv_step(wp, sb, a_c, a0, k0, K, m0, M, stride_am, acc0, acc1, acc2, acc3,
                                                BM, BN, BK, EVEN_K, USE_ASM)
    _gemv_finish(acc0, acc1, acc2, acc3, m0, offs_n, pid_k, pid_m, pid_n, M, N, part_ptr, lock_ptr, stride_pk,
                 gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga, BM, BN, SPLIT_K, GW_VEC, HAS_GA, HAS_BIAS)


@triton.jit
def _pairs_to_f32(p, A_F16: tl.constexpr):
    """int32 words holding two 16-bit activations -> (element 2j, element 2j + 1) in fp32."""
    if A_F16:
        e = (p & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        o = ((p >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        e = (p << 16).to(tl.float32, bitcast=True)
        o = (p & -65536).to(tl.float32, bitcast=True)
    return e, o


@triton.jit
def _gemv2_row(ap, lo, hi, BN: tl.constexpr, BKB: tl.constexpr, A_F16: tl.constexpr, FMA_CHAIN: tl.constexpr):
    xe, xo = _pairs_to_f32(ap, A_F16)
    if FMA_CHAIN:
        # One FMA per weight: a chain over the block's 16 weights (in-thread).
        l0, l1, l2, l3, l4, l5, l6, l7 = _split8(lo, BN, BKB)
        h0, h1, h2, h3, h4, h5, h6, h7 = _split8(hi, BN, BKB)
        e0, e1, e2, e3, e4, e5, e6, e7 = _split8(xe, BN, BKB)
        o0, o1, o2, o3, o4, o5, o6, o7 = _split8(xo, BN, BKB)
        t = l0 * e0
        t = h0 * o0 + t
        t = l1 * e1 + t
        t = h1 * o1 + t
        t = l2 * e2 + t
        t = h2 * o2 + t
        t = l3 * e3 + t
        t = h3 * o3 + t
        t = l4 * e4 + t
        t = h4 * o4 + t
        t = l5 * e5 + t
        t = h5 * o5 + t
        t = l6 * e6 + t
        t = h6 * o6 + t
        t = l7 * e7 + t
        t = h7 * o7 + t
        return t
    else:
        prod = lo * xe + hi * xo  # [BN, BKB]: one byte = two weights
        return tl.sum(tl.reshape(prod, (BN, BKB // 8, 8)), axis=2)  # per-16-weight block sums


@triton.jit
def _split8(x, BN: tl.constexpr, BKB: tl.constexpr):
    """[BN, BKB] -> the 8 [BN, BKB / 8] tensors of elements 8b + j, j = 0..7."""
    x4 = tl.reshape(x, (BN, BKB // 8, 2, 2, 2))
    a, b = tl.split(x4)
    a0, a1 = tl.split(a)
    b0, b1 = tl.split(b)
    a00, a01 = tl.split(a0)
    a10, a11 = tl.split(a1)
    b00, b01 = tl.split(b0)
    b10, b11 = tl.split(b1)
    # split peels the fastest dim: a = even j, b = odd j; a0 = j in {0, 4}, a1 = {2, 6}, ...
    return a00, b00, a10, b10, a01, b01, a11, b11


@triton.jit
def _gemv2_wload(w_rows, s_rows, b0, nm, kb, ks, KB, K, live, EVEN_K: tl.constexpr):
    """The weight tile at byte b0 of the rows: bytes [BN, BKB] and scale bytes [BN, BKB / 8]
    (zeros past N or K, and everywhere when ``live`` is false)."""
    wm = nm[:, None] & live
    if EVEN_K:
        wp = tl.load(w_rows + (b0 + kb)[None, :], mask=wm, other=0)
        sb = tl.load(s_rows + (b0 // 8 + ks)[None, :], mask=wm, other=0)
    else:
        wp = tl.load(w_rows + (b0 + kb)[None, :], mask=wm & ((b0 + kb) < KB)[None, :], other=0)
        sb = tl.load(s_rows + (b0 // 8 + ks)[None, :], mask=wm & ((b0 // 8 + ks) < K // 16)[None, :], other=0)
    return wp, sb


@triton.jit
def _gemv2_step(acc0, acc1, acc2, acc3, wp, sb, a0, stride_am, b0, kb, zero_n, KB, m0, M,
                BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr, EVEN_K: tl.constexpr,
                USE_ASM: tl.constexpr, A_F16: tl.constexpr, FMA_CHAIN: tl.constexpr, HW_E4M3: tl.constexpr):
    """Accumulate one K tile: decode the weight tile, multiply by activation rows m0..m0+BM-1
    (their words at byte b0, broadcast to [BN, BKB]; zeros past K or M) and add the
    per-block sums times the block scales."""
    a_off = zero_n + (b0 + kb)[None, :]
    if EVEN_K:
        kin = zero_n == 0
    else:
        kin = a_off < KB
    ap = tl.load(a0 + a_off, mask=kin & ((zero_n + m0) < M), other=0)
    if USE_ASM:
        lo, hi = tl.inline_asm_elementwise(_DECODE_F32_ASM, "=r,=r,=r,=r,=r,=r,=r,=r,r", [wp],
                                           dtype=(tl.float32, tl.float32), is_pure=True, pack=4)
    else:
        lo, hi = _decode_codes(wp, tl.float32, USE_ASM)
    s = _scale_values(sb, HW_E4M3)
    acc0 += _gemv2_row(ap, lo, hi, BN, BKB, A_F16, FMA_CHAIN) * s
    if BM > 1:
        ar = tl.load(a0 + stride_am + a_off, mask=kin & ((zero_n + m0 + 1) < M), other=0)
        acc1 += _gemv2_row(ar, lo, hi, BN, BKB, A_F16, FMA_CHAIN) * s
    if BM > 2:
        ar = tl.load(a0 + 2 * stride_am + a_off, mask=kin & ((zero_n + m0 + 2) < M), other=0)
        acc2 += _gemv2_row(ar, lo, hi, BN, BKB, A_F16, FMA_CHAIN) * s
    if BM > 3:
        ar = tl.load(a0 + 3 * stride_am + a_off, mask=kin & ((zero_n + m0 + 3) < M), other=0)
        acc3 += _gemv2_row(ar, lo, hi, BN, BKB, A_F16, FMA_CHAIN) * s
    return acc0, acc1, acc2, acc3


@triton.jit
def _fp4_gemv2_kernel(
    a_ptr, w_ptr, ws_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr, part_ptr, lock_ptr,
    M, N, K, stride_am, stride_om, stride_ga, stride_pk, stride_w, stride_s,
    BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr, SPLIT_K: tl.constexpr, BPT: tl.constexpr,
    EVEN_K: tl.constexpr, USE_ASM: tl.constexpr, A_F16: tl.constexpr, FMA_CHAIN: tl.constexpr,
    HW_E4M3: tl.constexpr, GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """CUDA-core GEMV for tiny M (BM <= 4 rows a program), layout-conversion free.

    ``a_ptr`` is the activation viewed as int32 words (two bf16/fp16 values a
    word, ``stride_am`` in words), so that activation word j pairs with weight
    byte j (its low nibble is element 2j, its high nibble 2j + 1). Weight bytes
    [BN, BKB] and activation words (broadcast over the BN rows) are loaded as
    tensors of the same shape, so Triton gives them one register layout (each
    thread: 16 weight bytes, 16 words): decode, products and the per-16-weight
    block sums stay in each thread. The scale bytes are loaded with a
    contiguity of BPT (= blocks a thread) so their layout is that of the block
    sums. No shared memory in the loop. ``PDL``: launched as a programmatic
    dependent of the kernel that writes the activations (the quantizer), so its
    launch, set-up and first weight tile's read overlap that kernel; it waits for
    it before reading the activations.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nm = offs_n < N
    KB = K // 2  # bytes (and activation words) a row
    k_tiles = tl.cdiv(KB, BKB)
    kt0, kt1 = _split_k_range(k_tiles, pid_k, SPLIT_K)
    kb = tl.arange(0, BKB)
    ks = tl.max_contiguous(tl.multiple_of(tl.arange(0, BKB // 8), BPT), BPT)
    w_rows = w_ptr + offs_n[:, None].to(tl.int64) * stride_w
    s_rows = ws_ptr + offs_n[:, None].to(tl.int64) * stride_s
    m0 = pid_m * BM
    a0 = a_ptr + m0.to(tl.int64) * stride_am
    acc0 = tl.zeros((BN, BKB // 8), dtype=tl.float32)
    acc1 = tl.zeros((BN, BKB // 8), dtype=tl.float32)
    acc2 = tl.zeros((BN, BKB // 8), dtype=tl.float32)
    acc3 = tl.zeros((BN, BKB // 8), dtype=tl.float32)
    zero_n = tl.zeros((BN, BKB), dtype=tl.int32)
    kt_first = kt0
    if PDL:
        # The weight does not depend on the kernel this one waits for (the quantizer):
        # its first K tile is read before the wait, so that read overlaps that kernel.
        wp, sb = _gemv2_wload(w_rows, s_rows, kt0 * BKB, nm, kb, ks, KB, K, kt0 < kt1, EVEN_K)
        tl.extra.cuda.gdc_wait()
        if kt0 < kt1:
            acc0, acc1, acc2, acc3 = _gemv2_step(acc0, acc1, acc2, acc3, wp, sb, a0, stride_am, kt0 * BKB, kb, zero_n,
                                                 KB, m0, M, BM, BN, BKB, EVEN_K, USE_ASM, A_F16, FMA_CHAIN, HW_E4M3)
        kt_first = kt0 + 1
    for kt in range(kt_first, kt1):
        b0 = kt * BKB
        wp, sb = _gemv2_wload(w_rows, s_rows, b0, nm, kb, ks, KB, K, True, EVEN_K)
        acc0, acc1, acc2, acc3 = _gemv2_step(acc0, acc1, acc2, acc3, wp, sb, a0, stride_am, b0, kb, zero_n,
                                             KB, m0, M, BM, BN, BKB, EVEN_K, USE_ASM, A_F16, FMA_CHAIN, HW_E4M3)
    _gemv_finish(acc0, acc1, acc2, acc3, m0, offs_n, pid_k, pid_m, pid_n, M, N, part_ptr, lock_ptr, stride_pk,
                 gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga, BM, BN, SPLIT_K, GW_VEC, HAS_GA, HAS_BIAS)


@triton.jit
def _dequant_kernel(w_ptr, ws_ptr, out_ptr, N, K, BN: tl.constexpr, BK: tl.constexpr,
                    DT: tl.constexpr, USE_ASM: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nm = offs_n[:, None] < N
    k0 = pid_k * BK
    kw = k0 // 2 + tl.arange(0, BK // 2)
    ks = k0 // 16 + tl.arange(0, BK // 16)
    ka = k0 + tl.arange(0, BK)
    wp = tl.load(w_ptr + offs_n[:, None].to(tl.int64) * (K // 2) + kw[None, :], mask=nm & (kw < K // 2)[None, :], other=0)
    sb = tl.load(ws_ptr + offs_n[:, None].to(tl.int64) * (K // 16) + ks[None, :], mask=nm & (ks < K // 16)[None, :], other=0)
    w = _decode_tile(wp, sb, BN, BK, DT, USE_ASM)
    tl.store(out_ptr + offs_n[:, None].to(tl.int64) * K + ka[None, :], w, mask=nm & (ka < K)[None, :])


@dataclass(frozen=True)
class GemmConfig:
    """One launch configuration. ``kind``: 'gemv'/'gemv2' (CUDA cores), 'tc' (tensor cores),
    'tcT' (tensor cores with the decoded weight as the A operand: out^T = W x^T), 'mma'
    (``gluon_gemm``: mma.sync on the weight decoded in its operand registers, M <= 8, bf16,
    16 rows a CTA, ``num_warps`` = K splits, ``num_stages`` >= 2 its cp.async ring), 'wgmma' (``gluon_wgmma``: Hopper wgmma on the
    weight decoded in its operand registers, bf16, tiles of out^T of 128 weight rows by BM = 256, 128,
    64 or 32 activation rows, K split over ``split_k`` CTAs; the other fields are descriptive) or 'dq'
    (dequantize + torch.matmul)."""

    kind: str = "tc"
    BM: int = 16
    BN: int = 64
    BK: int = 128
    split_k: int = 1
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    # Double-buffer the next K tile's loads in registers ('tc'/'tcT'/'gemv'; 'gemv2'
    # has none: measured no faster, run 11). Measured slower on the H100 than leaving
    # the loads to Triton's pipeliner (num_stages): off by default.
    prefetch: bool = False

    def short(self) -> str:
        if self.kind == "dq":
            return "dq+matmul"
        if self.kind == "wgmma":  # BM: the activation rows a tile (gluon_wgmma.tile_rows), BN x BK fixed
            return f"wgmma {self.BM}x128x64" + (f" s{self.split_k}" if self.split_k > 1 else "")
        pf = " pf" if self.prefetch else ""
        return f"{self.kind} {self.BM}x{self.BN}x{self.BK} s{self.split_k} w{self.num_warps} st{self.num_stages}{pf}"


def _split_for(tiles: int, k_tiles: int, sms: int, max_split: int = 8) -> int:
    """Smallest power-of-2 split that gives >= ~1.5 waves, keeping >= 2 K tiles a split."""
    split = 1
    while tiles * split < 1.5 * sms and split * 2 <= max_split and k_tiles // (split * 2) >= 2:
        split *= 2
    return split


def select_config(M: int, N: int, K: int, device: torch.device | None = None,
                  cublas_prefill: bool = True, allow_mma: bool = True, a_k64: bool = False) -> GemmConfig:
    """The path and tile shape for an M x N x K product.

    Picked from the sweeps of ``tools/bench_gemm.py --sweep`` and
    ``tools/sweep_tiles.py`` on an H100 (see benchmarks/hopper.md): the CUDA-core
    GEMV up to M = 2, split-K tensor-core tiles up to M = 128 (256 where the
    prefill GEMM would not be cuBLAS, or N is large), and for larger M (prefill)
    the weight is decoded once into a bf16 workspace followed by a plain GEMM
    ('dq'). Where Gluon is available (``allow_mma``: ``fp4_gemm`` passes whether the
    activations are bf16, the only dtype the Gluon kernels take): for 2 <= M <= 8 on a
    CUDA device the 'mma' kernel of ``gluon_gemm``; on sm_90 for 16 < M <= 128 the 'wgmma' kernel of
    ``gluon_wgmma`` with K split over CTAs (``split_k``; ``gluon_wgmma.split_plan``, where its CTAs fill
    one wave at least 70%; W4A16 at M <= 32 only from 3072 values of K a CTA), and for 128 < M where
    its tiles (``gluon_wgmma.tile_rows``) fill the SMs (the last wave at least 85% full, or one wave at
    least 70% full), where 768 < M (512 < M without cuBLAS prefill) and ``gluon_wgmma.plan`` splits the
    weight rows into whole waves and a wave of 128-row tiles, or N >= 16384; beyond
    M = 1024 only where the decode + GEMM path's GEMM would not be cuBLAS: W4A4 (``a_k64``, its
    operand in the K64 order) at any M, W4A16 with a per-row weight scale up to M = 2048.
    ``cublas_prefill``: that GEMM would be cuBLAS (W4A16 with a host-side weight scale), not the
    Triton GEMM of triton_prefill.
    """
    sms = num_sms(device) if device is not None else 132
    mma = allow_mma and 2 <= M <= 8 and device is not None and _mma_usable(device)
    # Run 37b (H100, rotating weights, us, decode + Triton GEMM -> wgmma): W4A4 (K64 operand) at M = 1536
    # 0.78-0.84x the time, 2048 0.87-0.89x, 4096 0.93-0.99x, 8192 0.90-0.96x (4096x4096 M = 2048 121.4 ->
    # 107.7); W4A16 with a per-row weight scale (natural order) 0.94-0.98x at M = 2048, 1.02-1.11x at 4096.
    prefill = _WGMMA_PREFILL and not cublas_prefill and (a_k64 or M <= 2048)
    wgmma = (allow_mma and (128 < M or (_WGMMA_SPLIT_K and 16 < M)) and (M <= 1024 or prefill) and K % 64 == 0
             and device is not None and _wgmma_usable(device))
    return _select(M, N, K, sms, cublas_prefill, mma, wgmma, a_k64)


@functools.lru_cache(maxsize=4096)
def _select(M: int, N: int, K: int, sms: int, cublas_prefill: bool, mma: bool, wgmma: bool,
            a_k64: bool = False) -> GemmConfig:
    """select_config's choice once the device's part is known (``mma``/``wgmma``: a Gluon kernel
    may be used at this M). Cached: it runs on every call's launch path (GemmConfig is frozen)."""
    if mma:
        from vllm_fouroversix.kernels import gluon_gemm

        # Run 16 (H100, rotating weights): M = 2..8 on the four Llama-3-8B shapes 5-27% faster
        # than the GEMV (M = 2) and the 16x64x256 tensor-core tile (M = 3..8), e.g. 4096x4096
        # M = 4 10.6 -> 8.2 us, 28672x4096 41.5 -> 32.9 us. num_stages: its cp.async ring (run 18).
        plan = gluon_gemm.mma_plan(M, N, K)
        if plan is not None:
            return GemmConfig(kind="mma", BM=8, BN=16, BK=128, num_warps=plan[0], num_stages=plan[1])
    if wgmma and M <= 128:
        from vllm_fouroversix.kernels import gluon_wgmma

        # Run 40b (H100, rotating weights, the backend's linear against the tc tiles below, M = 17-128 on
        # the four Llama-3-8B shapes): W4A4 0.48-0.92x the time (28672x4096 M = 128 136.3 -> 65.6 us),
        # W4A16 0.52-0.97x where split_plan takes it (1.02-1.07x in the 32-row tiles it leaves out)
        sp = gluon_wgmma.split_plan(M, N, K, sms, a_k64)
        if sp is not None:
            return GemmConfig(kind="wgmma", BM=sp[0], BN=gluon_wgmma.BN, BK=gluon_wgmma.BK, split_k=sp[1],
                              num_warps=9, num_stages=4)
    elif wgmma:
        from vllm_fouroversix.kernels import gluon_wgmma

        # Run 17e (H100, rotating weights, W4A16 bf16/this vs decode + cuBLAS; one launch): M = 1024
        # 4096x4096 0.87x vs 0.78x, 28672x4096 0.88x vs 0.81x, 4096x14336 0.85x vs 0.78x;
        # 28672x4096 M = 256 0.96x vs 0.48x, M = 512 0.80x vs 0.65x; 6144x4096 M = 512 (96 tiles,
        # one wave) 0.73x vs 0.62x. Where the tiles leave the SMs idle (6144x4096 at M = 1024:
        # 192 tiles, 0.75x vs 0.81x; N = 4096 at M <= 512: 32-64 tiles, 0.37-0.53x vs 0.51-0.66x)
        # and from M = 2048 (0.85-0.88x vs 0.88-0.91x) decoding first stays faster.
        # Tiles of 256, 128 or 64 activation rows, whichever take the fewest waves for their time (run
        # 38b, us, selected path -> wgmma: W4A4 4096x4096 M = 256 39.7 (tc) -> 25.5 (64 rows), 512 47.8 (dq)
        # -> 38.2 (128 rows), 6144x4096 M = 256 53.7 (tc) -> 36.8 (128 rows); W4A16 (decode + cuBLAS
        # before) 4096x4096 M = 512 37.0 -> 33.2, 6144x4096 M = 256 48.8 -> 33.0; the closest: 4096x4096
        # M = 192 29.0 -> 29.0, M = 384 33.5 -> 32.9).
        tbm = gluon_wgmma.tile_rows(M, N, sms)
        tiles_fill = gluon_wgmma.tiles_fill(M, N, sms, tbm)
        one_wave = gluon_wgmma.tiles(M, N, tbm) <= sms
        # Whole waves of 256-row tiles, then one wave of 128-row tiles (gluon_wgmma.plan); run 17h,
        # us: 6144x4096 M = 1024 88.7 vs decode + cuBLAS 91.2 (bf16 69.3), 14336x4096 M = 1024 201.7
        # vs 217.2; but 6144x4096 M = 768 85.6 vs 70.0 (the plan's time does not shrink with M,
        # cuBLAS's does): for 4 tiles of M only, or 3 where the other path's GEMM is not cuBLAS (run 39a:
        # W4A4 6144x4096 M = 768 78.8 us vs 108.4 decode + the Triton GEMM).
        split = ((M > 3 * gluon_wgmma.BM or (M > 2 * gluon_wgmma.BM and not cublas_prefill))
                 and len(gluon_wgmma.plan(M, N, sms, tbm)) > 1)
        if N >= 16384 or tiles_fill >= 0.85 or (one_wave and tiles_fill >= 0.7) or split:
            return GemmConfig(kind="wgmma", BM=tbm, BN=gluon_wgmma.BN, BK=gluon_wgmma.BK, num_warps=9, num_stages=4)
    if M <= 2:
        # 16 rows x 512 bytes a program, split over K only where the grid is too
        # small for the SMs; for one row and a long K (K > 8192), 256-byte tiles
        # split 4 ways (benchmarks/hopper.md, run 11). From M = 3 the 16-row
        # tensor-core tile is faster: the GEMV's FMAs grow with M, the MMA's do not
        # (run 12f: 28672x4096 M = 4 45 us vs 67 us).
        # One row, K a multiple of 2048, N 4096..16384 (where it was measured): 8 rows x
        # 1024 bytes a program (half the K steps). Run 13c: 3-9% faster at 4096x4096
        # (8.4 -> 7.7 us), 4096x14336, 11008x4096 and 14336x4096, 1-2% slower (within
        # the noise) at 6144x4096; 28672x4096 (1.5% slower) keeps the 16-row tile.
        if M == 1 and K % 2048 == 0 and 4096 <= N <= 16384:
            cfg = GemmConfig(kind="gemv2", BM=1, BN=8, BK=2048, num_warps=4, num_stages=1)
        elif M == 1 and K > 8192:
            cfg = GemmConfig(kind="gemv2", BM=1, BN=16, BK=512, split_k=4, num_warps=4, num_stages=1)
        else:
            cfg = GemmConfig(kind="gemv2", BM=next_pow2(M), BN=16, BK=1024, num_warps=4, num_stages=1)
    elif M <= 16:
        cfg = GemmConfig(kind="tc", BM=16, BN=64, BK=256, num_warps=4, num_stages=3)
        tiles = ceil_div(N, cfg.BN)
        if N >= 16384 and 1.5 * sms <= tiles < 3.5 * sms:
            # Wide weights whose tiles fill 1.5-3.5 waves' worth of SMs, where _split_for stops at 1:
            # two K splits were faster (run 24f, W4A16, us, split 1 -> 2): 28672x4096 M = 16
            # 37.7 -> 35.9, M = 9 38.8 -> 35.9; 28672x8192 M = 16 72.5 -> 65.2. Not at 57344x4096
            # (6.8 waves: 63.8 -> 66.9), and mixed at 14336x4096 (1.7 waves), which stay at 1.
            cfg = replace(cfg, split_k=2)
    elif M <= 32:
        cfg = GemmConfig(kind="tc", BM=32, BN=64, BK=256, num_warps=4, num_stages=3)
    elif M <= 128:
        BM = 64
        if N >= 6144:
            cfg = GemmConfig(kind="tc", BM=BM, BN=64, BK=64, num_warps=4, num_stages=5)
        else:
            cfg = GemmConfig(kind="tc", BM=BM, BN=64, BK=128, num_warps=4, num_stages=4)
    elif M <= 256 and (N >= 16384 or not cublas_prefill):
        # Run 14e (M = 256): the decoding tensor-core tiles beat decode + the Triton GEMM by
        # 0-29% (4096x4096 39.3 vs 39.4 us, 6144x4096 53.9 vs 59.4, 4096x14336 121.1 vs
        # 143.1, 28672x4096 177.5 vs 229.6 with 128x128), and decode + cuBLAS (W4A16) at
        # N >= 16384 only (28672x4096: 177.5 vs 220.8 us). At M = 512 decoding first won
        # everywhere.
        if N >= 16384:
            cfg = GemmConfig(kind="tc", BM=128, BN=128, BK=64, num_warps=8, num_stages=3)
        else:
            cfg = GemmConfig(kind="tc", BM=64, BN=128, BK=64, num_warps=4, num_stages=4)
    else:
        return GemmConfig(kind="dq")
    return _with_split(cfg, M, N, K, sms)


def _with_split(cfg: GemmConfig, M: int, N: int, K: int, sms: int) -> GemmConfig:
    if cfg.kind in ("dq", "mma", "wgmma") or cfg.split_k != 1:
        return cfg
    tiles = ceil_div(N, cfg.BN) * ceil_div(M, cfg.BM)
    split = _split_for(tiles, ceil_div(K, cfg.BK), sms)
    return cfg if split == 1 else replace(cfg, split_k=split)  # replace() costs microseconds


_LOCKS: dict[tuple, torch.Tensor] = {}
_LOCK_SIZE = 1 << 16


def _locks(device: torch.device) -> torch.Tensor:
    # One buffer a device: every tile counter returns to 0 when its tile is
    # done, so launches that follow each other reuse it. (Two split-K GEMMs
    # running concurrently on different streams would share counters: the
    # backend runs on one stream at a time, like vLLM's forward pass.)
    key = str(device)
    t = _LOCKS.get(key)
    if t is None:
        t = torch.zeros(_LOCK_SIZE, dtype=torch.int32, device=device)
        _LOCKS[key] = t
    return t


# Set when the Gluon kernel failed to compile or launch (an untested Triton): fp4_gemm then
# warns once and uses the Triton tiles for good.
_MMA_FAILED: list[str] = []


def _mma_usable(device: torch.device) -> bool:
    if _MMA_FAILED:
        return False
    from vllm_fouroversix.kernels import gluon_gemm

    return gluon_gemm.available(device)


# The same for the Gluon wgmma kernel (batch/prefill, sm_90).
_WGMMA_FAILED: list[str] = []
# fp4_gemm(pdl=True) launches the wgmma kernel as a programmatic dependent (off: experiments, run 21a).
_WGMMA_PDL = True


# W4A4 hands the wgmma kernel its operand in the K64 order (k64_operand; off: experiments).
_WGMMA_K64 = True
# The wgmma kernel with K split over CTAs for 16 < M <= 128 (select_config; off: experiments, run 40a).
_WGMMA_SPLIT_K = True
# The wgmma kernel also beyond M = 1024 where the prefill GEMM would not be cuBLAS (select_config;
# off: experiments).
_WGMMA_PREFILL = True


def k64_operand(M: int, N: int, K: int, device: torch.device) -> bool:
    """Whether W4A4's quantizer should write its bf16 operand [M, K] in the K order of
    :mod:`kernels.k64_order` (``quantize_triton(perm_k64=True)``, then ``fp4_gemm(a_k64=True)``):
    where the wgmma kernel takes the product, which then decodes each thread's weight bytes without
    selecting them and with one block scale a row (run 36)."""
    # the integer tests first: decode calls (small M), which are host-bound outside CUDA graphs, stop there
    return (_WGMMA_K64 and 16 < M and K % 64 == 0
            and select_config(M, N, K, device, cublas_prefill=False, a_k64=True).kind == "wgmma")


def _wgmma_usable(device: torch.device) -> bool:
    if _WGMMA_FAILED:
        return False
    from vllm_fouroversix.kernels import gluon_wgmma

    return gluon_wgmma.available(device)


def _gluon_failed(failed: list[str], e: Exception, kernel: str, instead: str) -> None:
    """Record a Gluon kernel's failure (its path is not selected again) and warn once."""
    failed.append(f"{type(e).__name__}: {e}")
    warnings.warn(f"vllm_fouroversix: the Gluon {kernel} failed ({failed[0][:300]}); using {instead} instead",
                  RuntimeWarning, stacklevel=3)


def _mma_early(M: int, N: int, K: int) -> bool:
    # Where the quantizer lets the Gluon mma kernel launch at its start: K <= 8192 and M <= 4 or
    # N >= 16384 (runs 16f, 18b; W4A4, us, early vs plain): 4096x4096 M = 2 9.0 vs 10.3, 28672x4096
    # M = 4 33.4 vs 35.9, M = 8 36.1 vs 38.7; but M = 8 at N < 16384 (4096x4096 11.9 vs 11.3) and
    # K = 14336 (M = 2 26.0 vs 21.9, M = 8 35.1 vs 24.5) are slower: the early, waiting CTAs hold
    # the SMs the quantizer's programs need. There it launches at the quantizer's end (run 25e:
    # 0.5-2% faster than a plain launch).
    return K <= 8192 and (M <= 4 or N >= 16384)


def pdl_mode(M: int, N: int, K: int, device: torch.device) -> str | None:
    """When ``fp4_gemm(a, ..., ga=..., pdl=True)`` with bf16 ``a`` [M, K], a programmatic dependent
    launch, should be let launch by the quantizer before it: "early" (at the quantizer's start,
    ``quantize_triton(launch_dependents=True)``: the GEMV, the wgmma kernel and the Gluon mma
    kernel where ``_mma_early``, which read weight tiles before they wait for the quantizer),
    "late" (when the quantizer's programs have exited: the tensor-core tiles, which wait at their
    start, and the mma kernel elsewhere), or None (``pdl`` has no effect: decode + GEMM, devices
    before sm_90).

    Launched early, the waiting CTAs of a GEMM that does not read ahead only hold SMs (run 12;
    run 25b: W4A4 at M = 9..64 1-4% faster launched late). The quantizer should itself be a
    dependent (``pdl_wait``) only where the GEMM is one: before a plain launch it was 1-3% slower
    (run 25c)."""
    if not pdl_supported(device):
        return None
    cfg = select_config(M, N, K, device, cublas_prefill=False, a_k64=_WGMMA_K64)  # as W4A4's fp4_gemm selects
    if cfg.kind == "gemv2" or (cfg.kind == "wgmma" and _WGMMA_PDL) or (cfg.kind == "mma" and _mma_early(M, N, K)):
        return "early"
    return "late" if cfg.kind in ("tc", "mma") else None


def _use_asm(device: torch.device) -> bool:
    return device.type == "cuda" and not INTERPRET


# Extra launch options of the GEMV under PDL (benchmark sweeps: e.g. maxnreg).
_PDL_EXTRA_LAUNCH: dict = {}
# Under PDL the one-row GEMV holds its first weight tile across the wait: the 8 x 1024-byte
# tile then takes 168 registers (3 programs an SM, so not all of 4096x4096's 512 are
# resident to read ahead). Capped at 128 (4 an SM; 40 bytes of spills): W4A4 M = 1
# 4096x4096 8.8 -> 8.6 us, 6144x4096 and 4096x14336 -1.5%, 28672x4096 within noise (run 14c).
_PDL_ONE_ROW_MAXNREG = 128


# Launched through FastKernel: once a specialization is compiled, Triton's per-call launch Python is skipped
# (kernels/launch.py; host time a call, docs/hopper.md).
_GEMM = FastKernel(_fp4_gemm_kernel)
_GEMV = FastKernel(_fp4_gemv_kernel)
_GEMV2 = FastKernel(_fp4_gemv2_kernel)
_DEQUANT = FastKernel(_dequant_kernel)


def dequantize_weight(data: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Packed [N, K/2] + scales [N, K/16] -> q * s [N, K] in ``dtype`` (no global scale)."""
    N, K = data.shape[0], data.shape[1] * 2
    out = torch.empty((N, K), dtype=dtype, device=data.device)
    BN, BK = 32, 256
    dt = tl.bfloat16 if dtype == torch.bfloat16 else (tl.float16 if dtype == torch.float16 else tl.float32)
    _DEQUANT[(ceil_div(N, BN), ceil_div(K, BK))](
        data, scales.view(torch.uint8), out, N, K, BN=BN, BK=BK, DT=dt,
        USE_ASM=_use_asm(data.device) and dtype == torch.bfloat16, num_warps=4,
    )
    return out


def _dq_gemm(a: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor, gw: torch.Tensor,
             ga: torch.Tensor | None, bias: torch.Tensor | None, out: torch.Tensor,
             gw_float: float | None, cublas_prefill: bool) -> torch.Tensor:
    """Prefill: decode the weight into a bf16 (fp16/fp32) workspace (exact), then a plain
    GEMM: cuBLAS with the global scale as alpha and the bias as the beta term when that
    expresses the epilogue (W4A16, one weight scale known on the host), else the Triton
    GEMM of triton_prefill (per-row activation scales: W4A4).

    The decoded weight goes through HBM (written once, read by the GEMM). Decoding
    it in L2-sized chunks of rows into one reused workspace, each chunk's GEMM
    writing its columns of ``out``, was measured no faster (benchmarks/hopper.md,
    run 14a): the smaller GEMMs lose more than the L2 saves."""
    wdt = a.dtype if a.dtype in (torch.float16, torch.float32) else torch.bfloat16
    w = dequantize_weight(data, sbytes, wdt)
    if cublas_prefill and a.dtype == wdt:
        if bias is not None:
            return torch.addmm(bias.to(wdt), a, w.T, alpha=gw_float, out=out)
        # beta=0: the input is ignored (NaNs too), one rounding of alpha * acc
        return torch.addmm(out, a, w.T, beta=0, alpha=gw_float, out=out)
    return prefill_gemm(a.to(wdt), w, gw, ga, bias, out=out)


def fp4_gemm(
    a: torch.Tensor,
    data: torch.Tensor,
    scales: torch.Tensor,
    gw: torch.Tensor,
    *,
    ga: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    config: GemmConfig | None = None,
    gw_float: float | None = None,
    pdl: bool = False,
    a_k64: bool = False,
) -> torch.Tensor:
    """``a`` [M, K] (bf16/fp16/fp32) x NVFP4 weight [N, K] -> [M, N].

    ``data`` uint8 [N, K/2], ``scales`` e4m3 (or uint8) [N, K/16] row-major,
    ``gw`` fp32 [] or [N]; ``ga`` fp32 [M] (per-row) or [] (per-tensor)
    activation global scale, None for W4A16; ``bias`` [N]; ``gw_float``:
    the scalar ``gw`` as a Python float, when known (lets the prefill path use
    cuBLAS's alpha without a device sync). ``pdl``: launch the GEMM as a programmatic
    dependent (sm_90+) of the kernel before it in the stream, so that its launch overlaps
    that kernel's end. The GEMV (M <= 2) and the Gluon kernels read weight tiles before they
    wait for that kernel (``griddepcontrol.wait``) and read ``a``; the tensor-core tiles wait
    at their start. The kernel before may let the GEMM launch while it still runs
    (``quantize_triton(launch_dependents=True)``), which pays only on some paths
    (:func:`pdl_mode`). Ignored on the decode + GEMM path and on other devices. ``a_k64``: ``a``'s
    columns are in the K order of :mod:`kernels.k64_order` (``quantize_triton(perm_k64=True)``),
    which the wgmma kernel reads directly; any other path (a fallback) restores the order first.
    """
    if a.dim() != 2:
        raise ValueError("fp4_gemm takes a 2-D activation [M, K]")
    M, K = a.shape
    N = data.shape[0]
    if data.shape[1] * 2 != K or scales.shape != (N, K // 16):
        raise ValueError(f"weight shapes {tuple(data.shape)}/{tuple(scales.shape)} do not match K={K}")
    if a.stride(1) != 1:
        a = a.contiguous()
    out_dtype = out_dtype or a.dtype
    dev = a.device
    out = torch.empty((M, N), dtype=out_dtype, device=dev)
    if M == 0 or N == 0:
        return out
    # cuBLAS can run the prefill GEMM (its alpha and beta express the epilogue): W4A16, one weight scale
    cublas_prefill = ga is None and gw_float is not None
    # the Gluon kernel takes bf16 activations only
    cfg = config or select_config(M, N, K, dev, cublas_prefill=cublas_prefill, allow_mma=a.dtype == torch.bfloat16,
                                  a_k64=a_k64)
    if config is not None:  # a selected config has its K split already
        cfg = _with_split(cfg, M, N, K, num_sms(dev))
    sbytes = scales.view(torch.uint8) if scales.dtype == torch.float8_e4m3fn else scales
    pdl = pdl and pdl_supported(dev)
    if cfg.kind == "wgmma":
        from vllm_fouroversix.kernels import gluon_wgmma

        if gluon_wgmma.usable(a, data, sbytes):
            try:
                gw_t, ga_t, bias_t, stride_ga, ep = epilogue_args(gw, ga, bias)
                return gluon_wgmma.fp4_wgmma_gemm(a, data, sbytes, gw_t, ga_t, bias_t, out, stride_ga, ep,
                                                  sms=num_sms(dev), pdl=pdl and _WGMMA_PDL,
                                                  chain=pdl_supported(dev), perm=a_k64,
                                                  tbm=cfg.BM if cfg.BM in gluon_wgmma.FORCED_TILE_ROWS else None,
                                                  splits=cfg.split_k)
            except Exception as e:  # noqa: BLE001 - Gluon is experimental: fall back, once and for good
                if config is not None:
                    raise
                _gluon_failed(_WGMMA_FAILED, e, "wgmma GEMM", "the decode + GEMM path")
        elif config is not None:
            raise ValueError("the 'wgmma' GEMM needs bf16 activations with 16-byte aligned rows, K % 64 == 0 "
                             "and contiguous, aligned weight codes and scales")
        # an operand TMA cannot take (e.g. a row stride off 16 bytes), or the kernel failed
        cfg = select_config(M, N, K, dev, cublas_prefill, allow_mma=False)
    if a_k64:
        from vllm_fouroversix.kernels.k64_order import unpermute_k64

        a = unpermute_k64(a)  # only where the wgmma kernel could not take the operand
    if cfg.kind == "dq":
        return _dq_gemm(a, data, sbytes, gw, ga, bias, out, gw_float, cublas_prefill)
    gw, ga, bias_t, stride_ga, ep = epilogue_args(gw, ga, bias)
    if cfg.kind == "mma":
        from vllm_fouroversix.kernels import gluon_gemm

        try:
            return gluon_gemm.fp4_mma_gemm(a, data, sbytes, gw, ga, bias_t, out, stride_ga, ep, cfg.num_warps,
                                           pdl=pdl, stages=cfg.num_stages)
        except Exception as e:  # noqa: BLE001 - Gluon is experimental: fall back, once and for good
            if config is not None:
                raise
            _gluon_failed(_MMA_FAILED, e, "small-M GEMM", "the Triton tiles")
            cfg = select_config(M, N, K, dev, cublas_prefill, allow_mma=False)
    if a.dtype == torch.float32 or INTERPRET:
        # fp32 activations: exact fp32 products. The interpreter has no bf16
        # arithmetic, so it runs the same kernel with fp32 operands (exact too).
        dt, ieee = tl.float32, True
    else:
        dt, ieee = (tl.float16 if a.dtype == torch.float16 else tl.bfloat16), False
    use_asm = _use_asm(dev) and dt == tl.bfloat16
    split = cfg.split_k
    part = torch.empty((split, M, N), dtype=torch.float32, device=dev) if split > 1 else out
    locks = _locks(dev) if split > 1 else out
    even_k = K % cfg.BK == 0
    if cfg.kind == "gemv2" and a.dtype in (torch.bfloat16, torch.float16):
        try:
            a32 = a.view(torch.int32)  # two activations a word (needs an even row stride and offset)
        except RuntimeError:
            a32 = a.contiguous().view(torch.int32)
        bkb = cfg.BK // 2
        grid = (ceil_div(N, cfg.BN), split, ceil_div(M, cfg.BM))
        if split > 1 and grid[0] * grid[2] > _LOCK_SIZE:
            raise ValueError("too many split-K tiles")
        per_thread = max(1, min(16, cfg.BN * bkb // (32 * cfg.num_warps)))
        one_row = cfg.BM == 1 and cfg.BN * bkb >= 8 * 1024
        cap = {"maxnreg": _PDL_ONE_ROW_MAXNREG} if one_row and _PDL_ONE_ROW_MAXNREG else {}  # under PDL only
        _GEMV2[grid](
            a32, data, sbytes, gw, ga, bias_t, out, part, locks, M, N, K, a32.stride(0), out.stride(0), stride_ga,
            M * N, K // 2, K // 16, BM=cfg.BM, BN=cfg.BN, BKB=bkb, SPLIT_K=split, BPT=max(1, per_thread // 8),
            EVEN_K=K % cfg.BK == 0, USE_ASM=_use_asm(dev), A_F16=a.dtype == torch.float16, FMA_CHAIN=True,
            HW_E4M3=e4m3_cvt_supported(dev), **ep, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
            **pdl_launch(pdl, **{**cap, **_PDL_EXTRA_LAUNCH}),
        )
        return out
    if cfg.kind in ("gemv", "gemv2"):
        grid = (ceil_div(N, cfg.BN), split, ceil_div(M, cfg.BM))
        if split > 1 and grid[0] * grid[2] > _LOCK_SIZE:
            raise ValueError("too many split-K tiles")
        _GEMV[grid](
            a, data, sbytes, gw, ga, bias_t, out, part, locks, M, N, K, a.stride(0), out.stride(0), stride_ga, M * N,
            K // 2, K // 16, BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, SPLIT_K=split, EVEN_K=even_k, USE_ASM=_use_asm(dev),
            PREFETCH=cfg.prefetch, **ep, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
        return out
    tiles = ceil_div(M, cfg.BM) * ceil_div(N, cfg.BN)
    if split > 1 and tiles > _LOCK_SIZE:
        raise ValueError("too many split-K tiles")
    _GEMM[(tiles, split)](
        a, data, sbytes, gw, ga, bias_t, out, part, locks, M, N, K, a.stride(0), out.stride(0), stride_ga, M * N,
        K // 2, K // 16, BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, SPLIT_K=split, GROUP_M=cfg.group_m, EVEN_K=even_k, DT=dt,
        USE_ASM=use_asm, IEEE=ieee, **ep,
        SWAP=cfg.kind == "tcT", PREFETCH=cfg.prefetch, HW_E4M3=use_asm and e4m3_cvt_supported(dev),
        SCALED_2M8=use_asm, num_warps=cfg.num_warps, num_stages=cfg.num_stages,  # use_asm: bf16 already
        **pdl_launch(pdl),
    )
    return out
