"""Gluon experiment: small-M FP4-weight GEMM on mma.sync with the decoded weight built in registers
straight in the mma A-operand layout (no shared memory), K order permuted consistently for A and B."""
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from vllm_fouroversix.kernels.triton_gemm import _decode_asm

_DEC = gl.constexpr(_decode_asm([f"fma.rn.bf16x2 ${i}, a, c126, nz;" for i in range(4)], "$4"))


@gluon.constexpr_function
def w_layout(W, R):
    # P [W, 16R, 64] bytes of one 128-weight K tile: each thread 16 contiguous bytes of rows g and g+8.
    reg = [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 8], [0, 8, 0]] + [[0, 16 << i, 0] for i in range(R.bit_length() - 1)]
    lane = [[0, 0, 16], [0, 0, 32], [0, 1, 0], [0, 2, 0], [0, 4, 0]]
    warp = [[1 << i, 0, 0] for i in range(W.bit_length() - 1)]
    return gl.DistributedLinearLayout(reg, lane, warp, [], [W, 16 * R, 64])


@gluon.constexpr_function
def w4_layout(W, R):
    # the same as [W, 16R, 8 (block), 8 (byte in block)]
    reg = [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 4], [0, 0, 1, 0], [0, 8, 0, 0]] + [[0, 16 << i, 0, 0] for i in range(R.bit_length() - 1)]
    lane = [[0, 0, 2, 0], [0, 0, 4, 0], [0, 1, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0]]
    warp = [[1 << i, 0, 0, 0] for i in range(W.bit_length() - 1)]
    return gl.DistributedLinearLayout(reg, lane, warp, [], [W, 16 * R, 8, 8])


@gluon.constexpr_function
def x_layout(W, BM):
    # X [W, BM, 128] activations of the tile, phys k = 32t + 16b + 4rh + 2rl + e: each thread 32 contiguous.
    reg = [[0, 0, 1], [0, 0, 2], [0, 0, 4], [0, 0, 8], [0, 0, 16]] + ([[0, 8, 0]] if BM == 16 else [])
    lane = [[0, 0, 32], [0, 0, 64], [0, 1, 0], [0, 2, 0], [0, 4, 0]]
    warp = [[1 << i, 0, 0] for i in range(W.bit_length() - 1)]
    return gl.DistributedLinearLayout(reg, lane, warp, [], [W, BM, 128])


@gluon.jit
def _idx3(D0: gl.constexpr, D1: gl.constexpr, D2: gl.constexpr, L: gl.constexpr):
    i0 = gl.arange(0, D0, layout=gl.SliceLayout(1, gl.SliceLayout(2, L)))
    i1 = gl.arange(0, D1, layout=gl.SliceLayout(0, gl.SliceLayout(2, L)))
    i2 = gl.arange(0, D2, layout=gl.SliceLayout(0, gl.SliceLayout(1, L)))
    return gl.expand_dims(gl.expand_dims(i0, 1), 2), gl.expand_dims(gl.expand_dims(i1, 0), 2), \
        gl.expand_dims(gl.expand_dims(i2, 0), 1)


@gluon.jit
def _tile_mma(wp, sc, xv, acc, W: gl.constexpr, BN: gl.constexpr, BM: gl.constexpr, LW4: gl.constexpr,
              la: gl.constexpr, lb: gl.constexpr):
    lo, hi = gl.inline_asm_elementwise(_DEC, "=r,=r,=r,=r,r", [wp], dtype=(gl.bfloat16, gl.bfloat16),
                                       is_pure=True, pack=4)
    scb = gl.expand_dims(sc.to(gl.float8e4nv, bitcast=True).to(gl.bfloat16), 3)
    lo = gl.convert_layout(gl.reshape(lo, [W, BN, 8, 8]), LW4) * scb
    hi = gl.convert_layout(gl.reshape(hi, [W, BN, 8, 8]), LW4) * scb
    # [W, BN, t, b, rh, rl] -> join e -> [W, BN, b, rh, e, t, rl]: k = rl + 2t + 8e + 16rh + 64b
    lo = gl.reshape(lo, [W, BN, 4, 2, 4, 2])
    hi = gl.reshape(hi, [W, BN, 4, 2, 4, 2])
    a = gl.permute(gl.join(lo, hi), [0, 1, 3, 4, 6, 2, 5])
    a = gl.convert_layout(gl.reshape(a, [W, BN, 128]), la)
    # X [W, BM, t, b, rh, rl, e] -> [W, BM, b, rh, e, t, rl] -> [W, 128, BM]
    xb = gl.reshape(xv, [W, BM, 4, 2, 4, 2, 2])
    xb = gl.permute(xb, [0, 1, 3, 4, 6, 2, 5])
    b = gl.convert_layout(gl.permute(gl.reshape(xb, [W, BM, 128]), [0, 2, 1]), lb)
    return gl.nvidia.ampere.mma_v2(a, b, acc)


