"""Experiment: large-M NVFP4 GEMM on Hopper wgmma, weight decoded into the A-operand registers."""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import tma, mbarrier, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

BKI = 64
BK = gl.constexpr(BKI)


def _pair_decode_asm() -> str:
    # In: $4 = 4 packed bytes, $5..$8 = each byte's scale multiplier (bf16x2 of s * 2^118).
    # Out: $i = bf16x2 (low nibble, high nibble) of byte i, times the multiplier: q * s * 2^-8.
    lines = ["{", ".reg .b32 u, t, a, b, nz;", "mov.b32 nz, 0x80008000;", "shr.b32 u, $4, 4;"]
    for i in range(4):
        sel = i | (i << 4) | ((4 + i) << 8) | ((4 + i) << 12)
        lines += [f"prmt.b32 t, $4, u, {hex(sel)};", "shl.b32 a, t, 6;", "shl.b32 b, t, 12;",
                  "lop3.b32 a, a, b, 0x01C001C0, 0xE4;", "and.b32 a, a, 0x81C081C0;",
                  f"fma.rn.bf16x2 ${i}, a, ${5 + i}, nz;"]
    return "\n" + "\n".join(lines + ["}"]) + "\n"


_DEC = gl.constexpr(_pair_decode_asm())


@gluon.constexpr_function
def _byte_layout(W, BN):
    # weight bytes [BN, 32] of one 64-value K step: thread (g = lane / 4, c = lane % 4) of warp w
    # holds bytes c + 4r (r = 0..7) of rows 16w + g and 16w + g + 8: the m16n8k16 A fragment's
    # (k, k + 1) pairs in natural order, one byte a pair.
    return gl.DistributedLinearLayout(
        [[8, 0], [0, 4], [0, 8], [0, 16]],
        [[0, 1], [0, 2], [1, 0], [2, 0], [4, 0]],
        [[16 << i, 0] for i in range(W.bit_length() - 1)], [], [BN, 32])


@gluon.constexpr_function
def _byte_layout3(W, BN):
    # the same bytes as [BN, 4 (16-value block), 8]
    return gl.DistributedLinearLayout(
        [[8, 0, 0], [0, 0, 4], [0, 1, 0], [0, 2, 0]],
        [[0, 0, 1], [0, 0, 2], [1, 0, 0], [2, 0, 0], [4, 0, 0]],
        [[16 << i, 0, 0] for i in range(W.bit_length() - 1)], [], [BN, 4, 8])


@gluon.jit
def _decode(wb, sc, BN: gl.constexpr, LW: gl.constexpr, LW3: gl.constexpr, LA: gl.constexpr):
    # sc: scale bytes [BN, 4] (SliceLayout(2, LW3)) -> bf16x2 bits of s * 2^118, one per byte
    s = (sc.to(gl.float8e4nv, bitcast=True).to(gl.float32) * 3.3230699894622794e35).to(gl.bfloat16)
    s = s.to(gl.uint16, bitcast=True).to(gl.int32) * 65537
    s = gl.reshape(gl.expand_dims(s, 2) + gl.zeros([BN, 4, 8], gl.int32, LW3), [BN, 32])
    s = gl.convert_layout(s, LW, assert_trivial=True)
    d = gl.inline_asm_elementwise(_DEC, "=r,=r,=r,=r,r,r,r,r,r", [wb, s], dtype=gl.int32, is_pure=True, pack=4)
    lo = (d & 0xFFFF).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    hi = (d >> 16).to(gl.uint16).to(gl.bfloat16, bitcast=True)
    a = gl.reshape(gl.join(lo, hi), [BN, 64])
    return gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2), assert_trivial=True), d


