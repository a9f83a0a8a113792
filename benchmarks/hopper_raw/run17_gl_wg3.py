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
def _producer(x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, nk, STAGES: gl.constexpr):
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes
    BNH: gl.constexpr = w_desc.block_type.shape[0]
    for i in range(nk):
        s = i % STAGES
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)  # released by both MMA partitions
        mbarrier.expect(ready.index(s), nbytes)
        tma.async_copy_global_to_shared(x_desc, [m0, i * BK], ready.index(s), x_smem.index(s))
        tma.async_copy_global_to_shared(w_desc, [n0, i * (BK // 2)], ready.index(s), w0_smem.index(s))
        tma.async_copy_global_to_shared(w_desc, [n0 + BNH, i * (BK // 2)], ready.index(s), w1_smem.index(s))


@gluon.jit
def _mma_partition(x_smem, w_smem, ready, empty, turn_me, turn_other, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                   M, N, nk, stride_s, stride_om, stride_ga, n0, m0,
                   BM: gl.constexpr, STAGES: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr,
                   HAS_BIAS: gl.constexpr, TURNS: gl.constexpr, FIRST: gl.constexpr):
    W: gl.constexpr = 4
    BN: gl.constexpr = 64
    LA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[W, 1], instr_shape=[16, BM, 16])
    LW: gl.constexpr = _byte_layout(W, BN)
    LW3: gl.constexpr = _byte_layout3(W, BN)
    LS: gl.constexpr = gl.SliceLayout(2, LW3)
    sn = gl.arange(0, BN, layout=gl.SliceLayout(1, LS))
    sj8 = gl.expand_dims(gl.arange(0, 4, layout=gl.SliceLayout(0, LS)), 0) * 8
    s_in = (n0 + sn) < N
    s_off = (n0 + sn).to(gl.int64) * (stride_s // 4)
    s_words = s_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    sw = gl.load(s_words + s_off, mask=s_in, other=0)
    acc = gl.zeros([BN, BM], gl.float32, LA)
    for i in range(nk):
        st = i % STAGES
        mbarrier.wait(ready.index(st), (i // STAGES) & 1)
        wb = w_smem.index(st).load(LW)
        sc = ((gl.expand_dims(sw, 1) >> sj8) & 0xFF).to(gl.uint8)
        a, d = _decode(wb, sc, BN, LW, LW3, LA)
        sw = gl.load(s_words + s_off + (i + 1), mask=s_in & (i + 1 < nk), other=0)
        if TURNS:  # MMAs alternate between the two partitions: one decodes while the other's MMA runs
            mbarrier.wait(turn_me, (i & 1) ^ FIRST)
        acc = warpgroup_mma(a, x_smem.index(st).permute((1, 0)), acc, is_async=True)
        if TURNS:
            mbarrier.arrive(turn_other)
        # wait for this MMA before the next decode overwrites registers (an in-flight wgmma
        # reads its A registers; ptxas does not keep them alive for it)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        mbarrier.arrive(empty.index(st))
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
    LO: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [W, 1], [1, 0])
    res = gl.convert_layout(res, LO)
    om2 = m0 + gl.expand_dims(gl.arange(0, BM, layout=gl.SliceLayout(1, LO)), 1)
    on2 = n0 + gl.expand_dims(gl.arange(0, BN, layout=gl.SliceLayout(0, LO)), 0)
    gl.store(out_ptr + om2.to(gl.int64) * stride_om + on2, res, mask=(om2 < M) & (on2 < N))


@gluon.jit
def wgmma_gemm_kernel(
    x_desc, w_desc, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
    M, N, K, stride_s, stride_om, stride_ga,
    W: gl.constexpr, BM: gl.constexpr, STAGES: gl.constexpr,
    GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr, TURNS: gl.constexpr = True,
):
    BN: gl.constexpr = 128
    n0 = gl.program_id(0) * BN
    m0 = gl.program_id(1) * BM
    nk = K // BK
    x_smem = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BM, BK], x_desc.layout)
    w0_smem = gl.allocate_shared_memory(gl.uint8, [STAGES, 64, BK // 2], w_desc.layout)
    w1_smem = gl.allocate_shared_memory(gl.uint8, [STAGES, 64, BK // 2], w_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turns = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2)
    mbarrier.init(turns.index(0), count=1)
    mbarrier.init(turns.index(1), count=1)
    gl.warp_specialize([
        (_mma_partition, (x_smem, w0_smem, ready, empty, turns.index(0), turns.index(1), s_ptr, gw_ptr, ga_ptr,
                          bias_ptr, out_ptr, M, N, nk, stride_s, stride_om, stride_ga, n0, m0,
                          BM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, TURNS, 1)),
        (_mma_partition, (x_smem, w1_smem, ready, empty, turns.index(1), turns.index(0), s_ptr, gw_ptr, ga_ptr,
                          bias_ptr, out_ptr, M, N, nk, stride_s, stride_om, stride_ga, n0 + 64, m0,
                          BM, STAGES, GW_VEC, HAS_GA, HAS_BIAS, TURNS, 0)),
        (_producer, (x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, nk, STAGES)),
    ], [4, 1], [232, 40])


def layouts(BM, W):
    BN = 64
    return (gl.NVMMASharedLayout.get_default_for([BM, BKI], gl.bfloat16),
            gl.NVMMASharedLayout.get_default_for([BN, BKI // 2], gl.uint8))


def wgmma_gemm(a, data, sbytes, gw, ga, bias, out, stride_ga, flags, BM=256, W=8, STAGES=3, TURNS=True):
    M, K = a.shape
    N = data.shape[0]
    BN = 64
    xl, wl = layouts(BM, W)
    x_desc = TensorDescriptor.from_tensor(a, [BM, BKI], xl)
    w_desc = TensorDescriptor.from_tensor(data, [BN, BKI // 2], wl)
    wgmma_gemm_kernel[(triton.cdiv(N, 128), triton.cdiv(M, BM))](
        x_desc, w_desc, sbytes, gw, ga, bias, out, M, N, K, sbytes.stride(0), out.stride(0), stride_ga,
        W=4, BM=BM, STAGES=STAGES, TURNS=TURNS, **flags, num_warps=4)
    return out
