"""Experiment (run 18d): the small-M Gluon kernel's cp.async ring with the activations in the
ring too (a conflict-free shared layout: each LDS.128 of a warp reads 512 contiguous bytes),
and 16 MMA columns (M <= 16)."""
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy, mma_v2
from vllm_fouroversix.kernels.gluon_gemm import _weight_layout, _block_layout, _idx3, scaled_epilogue, _DECODE


@gluon.constexpr_function
def _act_layout(W, MN):
    reg = [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 8], [0, 0, 16]] + ([[0, 8, 0]] if MN == 16 else [])
    return gl.DistributedLinearLayout(reg, [[0, 0, 32], [0, 0, 64], [0, 1, 0], [0, 2, 0], [0, 4, 0]],
                                      [[1 << i, 0, 0] for i in range(W.bit_length() - 1)], [], [W, MN, 128])


@gluon.constexpr_function
def _act_smem(W, MN):
    # offset bits: 8 values (16 B), the 32 lanes, then the thread's 16-byte chunks, row 8, warps
    return gl.SharedLinearLayout([[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 32], [0, 0, 64], [0, 1, 0], [0, 2, 0],
                                  [0, 4, 0], [0, 0, 8], [0, 0, 16]] + ([[0, 8, 0]] if MN == 16 else [])
                                 + [[1 << i, 0, 0] for i in range(W.bit_length() - 1)])


@gluon.jit
def _tile_mma(wp, sc, xv, acc, W: gl.constexpr, MN: gl.constexpr, LB: gl.constexpr, LA: gl.constexpr):
    lo, hi = gl.inline_asm_elementwise(_DECODE, "=r,=r,=r,=r,r", [wp], dtype=(gl.bfloat16, gl.bfloat16),
                                       is_pure=True, pack=4)
    s = gl.expand_dims(sc.to(gl.float8e4nv, bitcast=True).to(gl.bfloat16), 3)
    lo = gl.convert_layout(gl.reshape(lo, [W, 16, 8, 8]), LB) * s
    hi = gl.convert_layout(gl.reshape(hi, [W, 16, 8, 8]), LB) * s
    lo = gl.reshape(lo, [W, 16, 4, 2, 4, 2])
    hi = gl.reshape(hi, [W, 16, 4, 2, 4, 2])
    a = gl.reshape(gl.permute(gl.join(lo, hi), [0, 1, 3, 4, 6, 2, 5]), [W, 16, 128])
    a = gl.convert_layout(a, gl.DotOperandLayout(operand_index=0, parent=LA, k_width=2))
    xb = gl.permute(gl.reshape(xv, [W, MN, 4, 2, 4, 2, 2]), [0, 1, 3, 4, 6, 2, 5])
    b = gl.permute(gl.reshape(xb, [W, MN, 128]), [0, 2, 1])
    b = gl.convert_layout(b, gl.DotOperandLayout(operand_index=1, parent=LA, k_width=2))
    return mma_v2(a, b, acc)


@gluon.jit
def _kernel(x_ptr, w_ptr, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
            M, N, K, stride_xm, stride_om, stride_w, stride_s, stride_ga,
            W: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
            STAGES: gl.constexpr, XS: gl.constexpr, MN: gl.constexpr):
    LA: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1], instr_shape=[1, 16, 8])
    LW: gl.constexpr = _weight_layout(W)
    LB: gl.constexpr = _block_layout(W)
    LX: gl.constexpr = _act_layout(W, MN)
    LSC: gl.constexpr = gl.BlockedLayout([1, 1, 4], [1, 16, 2], [W, 1, 1], [2, 1, 0])
    SH: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[2, 1, 0])
    n0 = gl.program_id(0) * 16
    ws, wn, wj = _idx3(W, 16, 64, LW)
    w_in = (n0 + wn) < N
    w_off = (n0 + wn).to(gl.int64) * stride_w + ws * 64 + wj
    cs, cn, cb = _idx3(W, 16, 8, LSC)
    c_in = (n0 + cn) < N
    c_off = (n0 + cn).to(gl.int64) * stride_s + cs * 8 + cb
    xs, xm, xk = _idx3(W, MN, 128, LX)
    x_in = xm < M
    x_off = xm * stride_xm + xs * 128 + xk
    n_it = K // (128 * W)
    w_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 64], SH)
    s_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 8], SH)
    if XS:
        x_buf = gl.allocate_shared_memory(gl.bfloat16, [STAGES, W, MN, 128], _act_smem(W, MN))
    for i in gl.static_range(STAGES - 1):
        async_copy.async_copy_global_to_shared(w_buf.index(i), w_ptr + w_off + i * (64 * W), mask=w_in & (i < n_it))
        async_copy.async_copy_global_to_shared(s_buf.index(i), s_ptr + c_off + i * (8 * W), mask=c_in & (i < n_it))
        if XS:
            async_copy.async_copy_global_to_shared(x_buf.index(i), x_ptr + x_off + i * (128 * W), mask=x_in & (i < n_it))
        async_copy.commit_group()
    acc = gl.zeros([W, 16, MN], gl.float32, layout=LA)
    for it in range(n_it):
        if not XS:
            xv = gl.load(x_ptr + x_off + it * (128 * W), mask=x_in, other=0.0)
        async_copy.wait_group(STAGES - 2)
        gl.thread_barrier()
        nx = it + STAGES - 1
        async_copy.async_copy_global_to_shared(w_buf.index(nx % STAGES), w_ptr + w_off + nx * (64 * W), mask=w_in & (nx < n_it))
        async_copy.async_copy_global_to_shared(s_buf.index(nx % STAGES), s_ptr + c_off + nx * (8 * W), mask=c_in & (nx < n_it))
        if XS:
            async_copy.async_copy_global_to_shared(x_buf.index(nx % STAGES), x_ptr + x_off + nx * (128 * W), mask=x_in & (nx < n_it))
        async_copy.commit_group()
        wp = w_buf.index(it % STAGES).load(LW)
        sc = s_buf.index(it % STAGES).load(gl.SliceLayout(3, LB))
        if XS:
            xv = x_buf.index(it % STAGES).load(LX)
        acc = _tile_mma(wp, sc, xv, acc, W, MN, LB, LA)
    async_copy.wait_group(0)
    acc = gl.sum(acc, axis=0)
    LO: gl.constexpr = gl.SliceLayout(0, LA)
    on = n0 + gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, LO)), 1)
    om = gl.expand_dims(gl.arange(0, MN, layout=gl.SliceLayout(0, LO)), 0)
    res = scaled_epilogue(acc, on, om, M, N, gw_ptr, ga_ptr, bias_ptr, stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    gl.store(out_ptr + om * stride_om + on, res.to(out_ptr.dtype.element_ty), mask=(om < M) & (on < N))


def gemm(a, data, sbytes, gw, ga, bias, out, stride_ga, flags, warps, stages=3, xs=True, mn=None):
    M, K = a.shape
    N = data.shape[0]
    mn = mn or (8 if M <= 8 else 16)
    assert M <= mn and K % (128 * warps) == 0
    _kernel[(triton.cdiv(N, 16),)](
        a, data, sbytes, gw, ga, bias, out, M, N, K, a.stride(0), out.stride(0), data.stride(0), sbytes.stride(0),
        stride_ga, W=warps, **flags, STAGES=stages, XS=xs, MN=mn, num_warps=warps)
    return out
