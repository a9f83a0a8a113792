"""Batch/prefill NVFP4 GEMM on Hopper ``wgmma`` with the weight decoded straight into the
MMA's A-operand registers (Gluon, sm_90). Used for 16 < M where its tiles fill the SMs:
up to M = 1024 always (up to M = 128 with K split over CTAs), beyond only where the other path's GEMM
would not be cuBLAS (W4A4; W4A16 with a per-row weight scale up to M = 2048);
``triton_gemm.select_config`` says where.

The other large-M path decodes the whole weight into a bf16 workspace and then runs
cuBLAS or the Triton GEMM: the decode pass writes N x K x 2 bytes and costs about a
quarter of the GEMM at M = 1024, a half at M = 256. Here the weight stays packed until
it is in registers:

- computed as out^T = W x^T, so that the weight is the A operand, which ``wgmma`` can
  read from registers (the activations, B, come from shared memory);
- warp specialized: one loader warp brings TBM x 64 activation tiles and two 64 x 32-byte
  weight tiles to shared memory with TMA, four stages deep; two MMA warp groups each
  own 64 weight rows of the CTA's 128 x TBM output tile (out^T), decode their weight
  tile from shared memory into registers and issue ``wgmma`` m64nTBMk16;
- TBM (activation rows a tile) is 256, or 128 or 64 where 256-row tiles would leave SMs idle
  (:func:`tile_rows`; run 38b: W4A4 4096x4096 at M = 256 25.5 us in 64-row tiles, 43.0 in 256-row
  tiles, 39.7 on the tc tiles selected before);
- a 64-row tile's K steps may be split in two halves inside the CTA (:func:`k_splits`): four MMA warp
  groups, two a weight slab, each half with its own TMA ring; the second half's sum reaches the first
  through shared memory (fixed order) before the epilogue. Twice the latency-bound chains an SM (run
  39: W4A16 0.79-0.88x the time at M = 136-256 on 4096x4096 and 4096x14336);
- for 16 < M <= 128 (:func:`split_plan`: tiles of 32, 64 or 128 rows) the K steps are also split over
  up to 4 CTAs where the tiles alone would leave SMs idle: each CTA stores its fp32 sum, the last of a
  tile's CTAs (a counter a tile, as ``triton_gemm``'s split-K tiles) adds them in split order and
  runs the epilogue (run 40a: 0.66-0.97x the time of the split-K tensor-core tiles at M = 32-128 on
  the Llama-3-8B shapes, except W4A16 6144x4096 at M = 32, 1.05x);
- the registers of the m16n8k16 A fragment hold (k, k + 1) pairs: each thread decodes
  whole bytes, so it reads bytes c, c + 4, ... (c = lane % 4) of its rows; one PTX
  block turns 4 bytes into four bf16x2 (low nibble, high nibble) pairs and multiplies
  them by their block scale: ``q * s * 2^-8``, exact in bf16 (the codes are placed as
  ``q * 2^-126``, the multiplier s * 2^118 is built from the E4M3 byte with integer
  ops and two exact bf16 multiplies); the epilogue multiplies the fp32 accumulator by
  256 (exact) before ``(acc * (ga * gw)) + bias``;
- the weight bytes are read as 16-byte words and each lane keeps its bytes with ``prmt``;
- ``PERM`` (W4A4): the activations come in the K order of ``kernels/k64_order.py`` (the
  quantizer writes them so), in which lane c's fragment values are bytes 8c..8c + 7 of each
  row's 32-byte K step, all in block c: one 8-byte load a row, no ``prmt`` selection, the
  4-byte decode of ``gluon_gemm`` (low nibbles of byte pairs, then high nibbles) and one scale
  multiplier a row (180 -> 137 SASS instructions a warp group's K step; run 36: W4A4 at
  M = 1024 6.5-9% faster);
- each MMA warp group waits for its own MMA before decoding the next tile: an in-flight
  ``wgmma`` reads its A registers, and ptxas does not keep them from being reused
  (with one MMA left in flight the next decode overwrote them: wrong results at
  256 columns, run 17). The two warp groups overlap each other instead;
- where 256-row tiles would leave the last wave partly empty, :func:`plan` runs the
  weight rows that make whole waves first and the rest as one wave of 128-row tiles, the second
  launch a programmatic dependent of the first (it starts as the first's CTAs finish).

H100, rotating weights (benchmarks/hopper.md, runs 17e-17i), W4A16 bf16/this at M = 1024:
4096x4096 0.87-0.89x (decode + cuBLAS 0.78x), 28672x4096 0.88-0.90x (0.81x), 4096x14336
0.85-0.93x (0.78x), 6144x4096 in two launches 0.78-0.83x (0.76-0.79x); 28672x4096 at
M = 256 0.96-0.98x (0.48x). Slower than decode + cuBLAS from M = 2048 (0.85-0.88x vs
0.88-0.91x) and, with 256-row tiles only (before run 38), where they left most SMs idle (N = 4096
at M <= 512: 32-64 tiles).
Faster than decode + the Triton GEMM (W4A4's other path, run 37b, time ratios): W4A4 at M = 1536
0.78-0.84, 2048 0.87-0.89, 4096 0.93-0.99, 8192 0.90-0.96; W4A16 with a per-row weight scale
0.94-0.98 at M = 2048 (1.02-1.11 at 4096, where it is not taken).

Needs ``triton.experimental.gluon`` with Hopper TMA, ``warpgroup_mma`` and
``warp_specialize`` (Triton 3.5/3.6 API) and an sm_90 GPU; :func:`available` says
whether it can be used and ``triton_gemm.fp4_gemm`` falls back otherwise. No vLLM
imports; nothing here runs under ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import functools

import torch

from vllm_fouroversix.kernels.device import INTERPRET, capability, pdl_launch
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.nvfp4 import ceil_div

try:  # Gluon is experimental: a Triton without it (or with another API) falls back
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

    _GLUON = hasattr(gl, "warp_specialize")
    _thread_barrier = getattr(gl, "barrier", None) or gl.thread_barrier  # Triton 3.7's name / 3.6's
except Exception:  # noqa: BLE001 - ImportError or an API change inside gluon
    _GLUON = False

__all__ = ["available", "usable", "tiles", "tiles_fill", "tile_rows", "k_splits", "split_plan", "plan",
           "fp4_wgmma_gemm", "BM", "BN", "BK", "TILE_ROWS", "FORCED_TILE_ROWS", "MAX_SPLITS"]

#: Output tile: BN weight rows (two warp groups of 64) x BM activation rows; BK values a K step.
BM, BN, BK = 256, 128, 64
_STAGES = 4
#: Activation rows a tile can have, and a tile's time relative to 256 rows (run 38b, H100, K = 4096 and 14336:
#: a CTA's time hardly depends on how many run beside it; 128 rows 0.71-0.86, 64 rows 0.59-0.64 of 256's,
#: the MMA shrinking with the tile while the weight decode stays).
_TILE_COST = {256: 1.0, 128: 0.8, 64: 0.6}
TILE_ROWS = tuple(_TILE_COST)  # largest first: tile_rows breaks ties toward it
#: activation rows a tile the kernel takes when a config asks for them: TILE_ROWS, and split_plan's 32
FORCED_TILE_ROWS = TILE_ROWS + (32,)
_TBM = 0  # experiments: plan() uses tiles of this many activation rows (64, 128, 256) in one launch
#: K splits over CTAs at most (:func:`split_plan`; run 40a: 8 was never the fastest)
MAX_SPLITS = 4
_SPLIT = True  # plan(): a second launch of 128-row tiles for a partly empty last wave (off: experiments;
# triton_gemm.select_config caches its choices: clear triton_gemm._select after changing it)


def available(device: torch.device) -> bool:
    """Gluon with Hopper TMA/wgmma/warp specialization is importable, not interpreting, and
    the device is sm_90 (wgmma exists on Hopper only)."""
    return _GLUON and not INTERPRET and capability(device)[0] == 9


def usable(a: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor) -> bool:
    """The operands are what TMA and the kernel's loads take: bf16 activations with 16-byte
    aligned rows, K a multiple of 64, contiguous weight codes and scales (4-byte scale words)."""
    K = a.shape[1]
    return (a.dtype == torch.bfloat16 and K % BK == 0 and a.stride(1) == 1 and (a.stride(0) * 2) % 16 == 0
            and a.data_ptr() % 16 == 0 and data.is_contiguous() and data.data_ptr() % 16 == 0
            and sbytes.is_contiguous() and sbytes.data_ptr() % 4 == 0)


def tiles(M: int, N: int, tbm: int = BM) -> int:
    """CTAs (128 x ``tbm`` tiles of out^T) of an M x N product."""
    return ceil_div(N, BN) * ceil_div(M, tbm)


def tiles_fill(M: int, N: int, sms: int, tbm: int = BM) -> float:
    """How full the waves of tiles keep the SMs on average (1.0: whole waves)."""
    t = tiles(M, N, tbm)
    return t / (ceil_div(t, sms) * sms)


def tile_rows(M: int, N: int, sms: int) -> int:
    """The activation rows a tile (256, 128 or 64) that take the fewest waves times a tile's time
    (``_TILE_COST``), ties to the larger tile. Fewer rows a tile means more tiles for the same weight
    rows, each decoding its weight again, so smaller tiles pay only where 256-row tiles leave SMs
    idle (run 38b, W4A4 / W4A16 against the 256-row tiles: 4096x4096 M = 256 64 rows 0.59 / 0.64,
    M = 512 128 rows 0.83 / 0.71; 6144x4096 M = 256 128 rows 0.85 / 0.71)."""
    return min(TILE_ROWS, key=lambda tbm: ceil_div(tiles(M, N, tbm), sms) * _TILE_COST[tbm])  # first of equals


def k_splits(tbm: int, K: int, perm: bool) -> int:
    """K halves a CTA works on at once (1 or 2) for tiles of ``tbm`` activation rows and ``K`` values a
    CTA (its share where K is split over CTAs); ``perm``: the operand in the K64 order (W4A4). A 64-row
    tile's warp group spends ~790 cycles a K step where its MMA needs 256 and its decode ~274 issue
    cycles (run 38b): a latency-bound chain (wait for the stage, decode, MMA, wait for it). Two pairs of
    MMA warp groups, each with half of the K steps and its own TMA ring, give an SM twice the chains.
    Run 39a (H100; plain 64-row tiles -> two halves): W4A16 0.80-0.87x the time at M = 136-256 on
    4096x4096 and 4096x14336; W4A4 0.85-0.99x at K = 14336, but 0.96-1.08x at K = 4096 (its decode,
    without byte selection, is shorter); 128-row tiles (3 stages a half to fit, spills) were mixed
    (0.92-1.35x). Run 40a (M = 32-128, K split over CTAs, one half -> two): W4A4 7168 a CTA 0.76 ->
    0.71x the tc tiles' time; W4A16 in 32-row tiles (a shorter MMA, a longer wait) from 2048 a CTA
    (1.12 -> 1.05, 1.01 -> 0.92), but not at 1024 (1.00 -> 1.06); 64-row tiles at 3584 1.30 -> 0.96."""
    if tbm > 64:
        return 1
    return 2 if K >= (6144 if perm else 4096 if tbm == 64 else 2048) else 1


def split_plan(M: int, N: int, K: int, sms: int, perm: bool) -> tuple[int, int] | None:
    """(activation rows a tile, K splits over CTAs) for 16 < M <= 128, or None where the tiles would
    leave the SMs idle (the CTAs' last wave under 70% full, e.g. N = 1024: 8 tiles a row block) or,
    for a natural-order operand (not ``perm``: W4A16), where 32-row tiles get fewer than 3072 values
    of K a CTA.

    Tiles of 32 rows up to M = 32, 64 up to 64, then :func:`tile_rows`' (64 or 128); K split in the
    most parts (at most ``MAX_SPLITS``, at least 8 K steps each) that keep the CTAs in one wave.
    Run 40a (H100, rotating weights; against the split-K tensor-core tiles selected before): M = 32
    W4A4 0.81-0.91x the time, W4A16 0.91-1.05x; M = 64 0.66-0.90x / 0.75-0.97x; M = 128 0.68-0.81x /
    0.75-0.86x (4096x4096, 6144x4096, 4096x14336, 28672x4096). At M = 16 it was not faster (W4A16
    1.09-1.27x, W4A4 0.92-1.13x): the 16x64x256 tiles stay there. Splits beyond one wave were slower
    (6144x4096 M = 64 four splits, 192 CTAs: 1.07 vs 0.84x with two). Run 40b (the backend's linear):
    W4A16 at M = 17-32 in 32-row tiles 1.02-1.07x on 4096x4096 (1024 a CTA) and 6144x4096 (2048), but
    0.85-0.92x on 4096x14336 (3584) and 28672x4096 (4096); W4A4 0.77-0.92x on all four. Above M = 128
    splits did not pay even where the tiles leave SMs idle (run 41a, M = 136-256: 2 splits 1.05-1.49x
    the time of one, 4 splits 1.07-1.78x)."""
    tbm = 32 if M <= 32 else 64 if M <= 64 else tile_rows(M, N, sms)
    t, nk = tiles(M, N, tbm), K // BK
    s = 1
    while s * 2 <= MAX_SPLITS and t * s * 2 <= sms and nk // (s * 2) >= 8:
        s *= 2
    ctas = t * s
    if ctas / (ceil_div(ctas, sms) * sms) < 0.7 or (tbm == 32 and not perm and K // s < 3072):
        return None
    return tbm, s


def _pair_decode_asm() -> str:
    """PTX: $4 = 4 packed bytes, $5..$8 = each byte's bf16x2 multiplier (s * 2^118, twice).
    $i = the bf16x2 (low nibble, high nibble) of byte i times its multiplier, q * s * 2^-8.

    A code is placed as sign -> bit 15, magnitude -> bits 6..8 of a bf16 (value q * 2^-126,
    the e = 0 codes as subnormals), as triton_gemm's decode does: the low nibbles (``lo``)
    and the high nibbles (``hi``) are masked once a word, one prmt picks byte i of ``lo``
    into the low half and byte i of ``hi`` into the high half (selector 8: the sign of a
    byte below 0x80, a zero byte), and the nibble times 2^6 + 2^12, masked, is the bf16x2
    (run 22: 19 instructions a word instead of 25).
    """
    lines = ["{", ".reg .b32 lo, hi, t, a, nz;", "mov.b32 nz, 0x80008000;",
             "and.b32 lo, $4, 0x0F0F0F0F;", "shr.b32 hi, $4, 4;", "and.b32 hi, hi, 0x0F0F0F0F;"]
    for i in range(4):
        sel = i | (8 << 4) | ((4 + i) << 8) | (8 << 12)
        lines += [f"prmt.b32 t, lo, hi, {hex(sel)};", "mul.lo.u32 a, t, 4160;", "and.b32 a, a, 0x81C081C0;",
                  f"fma.rn.bf16x2 ${i}, a, ${5 + i}, nz;"]
    return "\n" + "\n".join(lines + ["}"]) + "\n"


# PTX: four int32 words ($1..$4) and a prmt selector ($5: byte c of each operand) -> the 4 bytes
# c of the words, packed. Lets a thread read its rows' words with 16-byte loads and keep the
# bytes of its lane (c = lane % 4), instead of 16 one-byte loads and their packing.
_SELECT_PTX = """
{
.reg .b32 t0, t1;
prmt.b32 t0, $1, $2, $5;
prmt.b32 t1, $3, $4, $5;
prmt.b32 $0, t0, t1, 0x5410;
}
"""

if _GLUON:
    try:  # an installed Gluon whose API differs from 3.5/3.6's must not break the import
        from vllm_fouroversix.kernels.gluon_gemm import scaled_epilogue
        from vllm_fouroversix.kernels.triton_gemm import _DECODE_SCALED_PTX, _LOCK_SIZE, _SCALE_PTX, _locks

        _DEC = gl.constexpr(_pair_decode_asm())
        _DEC_WORD = gl.constexpr(_DECODE_SCALED_PTX)
        _SCALE = gl.constexpr(_SCALE_PTX)
        _SELECT = gl.constexpr(_SELECT_PTX)
        _BK = gl.constexpr(BK)
        # registers of each MMA warp group with two K halves (20 warps: 4 x 128 + 32 threads of 65536 / 640 = 102;
        # 64-row tiles compile without spills at 96, sm_90, run 38f)
        _KS_REGS = gl.constexpr(96)

        @gluon.constexpr_function
        def _byte_layout():
            # weight bytes [64, 32] of one K step for one warp group: thread (g = lane / 4,
            # c = lane % 4) of warp w holds bytes c + 4r (r = 0..7) of rows 16w + g and
            # 16w + g + 8, i.e. the m16n8k16 A fragment's (k, k + 1) pairs, one byte a pair.
            return gl.DistributedLinearLayout(
                [[8, 0], [0, 4], [0, 8], [0, 16]], [[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
                [[16, 0], [32, 0]], [], [64, 32])

        @gluon.constexpr_function
        def _block_layout():
            # the same bytes as [64, 4 (16-value block), 8]
            return gl.DistributedLinearLayout(
                [[8, 0, 0], [0, 0, 4], [0, 1, 0], [0, 2, 0]], [[0, 0, 1], [0, 0, 2], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
                [[16, 0, 0], [32, 0, 0]], [], [64, 4, 8])

        @gluon.constexpr_function
        def _word_layout():
            # the same bytes as 32-bit words [64, 8 (word), 4 (byte c = lane % 4)]: each lane
            # loads all 8 words of its two rows (16-byte loads, shared by the lanes of a quad)
            return gl.DistributedLinearLayout(
                [[8, 0, 0], [0, 1, 0], [0, 2, 0], [0, 4, 0]], [[0, 0, 1], [0, 0, 2], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
                [[16, 0, 0], [32, 0, 0]], [], [64, 8, 4])

        @gluon.constexpr_function
        def _perm_layout():
            # K-permuted operand (PERM, see kernels/k64_order.py): weight words [64, 4 (c), 2 (w)] of one K
            # step: thread (g, c) of warp q holds words 2c, 2c + 1 (bytes 8c..8c + 7, all of block c)
            # of rows 16q + g and 16q + g + 8: one 8-byte load a row, no byte selection
            return gl.DistributedLinearLayout(
                [[0, 0, 1], [8, 0, 0]], [[0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
                [[16, 0, 0], [32, 0, 0]], [], [64, 4, 2])

        @gluon.jit
        def _load_words_perm(w_stage, LP3: gl.constexpr):
            """A stage's weight bytes as int32 words [64, 4, 2] in LP3 (PERM)."""
            words = w_stage._reinterpret(gl.int32, [64, 8], gl.NVMMASharedLayout(
                swizzle_byte_width=w_stage.type.layout.swizzle_byte_width, element_bitwidth=32, rank=2))
            LW2: gl.constexpr = gl.DistributedLinearLayout(
                [[0, 1], [8, 0]], [[0, 2], [0, 4], [1, 0], [2, 0], [4, 0]], [[16, 0], [32, 0]], [], [64, 8])
            return gl.convert_layout(gl.reshape(words.load(LW2), [64, 4, 2]), LP3, assert_trivial=True)

        @gluon.jit
        def _decode_perm(ww, sw, sel, LP3: gl.constexpr, LA: gl.constexpr):
            """PERM: weight words ww [64, 4, 2] and scale words sw [64] -> the A operand [64, 64]
            (q * s * 2^-8) in the K order of kernels/k64_order.py. A thread's 8 bytes of a row are all
            in block c: one multiplier a row (sel [1, 4]: byte c of the scale word, twice)."""
            s = gl.inline_asm_elementwise(_SCALE, "=r,r,r", [gl.expand_dims(sw, 1) + gl.zeros_like(sel),
                                                             sel + 0 * gl.expand_dims(sw, 1)],
                                          dtype=gl.int32, is_pure=True, pack=1)  # [64, 4] bf16x2 (m, m)
            s = gl.expand_dims(s, 2) + gl.zeros_like(ww)
            # out o = (byte 0, byte 1) low nibbles, (2, 3) low, (0, 1) high, (2, 3) high of a word
            d0, d1, d2, d3 = gl.inline_asm_elementwise(_DEC_WORD, "=r,=r,=r,=r,r,r", [ww, s],
                                                       dtype=(gl.int32, gl.int32, gl.int32, gl.int32),
                                                       is_pure=True, pack=1)
            p0 = _halves(d0)
            p1 = _halves(d1)
            p2 = _halves(d2)
            p3 = _halves(d3)
            # [64, c, w, e, ol, oh]: o = 2 oh + ol; logical k = 32w + 16oh + 8ol + 2c + e
            t = gl.join(gl.join(p0, p1), gl.join(p2, p3))
            a = gl.reshape(gl.permute(t, [0, 2, 5, 4, 1, 3]), [64, 64])
            return gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2),
                                     assert_trivial=True)

        @gluon.jit
        def _halves(d):
            """int32 (bf16x2) [..] -> bf16 [.., 2] (low half, high half)."""
            lo = (d & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
            hi = (d >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
            return gl.join(lo, hi)

        @gluon.jit
        def _load_bytes(w_stage, bsel, LW: gl.constexpr, LWW3: gl.constexpr):
            """A stage's weight bytes [64, 32] in LW: 16-byte loads of words, then each lane's bytes."""
            words = w_stage._reinterpret(gl.int32, [64, 8], gl.NVMMASharedLayout(
                swizzle_byte_width=w_stage.type.layout.swizzle_byte_width, element_bitwidth=32, rank=2))
            words = gl.expand_dims(words.load(gl.SliceLayout(2, LWW3)), 2) + gl.zeros_like(bsel)
            b = gl.inline_asm_elementwise(_SELECT, "=r,r,r,r,r,r,r,r,r", [words, bsel + 0 * words],
                                          dtype=gl.uint8, is_pure=True, pack=4)
            return gl.convert_layout(gl.reshape(b, [64, 32]), LW, assert_trivial=True)

        @gluon.jit
        def _decode(wb, sw, sel, LW: gl.constexpr, LW3: gl.constexpr, LA: gl.constexpr):
            """Weight bytes wb [64, 32] and scale words sw [64] (4 blocks a row) -> the A operand
            [64, 64] (q * s * 2^-8); sel [1, 4]: the prmt selectors of the 4 blocks."""
            s = gl.inline_asm_elementwise(_SCALE, "=r,r,r", [gl.expand_dims(sw, 1) + gl.zeros_like(sel), sel + 0 * gl.expand_dims(sw, 1)],
                                          dtype=gl.int32, is_pure=True, pack=1)  # [64, 4] bf16x2 (m, m)
            s = gl.convert_layout(gl.reshape(gl.expand_dims(s, 2) + gl.zeros([64, 4, 8], gl.int32, LW3), [64, 32]),
                                  LW, assert_trivial=True)
            d = gl.inline_asm_elementwise(_DEC, "=r,=r,=r,=r,r,r,r,r,r", [wb, s], dtype=gl.int32, is_pure=True, pack=4)
            a = gl.reshape(_halves(d), [64, 64])  # byte b's pair -> k = 2b, 2b + 1
            return gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2),
                                     assert_trivial=True)

        @gluon.jit
        def _loader(x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, kb, nk,
                    STAGES: gl.constexpr, PDL: gl.constexpr, TRIGGER: gl.constexpr, KSPLIT: gl.constexpr):
            # KSPLIT rings of STAGES stages: ring h (stages h * STAGES..) takes K steps h * nkh.. of half h
            nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes
            nkh = (nk + KSPLIT - 1) // KSPLIT
            first = 0
            if PDL:
                # A programmatic dependent of the quantizer: the first stages' weight tiles do not
                # depend on it and are requested before waiting for it (the rings start empty).
                first = gl.minimum(nkh, STAGES)
                for i in range(first):
                    for h in gl.static_range(KSPLIT):
                        k = h * nkh + i
                        if k < nk:
                            b = h * STAGES + i
                            mbarrier.expect(ready.index(b), nbytes)
                            tma.async_copy_global_to_shared(w_desc, [n0, (kb + k) * (_BK // 2)], ready.index(b),
                                                            w0_smem.index(b))
                            tma.async_copy_global_to_shared(w_desc, [n0 + 64, (kb + k) * (_BK // 2)], ready.index(b),
                                                            w1_smem.index(b))
                gdc_wait()
                if TRIGGER:
                    # The plan's second launch may start now that the quantizer is done (one thread
                    # triggers for its CTA). It reads the activations without waiting for this launch.
                    gdc_launch_dependents()
                for i in range(first):
                    for h in gl.static_range(KSPLIT):
                        k = h * nkh + i
                        if k < nk:
                            tma.async_copy_global_to_shared(x_desc, [m0, (kb + k) * _BK], ready.index(h * STAGES + i),
                                                            x_smem.index(h * STAGES + i))
            for i in range(first, nkh):
                for h in gl.static_range(KSPLIT):
                    k = h * nkh + i
                    if k < nk:
                        b = h * STAGES + i % STAGES
                        mbarrier.wait(empty.index(b), ((i // STAGES) & 1) ^ 1)  # both MMA groups released it
                        mbarrier.expect(ready.index(b), nbytes)
                        tma.async_copy_global_to_shared(x_desc, [m0, (kb + k) * _BK], ready.index(b), x_smem.index(b))
                        tma.async_copy_global_to_shared(w_desc, [n0, (kb + k) * (_BK // 2)], ready.index(b),
                                                        w0_smem.index(b))
                        tma.async_copy_global_to_shared(w_desc, [n0 + 64, (kb + k) * (_BK // 2)], ready.index(b),
                                                        w1_smem.index(b))

        @gluon.jit
        def _mma_group(x_smem, w_smem, ready, empty, red, red_bar, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                       part_ptr, lock_ptr, M, N, nk, stride_s, stride_om, stride_ga, n0, m0, TBM: gl.constexpr,
                       STAGES: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
                       PDL: gl.constexpr, CHAINED: gl.constexpr, PERM: gl.constexpr, KSPLIT: gl.constexpr,
                       H: gl.constexpr, SPLITS: gl.constexpr):
            """One warp group: out rows m0.. (TBM) x weight rows n0..n0+63, the K steps of half H of
            KSPLIT. With two halves, half 1 hands its sum to half 0 through ``red`` (shared memory, one
            arrival on ``red_bar``), which adds it (half 0 + half 1, a fixed order) and runs the epilogue.
            With K split over SPLITS CTAs (``part_ptr``: fp32 [SPLITS, N, M]; ``lock_ptr``: a counter a
            64-row slab of a tile), the CTA's sum goes to its partial instead, and the last CTA runs the
            epilogue on the sum of all partials in split order."""
            LA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, TBM, 16])
            LW: gl.constexpr = _byte_layout()
            LW3: gl.constexpr = _block_layout()
            LP3: gl.constexpr = _perm_layout()
            if PERM:
                LS: gl.constexpr = gl.SliceLayout(2, LP3)
            else:
                LS: gl.constexpr = gl.SliceLayout(2, LW3)
            LWW3: gl.constexpr = _word_layout()
            bc = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, LWW3)))
            bsel = gl.expand_dims(gl.expand_dims(bc, 0), 1) * 0x11 + 0x40  # [1, 1, 4]: byte c of both operands
            # the 4 scale bytes of a row and K step as one int32 word, split in registers (PERM: a
            # thread takes byte c only)
            sn = gl.arange(0, 64, layout=gl.SliceLayout(1, LS))
            sel = gl.expand_dims(gl.arange(0, 4, layout=gl.SliceLayout(0, LS)), 0) * 0x101 + 0x4040  # byte j, twice
            s_in = (n0 + sn) < N
            nkh = (nk + KSPLIT - 1) // KSPLIT
            cnt = gl.minimum(nk - H * nkh, nkh)  # this half's K steps (the last half may have fewer)
            s_words = (s_ptr.to(gl.pointer_type(gl.int32), bitcast=True) + (n0 + sn).to(gl.int64) * (stride_s // 4)
                       + H * nkh)
            sw = gl.load(s_words, mask=s_in & (cnt > 0), other=0)
            acc = gl.zeros([64, TBM], gl.float32, LA)
            for i in range(cnt):
                st = H * STAGES + i % STAGES
                mbarrier.wait(ready.index(st), (i // STAGES) & 1)
                if PERM:
                    a = _decode_perm(_load_words_perm(w_smem.index(st), LP3), sw, sel, LP3, LA)
                else:
                    wb = _load_bytes(w_smem.index(st), bsel, LW, LWW3)
                    a = _decode(wb, sw, sel, LW, LW3, LA)
                sw = gl.load(s_words + (i + 1), mask=s_in & (i + 1 < cnt), other=0)  # next step's scales
                acc = warpgroup_mma(a, x_smem.index(st).permute((1, 0)), acc, is_async=True)
                # this group's MMA completes before the next decode reuses registers (see the module doc)
                acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
                mbarrier.arrive(empty.index(st))
            if H == 1:
                red.store(acc)
                _thread_barrier()  # the whole warp group's part is stored before the one arrival
                mbarrier.arrive(red_bar)
            else:
                if KSPLIT == 2:
                    mbarrier.wait(red_bar, 0)
                    acc = acc + red.load(LA)
                if SPLITS == 1:
                    _epilogue(acc, ga_ptr, gw_ptr, bias_ptr, out_ptr, M, N, stride_om, stride_ga, n0, m0, LA, TBM,
                              GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED)
                else:
                    # K split over SPLITS CTAs: each stores its sum (fp32, [split, n, m]); the last of a tile's
                    # CTAs to count adds them in split order and runs the epilogue (triton_gemm._split_k_fixup)
                    pn = n0 + gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(1, LA)), 1)
                    pm = m0 + gl.expand_dims(gl.arange(0, TBM, layout=gl.SliceLayout(0, LA)), 0)
                    pmask = (pn < N) & (pm < M)
                    poffs = pn.to(gl.int64) * M + pm
                    MN = M.to(gl.int64) * N
                    gl.store(part_ptr + gl.program_id(2) * MN + poffs, acc, mask=pmask)
                    _thread_barrier()
                    tile = (gl.program_id(1) * gl.num_programs(0) * 2) + n0 // 64
                    arrived = gl.atomic_add(lock_ptr + tile, 1, sem="acq_rel")  # CTAs of this tile before this one
                    if arrived == SPLITS - 1:
                        total = _sum_partials(part_ptr, poffs, pmask, MN, SPLITS, KSPLIT == 1 and TBM <= 64)
                        _epilogue(total, ga_ptr, gw_ptr, bias_ptr, out_ptr, M, N, stride_om, stride_ga, n0, m0, LA,
                                  TBM, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED)
                        gl.store(lock_ptr + tile, 0)

        @gluon.jit
        def _sum_partials(part_ptr, offs, mask, MN, SPLITS: gl.constexpr, UNROLL: gl.constexpr):
            # the SPLITS partials at offs, added in split order (L2 loads: other CTAs wrote them)
            total = gl.load(part_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
            if UNROLL:  # all loads in flight at once
                for k in gl.static_range(1, SPLITS):
                    total += gl.load(part_ptr + k * MN + offs, mask=mask, other=0.0, cache_modifier=".cg")
            else:  # one at a time: unrolled, 4 partials spill (64 rows with two K halves' 96 registers, 128 rows)
                for k in range(1, SPLITS):
                    total += gl.load(part_ptr + k * MN + offs, mask=mask, other=0.0, cache_modifier=".cg")
            return total

        @gluon.jit
        def _epilogue(acc, ga_ptr, gw_ptr, bias_ptr, out_ptr, M, N, stride_om, stride_ga, n0, m0,
                      LA: gl.constexpr, TBM: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr,
                      HAS_BIAS: gl.constexpr, PDL: gl.constexpr, CHAINED: gl.constexpr):
            # Epilogue: the decoded weight was q * s * 2^-8, so acc * 256 is the exact sum;
            # then (acc * (ga * gw)) + bias in FP32 as triton_prefill.scaled_output.
            on = n0 + gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(1, LA)), 1)
            if PDL or (CHAINED and HAS_GA):
                # the activation scales come from the quantizer (long done by now); the plan's second
                # launch (CHAINED) waits for the first, which waited for the quantizer
                gdc_wait()
            if HAS_GA:
                # the TBM activation scales loaded once (1-2 loads a thread), then moved to acc's
                # column layout: loading them in that layout takes 64 loads a thread and spills
                # with a bias and per-channel weight scales (runs 19c, 20a)
                if TBM >= 128:
                    LG: gl.constexpr = gl.BlockedLayout([TBM // 128], [32], [4], [0])
                else:  # 64 scales on 128 threads: each loaded twice
                    LG: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
                mg = m0 + gl.arange(0, TBM, layout=LG)
                ga = gl.load(ga_ptr + mg * stride_ga, mask=mg < M, other=0.0)
                ga = gl.expand_dims(gl.convert_layout(ga, gl.SliceLayout(0, LA)), 0)
            else:
                ga = acc  # unused
            res = scaled_epilogue(acc * 256.0, on, ga, N, gw_ptr, bias_ptr, GW_VEC, HAS_GA, HAS_BIAS)
            # out^T tile -> out [m, n]: through shared memory into 16-byte row stores
            LO: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
            res = gl.convert_layout(gl.permute(res.to(out_ptr.dtype.element_ty), (1, 0)), LO)
            om2 = m0 + gl.expand_dims(gl.arange(0, TBM, layout=gl.SliceLayout(1, LO)), 1)
            on2 = n0 + gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(0, LO)), 0)
            gl.store(out_ptr + om2.to(gl.int64) * stride_om + on2, res, mask=(om2 < M) & (on2 < N))

        @gluon.jit
        def _fp4_wgmma_gemm_kernel(
            x_desc, w_desc, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
            M, N, K, stride_s, stride_om, stride_ga,
            TBM: gl.constexpr, STAGES: gl.constexpr,
            GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
            PDL: gl.constexpr = False, TRIGGER: gl.constexpr = False, CHAINED: gl.constexpr = False,
            PERM: gl.constexpr = False, KSPLIT: gl.constexpr = 1, SPLITS: gl.constexpr = 1, part_ptr=None,
            lock_ptr=None,
        ):
            if TRIGGER and not PDL:
                # W4A16: the plan's second launch (a programmatic dependent, CHAINED) may start at once
                # and takes the SMs as this launch's CTAs finish (run 24k: 1-2.5% faster at M = 1024)
                gdc_launch_dependents()
            n0 = gl.program_id(0) * 128
            m0 = gl.program_id(1) * TBM
            nk = K // _BK
            kb = 0
            if SPLITS > 1:  # this CTA's K steps: kb..kb + nk
                nks = (nk + SPLITS - 1) // SPLITS
                kb = gl.program_id(2) * nks
                nk = gl.minimum(nk - kb, nks)
                s_ptr = s_ptr + kb * (_BK // 16)  # the scale bytes of K step kb
            NB: gl.constexpr = KSPLIT * STAGES  # a ring of STAGES a K half
            x_smem = gl.allocate_shared_memory(gl.bfloat16, [NB, TBM, _BK], x_desc.layout)
            w0_smem = gl.allocate_shared_memory(gl.uint8, [NB, 64, _BK // 2], w_desc.layout)
            w1_smem = gl.allocate_shared_memory(gl.uint8, [NB, 64, _BK // 2], w_desc.layout)
            ready = gl.allocate_shared_memory(gl.int64, [NB, 1], mbarrier.MBarrierLayout())
            empty = gl.allocate_shared_memory(gl.int64, [NB, 1], mbarrier.MBarrierLayout())
            for s in gl.static_range(NB):
                mbarrier.init(ready.index(s), count=1)
                mbarrier.init(empty.index(s), count=2)  # one arrival from each MMA warp group of its half
            if KSPLIT == 1:
                # (red, red_bar: unused with one K half)
                gl.warp_specialize([
                    (_mma_group, (x_smem, w0_smem, ready, empty, ready, ready.index(0), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 1, 0, SPLITS)),
                    (_mma_group, (x_smem, w1_smem, ready, empty, ready, ready.index(0), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0 + 64, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 1, 0, SPLITS)),
                    (_loader, (x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, kb, nk, STAGES,
                               PDL, TRIGGER, 1)),
                ], [4, 1], [232, 40])
            else:
                # two K halves: four MMA warp groups, (weight rows r, half h); 20 warps share the registers
                red_l: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0])
                red0 = gl.allocate_shared_memory(gl.float32, [64, TBM], red_l)
                red1 = gl.allocate_shared_memory(gl.float32, [64, TBM], red_l)
                red_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
                for r in gl.static_range(2):
                    mbarrier.init(red_bar.index(r), count=1)
                gl.warp_specialize([
                    (_mma_group, (x_smem, w0_smem, ready, empty, red0, red_bar.index(0), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 2, 0, SPLITS)),
                    (_mma_group, (x_smem, w1_smem, ready, empty, red1, red_bar.index(1), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0 + 64, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 2, 0, SPLITS)),
                    (_mma_group, (x_smem, w0_smem, ready, empty, red0, red_bar.index(0), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 2, 1, SPLITS)),
                    (_mma_group, (x_smem, w1_smem, ready, empty, red1, red_bar.index(1), s_ptr, gw_ptr, ga_ptr,
                                  bias_ptr, out_ptr, part_ptr, lock_ptr, M, N, nk, stride_s, stride_om,
                                  stride_ga, n0 + 64, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, PDL, CHAINED,
                                  PERM, 2, 1, SPLITS)),
                    (_loader, (x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, kb, nk, STAGES,
                               PDL, TRIGGER, 2)),
                ], [4, 4, 4, 1], [_KS_REGS, _KS_REGS, _KS_REGS, 40])

        _WGMMA = FastKernel(_fp4_wgmma_gemm_kernel)  # Triton's per-call launch Python skipped (kernels/launch.py)
    except Exception:  # noqa: BLE001
        _GLUON = False


def plan(M: int, N: int, sms: int, tbm: int | None = None) -> list[tuple[int, int, int]]:
    """The launches of an M x N product: (first weight row, end row, activation rows a tile).

    ``tbm``: the activation rows a tile (default :func:`tile_rows`). One launch of 128 x ``tbm``
    tiles, except for 256-row tiles that take more than one wave and leave the last one less than
    85% full (e.g. 6144x4096 at M = 1024: 192 tiles on 132 SMs, the second wave 45% full): then
    the rows that make whole waves of 256-row tiles, and the rest with 128-row tiles (less
    efficient, but in a wave of their own that is full)."""
    tbm = _TBM or tbm or tile_rows(M, N, sms)
    if tbm != BM:
        return [(0, N, tbm)]
    t = tiles(M, N)
    if not _SPLIT or t <= sms or tiles_fill(M, N, sms) >= 0.85:
        return [(0, N, BM)]
    m_tiles = ceil_div(M, BM)
    n1 = (t // sms) * sms // m_tiles * BN  # weight rows of the whole waves
    rest = ceil_div(N - n1, BN) * ceil_div(M, BM // 2)
    if n1 <= 0 or n1 >= N or rest > sms:
        return [(0, N, BM)]
    return [(0, n1, BM), (n1, N, BM // 2)]


@functools.lru_cache(maxsize=None)
def _x_layout(tbm: int):
    return gl.NVMMASharedLayout.get_default_for([tbm, BK], gl.bfloat16)


def _weight_desc(data: torch.Tensor, n0: int, n1: int):
    """The TMA descriptor of weight rows n0..n1, made once a layer (host time a call,
    docs/hopper.md) and kept on the weight tensor itself, so that it goes with the weight
    (the reference cycle is the GC's); keyed by everything a descriptor holds."""
    key = (data.data_ptr(), tuple(data.shape), tuple(data.stride()), n0, n1)
    descs = getattr(data, "_fouroversix_tma", None)
    if descs is None:
        descs = {}
        data._fouroversix_tma = descs
    d = descs.get(key)
    if d is None:
        if len(descs) > 16:  # the same tensor reshaped or moved many times: start over
            descs.clear()
        d = descs[key] = TensorDescriptor.from_tensor(
            data[n0:n1], [64, BK // 2], gl.NVMMASharedLayout.get_default_for([64, BK // 2], gl.uint8))
    return d


def fp4_wgmma_gemm(a: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor, gw: torch.Tensor,
                   ga: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, stride_ga: int, flags: dict,
                   sms: int = 132, pdl: bool = False, chain: bool = False, perm: bool = False,
                   tbm: int | None = None, ksplit: int | None = None, splits: int = 1) -> torch.Tensor:
    """``out`` [M, N] = bf16 ``a`` [M, K] x the NVFP4 weight (``data`` [N, K/2], ``sbytes``
    [N, K/16] uint8), with the epilogue operands as ``triton_prefill.epilogue_args`` returns
    them; one or two launches (:func:`plan` for ``sms`` SMs and ``tbm`` activation rows a tile).
    The operands must pass :func:`usable`.
    ``pdl``: the first launch is a programmatic dependent of the kernel before it (sm_90; see
    ``triton_gemm.fp4_gemm``): it requests its first weight tiles, then waits for that kernel.
    ``chain``: a second launch is a programmatic dependent of the first, which lets it start once it
    no longer waits for the kernel before it (at once for W4A16): its CTAs take the SMs as the
    first launch's finish, instead of after the whole first launch (run 24k: 6144x4096 at M = 1024
    W4A16 86.8 -> 85.8 us, W4A4 93.6 -> 92.0 us).
    ``ksplit``: K halves a CTA (default :func:`k_splits`; 2 only with tiles of <= 64 rows).
    ``splits``: the K steps split over this many CTAs (one launch; :func:`split_plan`): each stores its
    fp32 sum, and the last of a tile's CTAs to finish adds them in split order (the result does not
    depend on which finishes last) and runs the epilogue."""
    M, K = a.shape
    N = data.shape[0]
    if not _GLUON or not usable(a, data, sbytes):
        raise ValueError(f"fp4_wgmma_gemm cannot take M={M}, K={K}, {a.dtype} with these strides/alignments")
    launches = plan(M, N, sms, tbm)
    extra = {}
    if splits > 1:  # K split over CTAs (one launch): fp32 partials and the split-K tile counters
        nk = K // BK
        if (len(launches) != 1 or tiles(M, N, launches[0][2]) * 2 > _LOCK_SIZE
                or (splits - 1) * ceil_div(nk, splits) >= nk):
            raise ValueError(f"fp4_wgmma_gemm: splits={splits} needs one launch of at most {_LOCK_SIZE // 2} tiles "
                             f"and a K step for every split (K={K}: {nk} steps)")
        extra = dict(SPLITS=splits, part_ptr=torch.empty(splits * M * N, dtype=torch.float32, device=a.device),
                     lock_ptr=_locks(a.device))
    for j, (n0, n1, tbm) in enumerate(launches):
        ks = ksplit or k_splits(tbm, K // splits, perm)  # the K steps of one CTA
        if ks not in (1, 2) or (ks == 2 and tbm > 64):
            raise ValueError(f"fp4_wgmma_gemm: ksplit={ks} with {tbm}-row tiles (two K halves: tiles of <= 64 rows)")
        x_desc = TensorDescriptor.from_tensor(a, [tbm, BK], _x_layout(tbm))
        w_desc = _weight_desc(data, n0, n1)
        gw_p = gw[n0:n1] if flags["GW_VEC"] else gw
        bias_p = bias[n0:n1] if flags["HAS_BIAS"] else bias
        _WGMMA[(ceil_div(n1 - n0, BN), ceil_div(M, tbm), splits)](
            x_desc, w_desc, sbytes[n0:n1], gw_p, ga, bias_p, out[:, n0:n1], M, n1 - n0, K, sbytes.stride(0),
            out.stride(0), stride_ga, TBM=tbm, STAGES=_STAGES, PERM=perm, KSPLIT=ks, **flags, **extra,
            num_warps=4, **pdl_launch(pdl and j == 0),
            **({"TRIGGER": True} if chain and j + 1 < len(launches) else {}),
            **pdl_launch(chain and j > 0, "CHAINED"))
    return out
