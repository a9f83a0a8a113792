"""Run 26: read floors by TMA (Gluon): persistent CTAs stream [ROWS, COLS] byte tiles of a buffer into a
ring of STAGES shared-memory slots (one mbarrier a slot). READ: the CTA's warps also read each tile from
shared memory (XOR-reduced), as a consumer would; else the slot is refilled as soon as it lands."""
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor


@gluon.jit
def _issue(desc, smem, bars, j, pid, npg, KT, ROWS: gl.constexpr, COLS: gl.constexpr, STAGES: gl.constexpr):
    t = pid + j * npg
    s = j % STAGES
    mbarrier.expect(bars.index(s), desc.block_type.nbytes)
    tma.async_copy_global_to_shared(desc, [(t // KT) * ROWS, (t % KT) * COLS], bars.index(s), smem.index(s))


@gluon.jit
def tma_read_kernel(desc, out_ptr, T, KT, ROWS: gl.constexpr, COLS: gl.constexpr, STAGES: gl.constexpr,
                    READ: gl.constexpr, num_warps: gl.constexpr):
    pid = gl.program_id(0)
    npg = gl.num_programs(0)
    smem = gl.allocate_shared_memory(gl.uint8, [STAGES, ROWS, COLS], desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(bars.index(i), count=1)
    my = (T - pid + npg - 1) // npg
    for j in range(gl.minimum(my, STAGES)):
        _issue(desc, smem, bars, j, pid, npg, KT, ROWS, COLS, STAGES)
    L: gl.constexpr = gl.BlockedLayout([1, 16], [32 * 16 // COLS, COLS // 16], [num_warps, 1], [1, 0])
    acc = gl.zeros([ROWS], gl.int32, gl.SliceLayout(1, L))
    for j in range(my):
        st = j % STAGES
        mbarrier.wait(bars.index(st), (j // STAGES) & 1)
        if READ:
            acc ^= gl.reduce(smem.index(st).load(L).to(gl.int32), 1, _xor)
            gl.thread_barrier()
        if j + STAGES < my:
            _issue(desc, smem, bars, j + STAGES, pid, npg, KT, ROWS, COLS, STAGES)
    r = gl.reduce(acc, 0, _xor)
    gl.store(out_ptr + pid, r)


@gluon.jit
def _xor(a, b):
    return a ^ b


def launch(buf, out, rows, cols, stages, ctas, read, warps=4, desc=None):
    R, C = buf.shape
    if desc is None:
        desc = make_desc(buf, rows, cols)
    kt = C // cols
    T = (R // rows) * kt
    tma_read_kernel[(min(ctas, T),)](desc, out, T, kt, ROWS=rows, COLS=cols, STAGES=stages, READ=read,
                                     num_warps=warps)


def make_desc(buf, rows, cols):
    lay = gl.NVMMASharedLayout.get_default_for([rows, cols], gl.uint8)
    return TensorDescriptor.from_tensor(buf, [rows, cols], lay)
