"""4/6 NVFP4 activation quantizer for Blackwell, CuTe DSL (SPEC section 2).

In:  x [M, K] bf16/fp16, row-major (K % 16 == 0).
Out: packed E2M1 codes [M, K_pad/2] (K_pad = K rounded up to 32, the GEMM's TMA
     pitch; the extra 16 columns are zero), E4M3 block scales written straight
     into the 128x4 swizzled layout of SPEC section 3 (``layout.swizzled_offset``),
     and the FP32 global decode scale(s) amax / (M*S).

One CTA per row (``THREADS`` threads, one thread per 16-element block, striding).
Modes (``amax_mode``):

- ``"token"``: per-token scales in ONE launch. Pass 1: each thread takes max|x|
  over its blocks, a warp shuffle reduction and a shared-memory reduction over
  the warps give the row amax. Pass 2 re-reads the row (L1/L2-resident: a
  14336-wide bf16 row is 28 KiB) and quantizes it. g[row] = amax / (M*S).
- ``"given"``: the amax is read from device memory (``amax_ptr[0]``): the
  static calibrated scale (one launch), or per-tensor dynamic scaling, where the
  caller computes amax = max|x| first (``torch.amax``: two launches in all).
  CTA 0 writes g[0] = amax / (M*S).

The block math is ``quant_math.quantize_block``, the very function the CPU tests
check bit for bit against ``vllm_fouroversix.nvfp4``; this file supplies its
primitives as PTX:

- E4M3 rounding (RNE, saturating at 448): ``cvt.rn.satfinite.e4m3x2.f32``, and
  its exact decode ``cvt.rn.f16x2.e4m3x2`` + ``cvt.f32.f16``.
- E2M1 rounding of |y| (RNE on the E2M1 grid, saturating at 6):
  ``cvt.rn.satfinite.e2m1x2.f32``, 4 of them per 32-bit word; the word is
  already in the SPEC packing order (element 2i in the low nibble).
- The squared error is ``mul.rn.f32`` (PTX never contracts an ``.rn`` multiply
  into an FMA, which would round differently from the SPEC's d*d then +).
- FP32 ``/`` is IEEE division (``div.rn.f32``; the tests assert the PTX holds no
  ``div.approx``/``div.full``).
"""

from __future__ import annotations

import cuda.bindings.driver as cuda

import cutlass
import cutlass.memory
import cutlass.cute as cute

from cutlass_kernels import layout
from cutlass_kernels.quant_math import BLOCK, quantize_block, row_constants
from vllm_fouroversix import nvfp4

THREADS = 128
AMAX_MODES = ("token", "given")
IN_DTYPES = {"bfloat16": cutlass.BFloat16, "float16": cutlass.Float16}


