"""Experiment (session 38, prepared; not in the package): the Gluon wgmma kernel with the K loop split
between two pairs of MMA warp groups inside one CTA (intra-CTA split-K), for partial waves.

Run 38b: a 64-row tile takes ~790 cycles a K step where its MMAs need 256 and its decode ~274 issue
cycles: each warp group's chain (wait, decode, MMA, wait for it) is latency-bound, and one CTA an SM
has two such chains. Here four MMA warp groups: (r, h) owns weight rows 64r.. of the CTA's 128 and
K steps of half h; each half has its own TMA ring, so the halves run independently. At the end
warp group (r, 1) puts its accumulator in shared memory and (r, 0) adds it (fixed order:
half 0 + half 1) before the usual epilogue. Same tiles, same grid: twice the chains an SM.
"""
from __future__ import annotations

import torch

from vllm_fouroversix.kernels import gluon_wgmma as g
from vllm_fouroversix.kernels.device import pdl_launch
from vllm_fouroversix.kernels.launch import FastKernel
from vllm_fouroversix.nvfp4 import ceil_div

gl, gluon, mbarrier, tma = g.gl, g.gluon, g.mbarrier, g.tma
warpgroup_mma, warpgroup_mma_wait = g.warpgroup_mma, g.warpgroup_mma_wait
gdc_wait = g.gdc_wait
_byte_layout, _block_layout, _perm_layout, _word_layout = g._byte_layout, g._block_layout, g._perm_layout, g._word_layout
_load_words_perm, _decode_perm, _load_bytes, _decode = g._load_words_perm, g._decode_perm, g._load_bytes, g._decode
scaled_epilogue = g.scaled_epilogue
_BK = g._BK

REGS = 96  # MMA partitions' registers (4 x 128 threads + the loader's 32 in 20 warps: 65536 / 640 = 102)


