"""Small-M NVFP4 GEMM on ``mma.sync`` with the weight decoded straight into the MMA's
A-operand registers (Gluon: Triton with explicit layouts). Used for 2 <= M <= 8.

Triton's tensor-core tiles (``triton_gemm``, kind "tc") decode the weight in a blocked
layout and convert it to the MMA operand layout through shared memory every K step;
here the layouts are written out, so no layout conversion goes through shared memory:

- one CTA owns 16 weight rows; its W warps split K (warp s takes the 128-value K
  tiles s, s + W, ...), each warp holding the [16, 128] tile as one m16n8k16 A
  operand per 16-value K step, and the partial sums meet once at the end;
- each thread loads 16 contiguous weight bytes of its two rows (rows g and g + 8 of
  the MMA fragment) with one 16-byte load a row, decodes them with the same E2M1
  PTX as the Triton kernels and multiplies by the E4M3 block scale (exact in bf16:
  2 x 4 significant bits; with the cp.async ring the scale is folded into the
  decode's fma, q * s * 2^-8, and the sums are multiplied by 2^8: run 22 measured
  that 3-4% faster there and up to 6% slower with plain loads, which keep the
  separate multiply);
- the dot product's K order is permuted, identically for the weight and the
  activations (a sum does not depend on its order of terms up to FP32 rounding):
  logical k = rl + 2t + 8e + 16rh + 64b holds the physical k = 32t + 16b + 4rh +
  2rl + e of the tile (t: the lane's K group, b/rh/rl: its byte, e: the byte's
  nibble), so that the decode's bf16x2 pairs (low nibbles of two adjacent bytes)
  are exactly the operand's register pairs and each thread's activations are
  32 contiguous values (four 16-byte loads).

M <= 8 fits one n8 MMA column block (rows past M are read as zeros). H100, rotating
weights (benchmarks/hopper.md, run 16): 4096x4096 M = 4 10.6 -> 8.2 us, 28672x4096
41.5 -> 32.9 us; M = 1 stays on the GEMV (7.4 vs 8.2 us) and M = 16 on the "tc" tile
(16 MMA columns doubled the activation work: 12.0 vs 10.6 us).

For M <= 4 below N = 16384 the weight and scale bytes come through a ``cp.async`` ring
in shared memory, STAGES - 1 K steps ahead of the MMAs (:func:`mma_plan`): more bytes in
flight a warp without the registers a prefetch costs (run 18: 4096x4096 M = 2 8.4 ->
7.8 us, 4096x14336 20.4 -> 18.7 us). For W4A4 it is launched as a programmatic dependent
of the quantizer and starts reading its weight (the first tile, or the ring's first stages)
before waiting; the quantizer lets it launch at its start where K <= 8192 and M <= 4 or
N >= 16384, elsewhere it launches at the quantizer's end (``triton_gemm.pdl_mode``).

Needs ``triton.experimental.gluon`` with ``mma_v2`` (Triton 3.5+) and sm_80+; nothing
here runs under ``TRITON_INTERPRET``. :func:`available` says whether it can be used;
``fp4_gemm`` falls back to the Triton tiles otherwise. No vLLM imports.
"""

from __future__ import annotations

import torch

from vllm_fouroversix.kernels.device import INTERPRET, capability, e4m3_cvt_supported, pdl_launch
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.nvfp4 import ceil_div

try:  # Gluon is experimental: any Triton without it (or with another API) falls back
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy, mma_v2
    from triton.language.extra.cuda import gdc_wait

    _GLUON = True
except Exception:  # noqa: BLE001 - ImportError or an API change inside gluon
    _GLUON = False

__all__ = ["available", "mma_warps", "mma_plan", "fp4_mma_gemm", "MAX_M"]

#: The largest M this kernel takes (one n8 MMA column block).
MAX_M = 8
_K_TILE = 128  # weights a warp takes per step (64 bytes a row)


def available(device: torch.device) -> bool:
    """Gluon with mma_v2 is importable, not interpreting, and the device is CUDA sm_80+."""
    return _GLUON and not INTERPRET and capability(device)[0] >= 8


def mma_warps(N: int, K: int) -> int | None:
    """Warps a CTA (= K splits) for an N x K weight, or None when K does not divide.

    Run 16 (H100): 8 warps where N < 16384 (256-384 CTAs of 16 rows), 4 where N is
    larger (1792 CTAs at N = 28672: 8 warps there were 8-14% slower)."""
    w = 4 if N >= 16384 else 8
    while w >= 4:
        if K % (_K_TILE * w) == 0:
            return w
        w //= 2
    return None