@gluon.jit
def wgmma_gemm_kernel(
    x_desc, w_desc, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
    M, N, K, stride_s, stride_om, stride_ga,
    W: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr,
    GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
):
    BN: gl.constexpr = 16 * W
    LA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[W, 1], instr_shape=[16, BM, 16])
    LW: gl.constexpr = _byte_layout(W, BN)
    LW3: gl.constexpr = _byte_layout3(W, BN)
    LS: gl.constexpr = gl.SliceLayout(2, LW3)
    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    nk = K // BK

    x_smem = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_desc.layout)
    w_smem = gl.allocate_shared_memory(gl.uint8, [STAGES, BN, BK // 2], w_desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(bars.index(s), count=1)
    nbytes: gl.constexpr = x_desc.block_type.nbytes + w_desc.block_type.nbytes
    for s in gl.static_range(STAGES - 1):
        mbarrier.expect(bars.index(s), nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, s * BK], bars.index(s), x_smem.index(s))
        tma.async_copy_global_to_shared(w_desc, [n0, s * (BK // 2)], bars.index(s), w_smem.index(s))

    # scale bytes: one int32 word (4 blocks = one K step) a row, bytes split in registers
    sn = gl.arange(0, BN, layout=gl.SliceLayout(1, LS))
    sj8 = gl.expand_dims(gl.arange(0, 4, layout=gl.SliceLayout(0, LS)), 0) * 8
    s_in = (n0 + sn) < N
    s_off = (n0 + sn).to(gl.int64) * (stride_s // 4)
    s_words = s_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    sw = gl.load(s_words + s_off, mask=s_in, other=0)

    acc = gl.zeros([BN, BM], gl.float32, LA)
    LD: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2)
    a_prev = gl.zeros([BN, 32], gl.int32, LW)
    for i in range(nk):
        st = i % STAGES
        mbarrier.wait(bars.index(st), (i // STAGES) & 1)
        wb = w_smem.index(st).load(LW)
        sc = ((gl.expand_dims(sw, 1) >> sj8) & 0xFF).to(gl.uint8)
        a, d = _decode(wb, sc, BN, LW, LW3, LA)
        acc = warpgroup_mma(a, x_smem.index(st).permute((1, 0)), acc, is_async=True)
        # MMA i - 1 done; its A registers (a_prev) may be reused only from here on
        acc, a_prev = warpgroup_mma_wait(num_outstanding=1, deps=(acc, a_prev))
        a_prev = d  # the packed registers MMA i reads: kept until its wait
        gl.thread_barrier()  # every warp group is past MMA i - 1: its stage can be refilled
        j = i + STAGES - 1
        sj2 = j % STAGES
        pred = j < nk
        mbarrier.expect(bars.index(sj2), nbytes, pred=pred)
        tma.async_copy_global_to_shared(x_desc, [m0, j * BK], bars.index(sj2), x_smem.index(sj2), pred=pred)
        tma.async_copy_global_to_shared(w_desc, [n0, j * (BK // 2)], bars.index(sj2), w_smem.index(sj2), pred=pred)
        # next step's scales, issued after the refill's proxy fence so that the fence does not wait for them
        sw = gl.load(s_words + s_off + (i + 1), mask=s_in & (i + 1 < nk), other=0)
    acc, a_prev = warpgroup_mma_wait(num_outstanding=0, deps=(acc, a_prev))
    gl.thread_barrier()  # every warp group's last MMA is done before the epilogue reuses shared memory

    # Epilogue: the decoded weight was q * s * 2^-8 (see _decode): acc * 256 is exact.
    on = n0 + gl.expand_dims(gl.arange(0, BN, layout=gl.SliceLayout(1, LA)), 1)
    om = m0 + gl.expand_dims(gl.arange(0, BM, layout=gl.SliceLayout(0, LA)), 0)
    if GW_VEC:
        gw = gl.load(gw_ptr + on, mask=on < N, other=0.0)
    else:
        gw = gl.load(gw_ptr)
    res = acc * 256.0
    if HAS_GA:
        ga = gl.load(ga_ptr + om * stride_ga, mask=om < M, other=0.0)
        res = res * (ga * gw)
    else:
        res = res * gw
    if HAS_BIAS:
        res = res + gl.load(bias_ptr + on, mask=on < N, other=0.0).to(gl.float32)
    res = gl.permute(res.to(out_ptr.dtype.element_ty), (1, 0))  # [BM, BN]
    LO: gl.constexpr = gl.BlockedLayout([1, 8], [2, 16], [W, 1], [1, 0])
    res = gl.convert_layout(res, LO)
    om2 = m0 + gl.expand_dims(gl.arange(0, BM, layout=gl.SliceLayout(1, LO)), 1)
    on2 = n0 + gl.expand_dims(gl.arange(0, BN, layout=gl.SliceLayout(0, LO)), 0)
    gl.store(out_ptr + om2.to(gl.int64) * stride_om + on2, res, mask=(om2 < M) & (on2 < N))


def layouts(BM, W):
    BN = 16 * W
    return (gl.NVMMASharedLayout.get_default_for([BM, BKI], gl.bfloat16),
            gl.NVMMASharedLayout.get_default_for([BN, BKI // 2], gl.uint8))


def wgmma_gemm(a, data, sbytes, gw, ga, bias, out, stride_ga, flags, BM=256, W=8, STAGES=3):
    M, K = a.shape
    N = data.shape[0]
    BN = 16 * W
    xl, wl = layouts(BM, W)
    x_desc = TensorDescriptor.from_tensor(a, [BM, BKI], xl)
    w_desc = TensorDescriptor.from_tensor(data, [BN, BKI // 2], wl)
    wgmma_gemm_kernel[(triton.cdiv(N, BN), triton.cdiv(M, BM))](
        x_desc, w_desc, sbytes, gw, ga, bias, out, M, N, K, sbytes.stride(0), out.stride(0), stride_ga,
        W=W, BM=BM, STAGES=STAGES, **flags, num_warps=W)
    return out