@gluon.jit
def _loader2(x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, nk, nk2,
             STAGES: gl.constexpr, PDL: gl.constexpr):
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes
    first = 0
    if PDL:
        first = gl.minimum(nk2, STAGES)
        for i in range(first):
            for h in gl.static_range(2):
                k = h * nk2 + i
                if k < nk:
                    b = h * STAGES + i
                    mbarrier.expect(ready.index(b), nbytes)
                    tma.async_copy_global_to_shared(w_desc, [n0, k * (_BK // 2)], ready.index(b), w0_smem.index(b))
                    tma.async_copy_global_to_shared(w_desc, [n0 + 64, k * (_BK // 2)], ready.index(b),
                                                    w1_smem.index(b))
        gdc_wait()
        for i in range(first):
            for h in gl.static_range(2):
                k = h * nk2 + i
                if k < nk:
                    b = h * STAGES + i
                    tma.async_copy_global_to_shared(x_desc, [m0, k * _BK], ready.index(b), x_smem.index(b))
    for i in range(first, nk2):
        s = i % STAGES
        ph = ((i // STAGES) & 1) ^ 1
        for h in gl.static_range(2):
            k = h * nk2 + i
            if k < nk:
                b = h * STAGES + s
                mbarrier.wait(empty.index(b), ph)
                mbarrier.expect(ready.index(b), nbytes)
                tma.async_copy_global_to_shared(x_desc, [m0, k * _BK], ready.index(b), x_smem.index(b))
                tma.async_copy_global_to_shared(w_desc, [n0, k * (_BK // 2)], ready.index(b), w0_smem.index(b))
                tma.async_copy_global_to_shared(w_desc, [n0 + 64, k * (_BK // 2)], ready.index(b), w1_smem.index(b))


@gluon.jit
def _mma_half(x_smem, w_smem, ready, empty, red, red_bar, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
              M, N, nk, nk2, stride_s, stride_om, stride_ga, n0, m0, TBM: gl.constexpr, STAGES: gl.constexpr,
              GW_VEC: gl.constexpr, HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr, PDL: gl.constexpr,
              PERM: gl.constexpr, H: gl.constexpr):
    """Warp group (r, H): weight rows n0.. (64) x out rows m0.. (TBM), K steps of half H."""
    LA: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, TBM, 16])
    LW: gl.constexpr = _byte_layout()
    LW3: gl.constexpr = _block_layout()
    LP3: gl.constexpr = _perm_layout()
    if PERM:
        LS: gl.constexpr = gl.SliceLayout(2, LP3)
    else:
        LS: gl.constexpr = gl.SliceLayout(2, LW3)
    LWW3: gl.constexpr = _word_layout()
    bc = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, LWW3)))
    bsel = gl.expand_dims(gl.expand_dims(bc, 0), 1) * 0x11 + 0x40
    sn = gl.arange(0, 64, layout=gl.SliceLayout(1, LS))
    sel = gl.expand_dims(gl.arange(0, 4, layout=gl.SliceLayout(0, LS)), 0) * 0x101 + 0x4040
    s_in = (n0 + sn) < N
    k0 = H * nk2
    cnt = gl.minimum(nk - k0, nk2)
    s_words = s_ptr.to(gl.pointer_type(gl.int32), bitcast=True) + (n0 + sn).to(gl.int64) * (stride_s // 4) + k0
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
        sw = gl.load(s_words + (i + 1), mask=s_in & (i + 1 < cnt), other=0)
        acc = warpgroup_mma(a, x_smem.index(st).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        mbarrier.arrive(empty.index(st))
    if H == 1:
        red.store(acc)
        gl.thread_barrier()  # every thread's part is in shared memory before the one arrival
        mbarrier.arrive(red_bar)
    else:
        mbarrier.wait(red_bar, 0)
        acc = acc + red.load(LA)  # half 0 + half 1
        on = n0 + gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(1, LA)), 1)
        if PDL:
            gdc_wait()
        if HAS_GA:
            if TBM >= 128:
                LG: gl.constexpr = gl.BlockedLayout([TBM // 128], [32], [4], [0])
            else:
                LG: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
            mg = m0 + gl.arange(0, TBM, layout=LG)
            ga = gl.load(ga_ptr + mg * stride_ga, mask=mg < M, other=0.0)
            ga = gl.expand_dims(gl.convert_layout(ga, gl.SliceLayout(0, LA)), 0)
        else:
            ga = acc
        res = scaled_epilogue(acc * 256.0, on, ga, N, gw_ptr, bias_ptr, GW_VEC, HAS_GA, HAS_BIAS)
        LO: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
        res = gl.convert_layout(gl.permute(res.to(out_ptr.dtype.element_ty), (1, 0)), LO)
        om2 = m0 + gl.expand_dims(gl.arange(0, TBM, layout=gl.SliceLayout(1, LO)), 1)
        on2 = n0 + gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(0, LO)), 0)
        gl.store(out_ptr + om2.to(gl.int64) * stride_om + on2, res, mask=(om2 < M) & (on2 < N))


@gluon.jit
def _fp4_wgmma_ks2_kernel(x_desc, w_desc, s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr, M, N, K, stride_s, stride_om,
                          stride_ga, TBM: gl.constexpr, STAGES: gl.constexpr, GW_VEC: gl.constexpr,
                          HAS_GA: gl.constexpr, HAS_BIAS: gl.constexpr, PDL: gl.constexpr = False,
                          PERM: gl.constexpr = False, R: gl.constexpr = 96):
    n0 = gl.program_id(0) * 128
    m0 = gl.program_id(1) * TBM
    nk = K // _BK
    nk2 = (nk + 1) // 2
    x_smem = gl.allocate_shared_memory(gl.bfloat16, [2 * STAGES, TBM, _BK], x_desc.layout)
    w0_smem = gl.allocate_shared_memory(gl.uint8, [2 * STAGES, 64, _BK // 2], w_desc.layout)
    w1_smem = gl.allocate_shared_memory(gl.uint8, [2 * STAGES, 64, _BK // 2], w_desc.layout)
    red_l: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0])
    red0 = gl.allocate_shared_memory(gl.float32, [64, TBM], red_l)
    red1 = gl.allocate_shared_memory(gl.float32, [64, TBM], red_l)
    ready = gl.allocate_shared_memory(gl.int64, [2 * STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [2 * STAGES, 1], mbarrier.MBarrierLayout())
    red_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(2 * STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2)
    for r in gl.static_range(2):
        mbarrier.init(red_bar.index(r), count=1)
    gl.warp_specialize([
        (_mma_half, (x_smem, w0_smem, ready, empty, red0, red_bar.index(0), s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                     M, N, nk, nk2, stride_s, stride_om, stride_ga, n0, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS,
                     PDL, PERM, 0)),
        (_mma_half, (x_smem, w1_smem, ready, empty, red1, red_bar.index(1), s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                     M, N, nk, nk2, stride_s, stride_om, stride_ga, n0 + 64, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS,
                     PDL, PERM, 0)),
        (_mma_half, (x_smem, w0_smem, ready, empty, red0, red_bar.index(0), s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                     M, N, nk, nk2, stride_s, stride_om, stride_ga, n0, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS,
                     PDL, PERM, 1)),
        (_mma_half, (x_smem, w1_smem, ready, empty, red1, red_bar.index(1), s_ptr, gw_ptr, ga_ptr, bias_ptr, out_ptr,
                     M, N, nk, nk2, stride_s, stride_om, stride_ga, n0 + 64, m0, TBM, STAGES, GW_VEC, HAS_GA, HAS_BIAS,
                     PDL, PERM, 1)),
        (_loader2, (x_desc, w_desc, x_smem, w0_smem, w1_smem, ready, empty, m0, n0, nk, nk2, STAGES, PDL)),
    ], [4, 4, 4, 1], [R, R, R, 40])


_KS2 = FastKernel(_fp4_wgmma_ks2_kernel)


def fp4_wgmma_ks2_gemm(a: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor, gw: torch.Tensor,
                       ga: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, stride_ga: int, flags: dict,
                       tbm: int = 64, stages: int = 4, pdl: bool = False, perm: bool = False,
                       regs: int = REGS) -> torch.Tensor:
    """As gluon_wgmma.fp4_wgmma_gemm (one launch of 128 x tbm tiles), with the K loop split in two inside
    each CTA."""
    M, K = a.shape
    N = data.shape[0]
    x_desc = g.TensorDescriptor.from_tensor(a, [tbm, g.BK], g._x_layout(tbm))
    w_desc = g._weight_desc(data, 0, N)
    _KS2[(ceil_div(N, g.BN), ceil_div(M, tbm))](
        x_desc, w_desc, sbytes, gw, ga, bias, out, M, N, K, sbytes.stride(0), out.stride(0), stride_ga,
        TBM=tbm, STAGES=stages, PERM=perm, R=regs, **flags, num_warps=4, **pdl_launch(pdl))
    return out