def mma_plan(M: int, N: int, K: int) -> tuple[int, int] | None:
    """(warps, stages) of the kernel for an M x N x K product, or None when K does not divide.

    ``stages`` >= 2: each warp keeps ``stages`` - 1 K steps of weight and scale bytes in
    flight through ``cp.async`` (shared memory, no registers); 1: plain loads, one step at a
    time. Run 18 (H100, rotating weights, us, plain -> ring): for M <= 4 below N = 16384 the
    ring with 4 warps and 3 stages (K <= 8192; 4096x4096 M = 2 8.44 -> 7.85, 6144x4096 10.13
    -> 9.61) or 8 warps and 2 stages (4096x14336 M = 2 20.42 -> 18.96) is faster; at M = 8
    (its 8 activation rows a warp loads are on the critical path) and at N = 28672 (1792 CTAs
    already keep the memory busy) it is not."""
    if M <= 4 and N < 16384:
        for warps, stages in ((4, 3), (8, 2)) if K <= 8192 else ((8, 2), (4, 3)):
            if K % (_K_TILE * warps) == 0:
                return warps, stages
    warps = mma_warps(N, K)
    return None if warps is None else (warps, 1)


if _GLUON:
    try:  # an installed Gluon whose API differs from 3.5-3.7's must not break the import
        from vllm_fouroversix.kernels.triton_gemm import _DECODE_PTX, _DECODE_SCALED_PTX, _SCALE_PTX

        # The E2M1 decode of triton_gemm: 4 packed bytes ($4) -> the low nibbles of bytes 0/1
        # and 2/3, then the high nibbles, as bf16x2 (one b32 in, four out): q (_DECODE), or
        # times the block's bf16x2 multiplier s * 2^118 ($5: the four bytes are in one block)
        # in the same fma, q * s * 2^-8 (_DECODE_SCALED; exact either way).
        _DECODE = gl.constexpr(_DECODE_PTX)
        _DECODE_SCALED = gl.constexpr(_DECODE_SCALED_PTX)
        _SCALE = gl.constexpr(_SCALE_PTX)
        _THREAD_BARRIER = gl.constexpr(hasattr(gl, "thread_barrier"))  # Triton <= 3.6

        @gluon.constexpr_function
        def _weight_layout(W):
            # bytes [W, 16, 64] of one K tile: each thread 16 contiguous bytes (registers) of rows
            # g and g + 8 (lanes 4-31 and a register), at byte 16t (lanes 0-1); warp s = K split.
            return gl.DistributedLinearLayout(
                [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 8], [0, 8, 0]],
                [[0, 0, 16], [0, 0, 32], [0, 1, 0], [0, 2, 0], [0, 4, 0]],
                [[1 << i, 0, 0] for i in range(W.bit_length() - 1)], [], [W, 16, 64])

        @gluon.constexpr_function
        def _block_layout(W):
            # the same bytes as [W, 16, 8 (block), 8 (byte in the block)]
            return gl.DistributedLinearLayout(
                [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 4], [0, 0, 1, 0], [0, 8, 0, 0]],
                [[0, 0, 2, 0], [0, 0, 4, 0], [0, 1, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0]],
                [[1 << i, 0, 0, 0] for i in range(W.bit_length() - 1)], [], [W, 16, 8, 8])

        @gluon.constexpr_function
        def _act_layout(W):
            # activations [W, 8 (rows of a), 128 (physical k)]: 32 contiguous values a thread
            return gl.DistributedLinearLayout(
                [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 8], [0, 0, 16]],
                [[0, 0, 32], [0, 0, 64], [0, 1, 0], [0, 2, 0], [0, 4, 0]],
                [[1 << i, 0, 0] for i in range(W.bit_length() - 1)], [], [W, 8, 128])

        @gluon.jit
        def _idx3(D0: gl.constexpr, D1: gl.constexpr, D2: gl.constexpr, L: gl.constexpr):
            """Index tensors [D0, 1, 1], [1, D1, 1], [1, 1, D2] in layout L."""
            i0 = gl.arange(0, D0, layout=gl.SliceLayout(1, gl.SliceLayout(2, L)))
            i1 = gl.arange(0, D1, layout=gl.SliceLayout(0, gl.SliceLayout(2, L)))
            i2 = gl.arange(0, D2, layout=gl.SliceLayout(0, gl.SliceLayout(1, L)))
            return (gl.expand_dims(gl.expand_dims(i0, 1), 2), gl.expand_dims(gl.expand_dims(i1, 0), 2),
                    gl.expand_dims(gl.expand_dims(i2, 0), 1))

        @gluon.jit
        def scaled_epilogue(acc, on, ga, N, gw_ptr, bias_ptr,
                            GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr):
            """(acc * (ga * gw)) + bias in FP32 for weight rows on (a broadcast index tensor in
            acc's layout) and the activation scales ``ga`` of the output rows (loaded by the
            caller, broadcast in acc's layout), as triton_prefill.scaled_output; also gluon_wgmma's."""
            if GW_VEC:
                gw = gl.load(gw_ptr + on, mask=on < N, other=0.0)
            else:
                gw = gl.load(gw_ptr)
            if HAS_GA:
                res = acc * (ga * gw)
            else:
                res = acc * gw
            if HAS_BIAS:
                res = res + gl.load(bias_ptr + on, mask=on < N, other=0.0).to(gl.float32)
            return res

        @gluon.jit
        def _tile_mma(wp, sc, xv, acc, W: gl.constexpr, LB: gl.constexpr, LA: gl.constexpr,
                      FOLD: gl.constexpr):
            """acc += the [16, 128] weight tile (bytes wp, scale bytes sc) x the activations xv,
            times 2^-8 with ``FOLD`` (the scale folded into the decode: 12-16% fewer instructions
            a K step; run 22 measured it 3-4% faster with the cp.async ring, and up to 6% slower
            with plain loads, so only the ring takes it, and the plain loads before sm_89, where
            Triton cannot convert E4M3: tools/compile_triton.py)."""
            if FOLD:
                si = sc.to(gl.int32)
                s = gl.inline_asm_elementwise(_SCALE, "=r,r,r", [si, si * 0 + 0x4040], dtype=gl.int32,
                                              is_pure=True, pack=1)  # [W, 16, 8] bf16x2 (s * 2^118, twice)
                s = gl.expand_dims(s, 3) + gl.zeros([W, 16, 8, 8], gl.int32, LB)
                s = gl.convert_layout(gl.reshape(s, [W, 16, 64]), wp.type.layout, assert_trivial=True)
                lo, hi = gl.inline_asm_elementwise(_DECODE_SCALED, "=r,=r,=r,=r,r,r,r,r,r", [wp, s],
                                                   dtype=(gl.bfloat16, gl.bfloat16), is_pure=True, pack=4)
                lo = gl.convert_layout(gl.reshape(lo, [W, 16, 8, 8]), LB)  # q * s * 2^-8: exact in bf16
                hi = gl.convert_layout(gl.reshape(hi, [W, 16, 8, 8]), LB)
            else:
                lo, hi = gl.inline_asm_elementwise(_DECODE, "=r,=r,=r,=r,r", [wp], dtype=(gl.bfloat16, gl.bfloat16),
                                                   is_pure=True, pack=4)
                s = gl.expand_dims(sc.to(gl.float8e4nv, bitcast=True).to(gl.bfloat16), 3)  # exact
                lo = gl.convert_layout(gl.reshape(lo, [W, 16, 8, 8]), LB) * s  # q * s: exact in bf16
                hi = gl.convert_layout(gl.reshape(hi, [W, 16, 8, 8]), LB) * s
            # bytes [t, b, rh, rl] + nibble e -> logical k = rl + 2t + 8e + 16rh + 64b
            lo = gl.reshape(lo, [W, 16, 4, 2, 4, 2])
            hi = gl.reshape(hi, [W, 16, 4, 2, 4, 2])
            a = gl.reshape(gl.permute(gl.join(lo, hi), [0, 1, 3, 4, 6, 2, 5]), [W, 16, 128])
            a = gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2))
            # activations at physical k = 32t + 16b + 4rh + 2rl + e, in the same logical order
            xb = gl.permute(gl.reshape(xv, [W, 8, 4, 2, 4, 2, 2]), [0, 1, 3, 4, 6, 2, 5])
            b = gl.permute(gl.reshape(xb, [W, 8, 128]), [0, 2, 1])
            b = gl.convert_layout(b, gl.DotOperandLayout(operand_index=1, parent=LA, k_width=2))
            return mma_v2(a, b, acc)

        @gluon.jit
        def _ring_loop(x_ptr, w_ptr, s_ptr, x_off, x_in, w_off, w_in, n0, N, stride_s, n_it, acc,
                       W: gl.constexpr, STAGES: gl.constexpr, PDL: gl.constexpr, LW: gl.constexpr,
                       LB: gl.constexpr, LA: gl.constexpr):
            """The K loop with each thread's weight bytes (and the warp's scale bytes) copied into
            shared memory by cp.async STAGES - 1 steps ahead. Each thread reads back the weight
            bytes it copied itself; the scale bytes go in 4-byte copies (cp.async's smallest) by
            other lanes, hence the CTA barrier a step, which also keeps a stage from being
            refilled while a warp still reads it."""
            LSC: gl.constexpr = gl.BlockedLayout([1, 1, 4], [1, 16, 2], [W, 1, 1], [2, 1, 0])
            SH: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[2, 1, 0])  # rows of a warp: 512 B
            cs, cn, cb = _idx3(W, 16, 8, LSC)
            c_in = (n0 + cn) < N
            c_off = (n0 + cn).to(gl.int64) * stride_s + cs * 8 + cb
            w_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 64], SH)
            s_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 8], SH)
            for i in gl.static_range(STAGES - 1):
                async_copy.async_copy_global_to_shared(w_buf.index(i), w_ptr + w_off + i * (64 * W),
                                                       mask=w_in & (i < n_it))
                async_copy.async_copy_global_to_shared(s_buf.index(i), s_ptr + c_off + i * (8 * W),
                                                       mask=c_in & (i < n_it))
                async_copy.commit_group()
            if PDL:  # a programmatic dependent of the quantizer: the weight is in flight meanwhile
                gdc_wait()
            for it in range(n_it):
                xv = gl.load(x_ptr + x_off + it * (128 * W), mask=x_in, other=0.0)
                async_copy.wait_group(STAGES - 2)
                # step it's copies visible to all; step it - 1 read by all
                if _THREAD_BARRIER:
                    gl.thread_barrier()
                else:
                    gl.barrier()  # Triton 3.7's name for the same CTA barrier
                nx = it + STAGES - 1
                async_copy.async_copy_global_to_shared(w_buf.index(nx % STAGES), w_ptr + w_off + nx * (64 * W),
                                                       mask=w_in & (nx < n_it))
                async_copy.async_copy_global_to_shared(s_buf.index(nx % STAGES), s_ptr + c_off + nx * (8 * W),
                                                       mask=c_in & (nx < n_it))
                async_copy.commit_group()
                wp = w_buf.index(it % STAGES).load(LW)
                sc = s_buf.index(it % STAGES).load(gl.SliceLayout(3, LB))
                acc = _tile_mma(wp, sc, xv, acc, W, LB, LA, True)
            async_copy.wait_group(0)
            return acc

        @gluon.jit
        def _fp4_mma_gemm_kernel(
            x_ptr, w_ptr, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
            M, N, K, stride_xm, stride_om, stride_w, stride_s, stride_ga,
            W: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
            STAGES: gl.constexpr = 1, PDL: gl.constexpr = False, FOLD: gl.constexpr = False,
        ):
            LA: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1],
                                                         instr_shape=[1, 16, 8])
            LW: gl.constexpr = _weight_layout(W)
            LB: gl.constexpr = _block_layout(W)
            LX: gl.constexpr = _act_layout(W)
            n0 = gl.program_id(0) * 16
            ws, wn, wj = _idx3(W, 16, 64, LW)
            w_in = (n0 + wn) < N
            w_off = (n0 + wn).to(gl.int64) * stride_w + ws * 64 + wj
            ss, sn, sb = _idx3(W, 16, 8, gl.SliceLayout(3, LB))
            s_in = (n0 + sn) < N
            s_off = (n0 + sn).to(gl.int64) * stride_s + ss * 8 + sb
            xs, xm, xk = _idx3(W, 8, 128, LX)
            x_in = xm < M
            x_off = xm * stride_xm + xs * 128 + xk
            acc = gl.zeros([W, 16, 8], gl.float32, layout=LA)
            n_it = K // (128 * W)
            if STAGES > 1:
                acc = _ring_loop(x_ptr, w_ptr, s_ptr, x_off, x_in, w_off, w_in, n0, N, stride_s, n_it, acc,
                                 W, STAGES, PDL, LW, LB, LA)
            else:
                first = 0
                if PDL:
                    # Launched as a programmatic dependent of the quantizer: the first weight tile
                    # does not depend on it and is read before waiting for it.
                    wp = gl.load(w_ptr + w_off, mask=w_in, other=0)
                    sc = gl.load(s_ptr + s_off, mask=s_in, other=0)
                    gdc_wait()
                    xv = gl.load(x_ptr + x_off, mask=x_in, other=0.0)
                    acc = _tile_mma(wp, sc, xv, acc, W, LB, LA, FOLD)
                    first = 1
                for it in range(first, n_it):
                    wp = gl.load(w_ptr + w_off + it * (64 * W), mask=w_in, other=0)
                    sc = gl.load(s_ptr + s_off + it * (8 * W), mask=s_in, other=0)
                    xv = gl.load(x_ptr + x_off + it * (128 * W), mask=x_in, other=0.0)
                    acc = _tile_mma(wp, sc, xv, acc, W, LB, LA, FOLD)
            acc = gl.sum(acc, axis=0)  # [16 (n), 8 (m)]: the K splits meet (shared memory, once)
            if STAGES > 1 or FOLD:
                acc = acc * 256.0  # the decode folded the scale in: q * s * 2^-8 (exact)
            # Epilogue: (acc * (ga * gw)) + bias in FP32, as triton_prefill.scaled_output.
            LO: gl.constexpr = gl.SliceLayout(0, LA)
            on = n0 + gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, LO)), 1)
            om = gl.expand_dims(gl.arange(0, 8, layout=gl.SliceLayout(0, LO)), 0)
            if HAS_GA:
                ga = gl.load(ga_ptr + om * stride_ga, mask=om < M, other=0.0)
            else:
                ga = acc  # unused
            res = scaled_epilogue(acc, on, ga, N, gw_ptr, bias_ptr, GW_VEC, HAS_GA, HAS_BIAS)
            gl.store(out_ptr + om * stride_om + on, res.to(out_ptr.dtype.element_ty), mask=(om < M) & (on < N))

        _MMA = FastKernel(_fp4_mma_gemm_kernel)  # Triton's per-call launch Python skipped (kernels/launch.py)
    except Exception:  # noqa: BLE001
        _GLUON = False


