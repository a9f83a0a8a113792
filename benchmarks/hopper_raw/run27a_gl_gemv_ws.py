"""Prototype (run 26/27): a warp-specialized M = 1 GEMV for Hopper in Gluon. A loader warp streams
[ROWS, COLS-byte] weight tiles and their [ROWS, COLS / 8] scale tiles by TMA into a ring of STAGES
shared-memory slots; the consumer warps decode each tile (E2M1 -> fp32 by triton_gemm's PTX), multiply
by the activation words (L2) and keep per-(row, chunk) fp32 sums. Motivation (run 26b/26c): the Triton
GEMV runs in one partial wave whose time is a program's load -> compute -> load chain; here the weight
stream runs ahead of the compute. One CTA a ROWS-row block, the whole K."""
import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from vllm_fouroversix.kernels.triton_gemm import _DECODE_F32_ASM

_DEC = gl.constexpr(_DECODE_F32_ASM.value if hasattr(_DECODE_F32_ASM, "value") else _DECODE_F32_ASM)


@gluon.jit
def _loader(w_desc, s_desc, w_ring, s_ring, ready, empty, r0, nk, COLS: gl.constexpr, STAGES: gl.constexpr):
    nbytes: gl.constexpr = w_desc.block_type.nbytes + s_desc.block_type.nbytes
    for i in range(nk):
        s = i % STAGES
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(ready.index(s), nbytes)
        tma.async_copy_global_to_shared(w_desc, [r0, i * COLS], ready.index(s), w_ring.index(s))
        tma.async_copy_global_to_shared(s_desc, [r0, i * (COLS // 8)], ready.index(s), s_ring.index(s))


@gluon.jit
def _e4m3_f32(b):
    """E4M3 bytes (int32, non-negative scales) -> fp32, exact (subnormals through the multiply)."""
    e = (b >> 3) & 15
    m = b & 7
    normal = (((e + 120) << 23) | (m << 20)).to(gl.float32, bitcast=True)
    return gl.where(e == 0, m.to(gl.float32) * 0.001953125, normal)


@gluon.jit
def _consumer(w_ring, s_ring, ready, empty, x_ptr, gw_ptr, out_ptr, r0, N, nk,
              ROWS: gl.constexpr, COLS: gl.constexpr, STAGES: gl.constexpr, num_warps: gl.constexpr):
    CH: gl.constexpr = COLS // 16
    T1: gl.constexpr = CH if CH < 32 else 32
    T0: gl.constexpr = 32 // T1
    # each thread: 16 contiguous weight bytes (two 8-byte blocks) of one row
    L4: gl.constexpr = gl.BlockedLayout([1, 1, 2, 8], [T0, T1, 1, 1], [num_warps, 1, 1, 1], [3, 2, 1, 0])
    L3: gl.constexpr = gl.SliceLayout(3, L4)
    c = gl.arange(0, CH, layout=gl.SliceLayout(0, gl.SliceLayout(2, gl.SliceLayout(3, L4))))
    h = gl.arange(0, 2, layout=gl.SliceLayout(0, gl.SliceLayout(0, gl.SliceLayout(3, L4))))
    j = gl.arange(0, 8, layout=gl.SliceLayout(0, gl.SliceLayout(0, gl.SliceLayout(0, L4))))
    c4 = gl.expand_dims(gl.expand_dims(gl.expand_dims(c, 0), 2), 3)
    h4 = gl.expand_dims(gl.expand_dims(gl.expand_dims(h, 0), 0), 3)
    j4 = gl.expand_dims(gl.expand_dims(gl.expand_dims(j, 0), 0), 0)
    koff = c4 * 16 + h4 * 8 + j4  # [1, CH, 2, 8] byte (= activation word) offsets in a K tile
    x_words = x_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    acc = gl.zeros([ROWS, CH, 2], gl.float32, L3)
    for i in range(nk):
        st = i % STAGES
        xw = gl.load(x_words + (i * COLS + koff))  # activation words of this K tile (L2), before the wait
        mbarrier.wait(ready.index(st), (i // STAGES) & 1)
        wb = w_ring.index(st).reshape([ROWS, CH, 2, 8]).load(L4)
        sb = s_ring.index(st).reshape([ROWS, CH, 2]).load(L3)
        gl.thread_barrier()
        mbarrier.arrive(empty.index(st))
        lo, hi = gl.inline_asm_elementwise(_DEC, "=r,=r,=r,=r,=r,=r,=r,=r,r", [wb], dtype=(gl.float32, gl.float32),
                                           is_pure=True, pack=4)
        xe = (xw << 16).to(gl.float32, bitcast=True)
        xo = (xw & -65536).to(gl.float32, bitcast=True)
        t = gl.sum(lo * xe + hi * xo, axis=3)  # in-thread: the block's 16 products
        acc += t * _e4m3_f32(sb.to(gl.int32))
    tot = gl.sum(gl.sum(acc, axis=2), axis=1)  # [ROWS]
    LR: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, L3))
    rows = r0 + gl.arange(0, ROWS, layout=LR)
    gw = gl.load(gw_ptr)
    gl.store(out_ptr + rows, (tot * gw).to(out_ptr.dtype.element_ty), mask=rows < N)


@gluon.jit
def gemv_ws_kernel(w_desc, s_desc, x_ptr, gw_ptr, out_ptr, N, K,
                   ROWS: gl.constexpr, COLS: gl.constexpr, STAGES: gl.constexpr, num_warps: gl.constexpr):
    r0 = gl.program_id(0) * ROWS
    nk = (K // 2) // COLS
    w_ring = gl.allocate_shared_memory(gl.uint8, [STAGES, ROWS, COLS], w_desc.layout)
    s_ring = gl.allocate_shared_memory(gl.uint8, [STAGES, ROWS, COLS // 8], s_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for q in gl.static_range(STAGES):
        mbarrier.init(ready.index(q), count=1)
        mbarrier.init(empty.index(q), count=1)
    gl.warp_specialize([
        (_consumer, (w_ring, s_ring, ready, empty, x_ptr, gw_ptr, out_ptr, r0, N, nk, ROWS, COLS, STAGES, num_warps)),
        (_loader, (w_desc, s_desc, w_ring, s_ring, ready, empty, r0, nk, COLS, STAGES)),
    ], [1], [40])


def _plain(shape):
    return gl.NVMMASharedLayout(swizzle_byte_width=0, element_bitwidth=8, rank=2)


def descs(data: torch.Tensor, sbytes: torch.Tensor, rows: int, cols: int):
    w_desc = TensorDescriptor.from_tensor(data, [rows, cols], _plain([rows, cols]))
    s_desc = TensorDescriptor.from_tensor(sbytes, [rows, cols // 8], _plain([rows, cols // 8]))
    return w_desc, s_desc


def gemv_ws(x: torch.Tensor, data: torch.Tensor, sbytes: torch.Tensor, gw: torch.Tensor, rows: int = 16,
            cols: int = 256, stages: int = 4, warps: int = 4, d=None, maxnreg=None) -> torch.Tensor:
    """x [1, K] bf16 (contiguous) x NVFP4 weight -> [1, N] bf16. K / 2 a multiple of cols."""
    N, KB = data.shape
    K = KB * 2
    assert x.shape == (1, K) and x.dtype == torch.bfloat16 and KB % cols == 0
    out = torch.empty((1, N), dtype=torch.bfloat16, device=x.device)
    w_desc, s_desc = d if d is not None else descs(data, sbytes, rows, cols)
    gemv_ws_kernel[(triton.cdiv(N, rows),)](w_desc, s_desc, x, gw, out, N, K, ROWS=rows, COLS=cols,
                                           STAGES=stages, num_warps=warps,
                                           **({} if maxnreg is None else {"maxnreg": maxnreg}))
    return out
