"""Experiment (run 18): gluon_gemm's mma kernel with the weight (and scale, optionally
activation) bytes brought in by cp.async, STAGES K steps ahead, so that each warp has
several K steps' bytes in flight without holding them in registers."""
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as ac
from vllm_fouroversix.kernels.gluon_gemm import (_weight_layout, _block_layout, _act_layout, _idx3,
                                                 _tile_mma, scaled_epilogue)


@gluon.jit
def _kernel(x_ptr, w_ptr, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
            M, N, K, stride_xm, stride_om, stride_w, stride_s, stride_ga,
            W: gl.constexpr, GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr,
            STAGES: gl.constexpr, XASYNC: gl.constexpr, MN: gl.constexpr):
    LA: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1], instr_shape=[1, 16, 8])
    LW: gl.constexpr = _weight_layout(W)
    LB: gl.constexpr = _block_layout(W)
    LX: gl.constexpr = _act_layout(W)
    LSC: gl.constexpr = gl.BlockedLayout([1, 1, 4], [1, 16, 2], [W, 1, 1], [2, 1, 0])  # 4-byte copies
    SH: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[2, 1, 0])
    n0 = gl.program_id(0) * 16
    ws, wn, wj = _idx3(W, 16, 64, LW)
    w_in = (n0 + wn) < N
    w_off = (n0 + wn).to(gl.int64) * stride_w + ws * 64 + wj
    cs, cn, cb = _idx3(W, 16, 8, LSC)
    c_in = (n0 + cn) < N
    c_off = (n0 + cn).to(gl.int64) * stride_s + cs * 8 + cb
    xs, xm, xk = _idx3(W, 8, 128, LX)
    x_in = xm < M
    x_off = xm * stride_xm + xs * 128 + xk
    w_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 64], SH)
    s_buf = gl.allocate_shared_memory(gl.uint8, [STAGES, W, 16, 8], SH)
    if XASYNC:
        x_buf = gl.allocate_shared_memory(gl.bfloat16, [STAGES, W, 8, 128], SH)
    n_it = K // (128 * W)
    for i in gl.static_range(STAGES - 1):
        ac.async_copy_global_to_shared(w_buf.index(i), w_ptr + w_off + i * (64 * W), mask=w_in & (i < n_it))
        ac.async_copy_global_to_shared(s_buf.index(i), s_ptr + c_off + i * (8 * W), mask=c_in & (i < n_it))
        if XASYNC:
            ac.async_copy_global_to_shared(x_buf.index(i), x_ptr + x_off + i * (128 * W), mask=x_in & (i < n_it))
        ac.commit_group()
    acc = gl.zeros([W, 16, 8], gl.float32, layout=LA)
    for it in range(n_it):
        st = it % STAGES
        if not XASYNC:
            xv = gl.load(x_ptr + x_off + it * (128 * W), mask=x_in, other=0.0)
        ac.wait_group(STAGES - 2)
        gl.thread_barrier()  # every thread's copies of step it are visible; step it - 1 is read
        nx = it + STAGES - 1
        ns = nx % STAGES
        ac.async_copy_global_to_shared(w_buf.index(ns), w_ptr + w_off + nx * (64 * W), mask=w_in & (nx < n_it))
        ac.async_copy_global_to_shared(s_buf.index(ns), s_ptr + c_off + nx * (8 * W), mask=c_in & (nx < n_it))
        if XASYNC:
            ac.async_copy_global_to_shared(x_buf.index(ns), x_ptr + x_off + nx * (128 * W), mask=x_in & (nx < n_it))
        ac.commit_group()
        wp = w_buf.index(st).load(LW)
        sc = s_buf.index(st).load(gl.SliceLayout(3, LB))
        if XASYNC:
            xv = x_buf.index(st).load(LX)
        acc = _tile_mma(wp, sc, xv, acc, W, LB, LA)
    ac.wait_group(0)
    acc = gl.sum(acc, axis=0)
    LO: gl.constexpr = gl.SliceLayout(0, LA)
    on = n0 + gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, LO)), 1)
    om = gl.expand_dims(gl.arange(0, 8, layout=gl.SliceLayout(0, LO)), 0)
    res = scaled_epilogue(acc, on, om, M, N, gw_ptr, ga_ptr, bias_ptr, stride_ga, GW_VEC, HAS_GA, HAS_BIAS)
    gl.store(out_ptr + om * stride_om + on, res.to(out_ptr.dtype.element_ty), mask=(om < M) & (on < N))


def gemm(a, data, sbytes, gw, ga, bias, out, stride_ga, flags, warps, stages=3, xasync=False):
    M, K = a.shape
    N = data.shape[0]
    assert M <= 8 and K % (128 * warps) == 0
    _kernel[(triton.cdiv(N, 16),)](
        a, data, sbytes, gw, ga, bias, out, M, N, K, a.stride(0), out.stride(0), data.stride(0), sbytes.stride(0),
        stride_ga, W=warps, **flags, STAGES=stages, XASYNC=xasync, MN=8, num_warps=warps)
    return out