class DslOps:
    """``quant_math`` primitives on ``cutlass.Float32`` / ``Int32`` scalars."""

    @staticmethod
    def const(v, like):
        return cutlass.Float32(v)

    @staticmethod
    def where(c, a, b):
        t = type(a) if isinstance(a, cutlass.Numeric) else type(b)
        return t(cutlass.select_(c, a, b))

    @staticmethod
    def abs(x):
        return cute.math.abs(x)

    @staticmethod
    def max(a, b):
        return cute.arch.fmax(a, b)

    @staticmethod
    def logical_and(a, b):
        return a & b

    @staticmethod
    def mul_rn(a, b):
        """a*b rounded on its own: ``mul.rn`` is never fused into an FMA."""
        return cute.arch.inline_ptx(
            "mul.rn.f32 {$w0}, {$r0}, {$r1};",
            write_only_types=[cutlass.Float32],
            read_only_args=[cutlass.Float32(a), cutlass.Float32(b)],
        )

    @staticmethod
    def e4m3(s_hp):
        """(byte, float(byte)) of E4M3(s_hp), RNE, saturating (``satfinite``)."""
        word, s = cute.arch.inline_ptx(
            "{\n"
            ".reg .b16 p;\n .reg .b32 h2;\n .reg .b16 lo, hi;\n"
            "cvt.rn.satfinite.e4m3x2.f32 p, {$r1}, {$r0};\n"  # low byte = e4m3(r0)
            "cvt.rn.f16x2.e4m3x2 h2, p;\n"
            "mov.b32 {lo, hi}, h2;\n"
            "cvt.f32.f16 {$w1}, lo;\n"
            "cvt.u32.u16 {$w0}, p;\n"
            "}",
            write_only_types=[cutlass.Int32, cutlass.Float32],
            read_only_args=[cutlass.Float32(s_hp), cutlass.Float32(0.0)],
        )
        return word & 0xFF, s

    @staticmethod
    def e2m1_codes(ys):
        """Magnitude codes (0..7) of 16 non-negative y, via 2 packed words."""
        codes = []
        for w in range(len(ys) // 8):
            y = [cutlass.Float32(v) for v in ys[8 * w : 8 * w + 8]]
            word = cute.arch.inline_ptx(
                "{\n .reg .b8 b0, b1, b2, b3;\n"
                "cvt.rn.satfinite.e2m1x2.f32 b0, {$r1}, {$r0};\n"
                "cvt.rn.satfinite.e2m1x2.f32 b1, {$r3}, {$r2};\n"
                "cvt.rn.satfinite.e2m1x2.f32 b2, {$r5}, {$r4};\n"
                "cvt.rn.satfinite.e2m1x2.f32 b3, {$r7}, {$r6};\n"
                "mov.b32 {$w0}, {b0, b1, b2, b3};\n}",
                write_only_types=[cutlass.Int32],
                read_only_args=y,
            )
            codes += [(word >> (4 * i)) & 0x7 for i in range(8)]
        return codes

    @staticmethod
    def e2m1_value(code):
        v = cutlass.Float32(code) * 0.5  # codes 0..3: 0, 0.5, 1, 1.5
        v = DslOps.where(code == 4, cutlass.Float32(2.0), v)
        v = DslOps.where(code == 5, cutlass.Float32(3.0), v)
        v = DslOps.where(code == 6, cutlass.Float32(4.0), v)
        return DslOps.where(code == 7, cutlass.Float32(6.0), v)


class ActQuantizer:
    """One compiled variant: rule, amax mode, input dtype."""

    def __init__(self, rule: str = "mse", amax_mode: str = "token", in_dtype: str = "bfloat16"):
        if amax_mode not in AMAX_MODES:
            raise ValueError(f"amax_mode {amax_mode!r}; expected one of {AMAX_MODES}")
        self.rule = nvfp4.ScaleRule(rule).value
        self.MS = nvfp4.rule_constants(self.rule).MS
        self.amax_mode = amax_mode
        self.in_dtype = IN_DTYPES[in_dtype]

    @cute.jit
    def __call__(
        self,
        x_ptr: cute.Pointer,
        q_ptr: cute.Pointer,
        sf_ptr: cute.Pointer,
        g_ptr: cute.Pointer,
        amax_ptr: cute.Pointer,
        m: cutlass.Int32,
        k: cutlass.Int32,
        stream: cuda.CUstream,
    ):
        # x rows of K elements; codes as 32-bit words, K_pad/8 per row; scales flat.
        k_pad = (k + 31) // 32 * 32
        mX = cute.make_tensor(x_ptr, cute.make_layout((m, cute.assume(k, 16)), stride=(cute.assume(k, 16), 1)))
        mQ = cute.make_tensor(q_ptr, cute.make_layout((m, k_pad // 8), stride=(k_pad // 8, 1)))
        n_sf = layout.swizzled_scale_numel(m, k // BLOCK)
        mSF = cute.make_tensor(sf_ptr, cute.make_layout(n_sf))
        mG = cute.make_tensor(g_ptr, cute.make_layout(m if self.amax_mode == "token" else 1))
        mAmax = cute.make_tensor(amax_ptr, cute.make_layout(1))
        self.kernel(mX, mQ, mSF, mG, mAmax, k).launch(
            grid=(m, 1, 1), block=(THREADS, 1, 1), stream=stream
        )

    @cute.kernel
    def kernel(
        self,
        mX: cute.Tensor,
        mQ: cute.Tensor,
        mSF: cute.Tensor,
        mG: cute.Tensor,
        mAmax: cute.Tensor,
        k: cutlass.Int32,
    ):
        tid, _, _ = cute.arch.thread_idx()
        row, _, _ = cute.arch.block_idx()
        nb = k // BLOCK  # blocks of this row
        nb_words = mQ.shape[1] // 2  # 16-element blocks in the padded row (K_pad / 16)
        nb_cols = (nb + 3) // 4 * 4  # scale columns incl. the swizzle padding

        # ---- the row's (or tensor's) amax
        amax = cutlass.Float32(0.0)
        if cutlass.const_expr(self.amax_mode == "token"):
            part = cutlass.Float32(0.0)
            for b in cutlass.range(tid, nb, THREADS, unroll=1):
                for i in cutlass.range_constexpr(BLOCK):
                    part = cute.arch.fmax(part, cute.math.abs(mX[row, b * BLOCK + i].to(cutlass.Float32)))
            part = cute.arch.warp_reduction(part, cute.arch.fmax)
            red = cutlass.memory.SmemAllocator().allocate_tensor(cutlass.Float32, cute.make_layout(THREADS // 32))
            if cute.arch.lane_idx() == 0:
                red[cute.arch.warp_idx()] = part
            cute.arch.sync_threads()
            amax = red[0]
            for w in cutlass.range_constexpr(1, THREADS // 32):
                amax = cute.arch.fmax(amax, red[w])
            if tid == 0:
                mG[row] = amax / cutlass.Float32(self.MS)
        else:
            amax = mAmax[0]
            if row == 0 and tid == 0:
                mG[0] = amax / cutlass.Float32(self.MS)

        enc, dec = row_constants(amax, self.MS, DslOps)

        # ---- quantize the row's blocks; padding blocks get code 0 and scale 0
        for b in cutlass.range(tid, nb_cols, THREADS, unroll=1):
            sf_at = layout.swizzled_offset(row, b, nb_cols // 4)
            if b < nb:
                xs = [mX[row, b * BLOCK + i].to(cutlass.Float32) for i in range(BLOCK)]
                codes, s_byte = quantize_block(xs, amax, enc, dec, self.rule, DslOps)
                lo = cutlass.Int32(0)
                hi = cutlass.Int32(0)
                for i in cutlass.range_constexpr(8):
                    lo = lo | (codes[i] << (4 * i))
                    hi = hi | (codes[8 + i] << (4 * i))
                mQ[row, 2 * b] = mQ.element_type(lo)
                mQ[row, 2 * b + 1] = mQ.element_type(hi)
                mSF[sf_at] = mSF.element_type(s_byte)
            else:
                mSF[sf_at] = mSF.element_type(0)
                if b < nb_words:
                    mQ[row, 2 * b] = mQ.element_type(0)
                    mQ[row, 2 * b + 1] = mQ.element_type(0)