@gluon.jit
def mma_gemv_kernel(x_ptr, w_ptr, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                    M, N, K, stride_xm, stride_om, stride_w, stride_s,
                    R: gl.constexpr, BM: gl.constexpr, W: gl.constexpr,
                    HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr, PREFETCH: gl.constexpr):
    BN: gl.constexpr = 16 * R
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[W, 1, 1], instr_shape=[1, 16, 8])
    la: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    lb: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    LW: gl.constexpr = w_layout(W, R)
    LW4: gl.constexpr = w4_layout(W, R)
    LS: gl.constexpr = gl.SliceLayout(3, LW4)
    LX: gl.constexpr = x_layout(W, BM)

    pid = gl.program_id(0)
    n0 = pid * BN
    # weight bytes: row n, K tile it, warp s -> byte (it * W + s) * 64 + j
    ws, wn, wj = _idx3(W, BN, 64, LW)
    w_rows = (n0 + wn) < N
    w_off = (n0 + wn).to(gl.int64) * stride_w + ws * 64 + wj
    ss, sn, sb = _idx3(W, BN, 8, LS)
    s_off = (n0 + sn).to(gl.int64) * stride_s + ss * 8 + sb
    s_rows = (n0 + sn) < N
    xs, xm, xk = _idx3(W, BM, 128, LX)
    x_off = xm * stride_xm + xs * 128 + xk
    x_rows = xm < M
    acc = gl.zeros([W, BN, BM], gl.float32, layout=mma)
    n_it = K // (128 * W)
    wp = gl.load(w_ptr + w_off, mask=w_rows, other=0)
    sc = gl.load(s_ptr + s_off, mask=s_rows, other=0)
    xv = gl.load(x_ptr + x_off, mask=x_rows, other=0.0)
    for it in range(0, n_it):
        if PREFETCH:
            nxt = (it + 1) < n_it
            wp_n = gl.load(w_ptr + w_off + (it + 1) * (64 * W), mask=w_rows & nxt, other=0)
            sc_n = gl.load(s_ptr + s_off + (it + 1) * (8 * W), mask=s_rows & nxt, other=0)
            xv_n = gl.load(x_ptr + x_off + (it + 1) * (128 * W), mask=x_rows & nxt, other=0.0)
        acc = _tile_mma(wp, sc, xv, acc, W, BN, BM, LW4, la, lb)
        if PREFETCH:
            wp = wp_n
            sc = sc_n
            xv = xv_n
        else:
            nxt = (it + 1) < n_it
            wp = gl.load(w_ptr + w_off + (it + 1) * (64 * W), mask=w_rows & nxt, other=0)
            sc = gl.load(s_ptr + s_off + (it + 1) * (8 * W), mask=s_rows & nxt, other=0)
            xv = gl.load(x_ptr + x_off + (it + 1) * (128 * W), mask=x_rows & nxt, other=0.0)
    out = gl.sum(acc, axis=0)  # [BN, BM]
    LO: gl.constexpr = gl.SliceLayout(0, mma)
    on = gl.arange(0, BN, layout=gl.SliceLayout(1, LO))
    om = gl.arange(0, BM, layout=gl.SliceLayout(0, LO))
    gw = gl.load(gw_ptr)
    if HAS_GA:
        ga = gl.load(ga_ptr + om, mask=om < M, other=0.0)
        out = out * gl.expand_dims(ga * gw, 0)
    else:
        out = out * gw
    if HAS_BIAS:
        bias = gl.load(bias_ptr + n0 + on, mask=(n0 + on) < N, other=0.0).to(gl.float32)
        out = out + gl.expand_dims(bias, 1)
    optr = out_ptr + gl.expand_dims(om, 0) * stride_om + gl.expand_dims(n0 + on, 1)
    gl.store(optr, out.to(gl.bfloat16), mask=(gl.expand_dims(om, 0) < M) & (gl.expand_dims(n0 + on, 1) < N))


def mma_gemv(x, data, scales, gw, ga=None, bias=None, R=1, W=8, prefetch=False):
    M, K = x.shape
    N = data.shape[0]
    BM = 8 if M <= 8 else 16
    assert M <= 16 and K % (128 * W) == 0
    out = torch.empty((M, N), dtype=torch.bfloat16, device=x.device)
    sb = scales.view(torch.uint8)
    mma_gemv_kernel[(triton.cdiv(N, 16 * R),)](
        x, data, sb, gw, ga if ga is not None else gw, bias if bias is not None else gw, out,
        M, N, K, x.stride(0), out.stride(0), data.stride(0), sb.stride(0),
        R=R, BM=BM, W=W, HAS_GA=ga is not None, HAS_BIAS=bias is not None, PREFETCH=prefetch, num_warps=W)
    return out