def fp4_mma_gemm(a: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor, gw: torch.Tensor,
                 ga: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, stride_ga: int, flags: dict,
                 warps: int, pdl: bool = False, stages: int = 1) -> torch.Tensor:
    """``out`` [M, N] = bf16 ``a`` [M <= 8, K] x the NVFP4 weight (``data`` [N, K/2],
    ``sbytes`` [N, K/16] uint8), with the epilogue operands as ``triton_prefill.epilogue_args``
    returns them. K must be a multiple of 128 x ``warps``; ``stages`` >= 2 reads the weight
    through a cp.async ring of that depth (see :func:`mma_plan`). ``pdl``: launch as a
    programmatic dependent of the kernel before it (sm_90+; see ``triton_gemm.fp4_gemm``)."""
    M, K = a.shape
    N = data.shape[0]
    if not _GLUON or M > MAX_M or a.dtype != torch.bfloat16 or K % (_K_TILE * warps):
        raise ValueError(f"fp4_mma_gemm cannot take M={M}, K={K}, {a.dtype}, {warps} warps")
    if stages > 1 and (data.data_ptr() % 16 or sbytes.data_ptr() % 16 or data.stride(0) % 16
                       or sbytes.stride(0) % 16):
        # cp.async copies 16 weight bytes and 4 scale bytes at a time; Triton only proves
        # alignment from 16-divisible pointers and strides, so anything less would not compile.
        stages = 1
    _MMA[(ceil_div(N, 16),)](
        a, data, sbytes, gw, ga, bias, out, M, N, K, a.stride(0), out.stride(0), data.stride(0), sbytes.stride(0),
        stride_ga, W=warps, **flags, STAGES=stages, FOLD=stages == 1 and not e4m3_cvt_supported(a.device),
        num_warps=warps, **pdl_launch(pdl))
    return out
