"""Persistent NVFP4 block-scaled GEMM for Blackwell (sm_100a / sm_103a), CuTe DSL.

    out[m, n] = (sum_k A[m,k]*sA[m,k/16] * W[n,k]*sW[n,k/16]) * (gA * gW) (+ bias[n])

SPEC section 3. A [M, K] and W [N, K] are packed E2M1 (two codes a byte, K-major),
sA/sW are E4M3 block scales (one per 16 elements along K) in the 128x4 swizzled
layout, the accumulator is FP32 in tensor memory, the output is bf16 or fp16.
gA is one FP32 scalar (per-tensor / static activation scale) or one per row
(per-token); gW is one scalar or one per output column (fused shards whose
checkpoint scales differ). Both are read from device memory, so a call never
synchronises with the host.

The structure follows the persistent block-scaled GEMM of the CUTLASS DSL
examples (NVIDIA/cutlass, BSD-3-Clause,
``examples/python/CuTeDSL/cute/blackwell/kernel/blockscaled_gemm/
dense_blockscaled_gemm_persistent.py``); this is our own, reduced version: NVF4 only,
K-major operands, row-major output, MMA N tile 64 or 128, and an epilogue that
applies the 4/6 global scales and the bias. Warp roles of one CTA (192 threads):

- warp 5 (producer): TMA loads A, W, sA, sW tiles of one K step into an
  ``num_ab_stage``-deep shared-memory ring (``PipelineTmaUmma``); with clusters
  the loads are multicast to the CTAs that share a tile row/column.
- warp 4 (MMA): copies the scale tiles smem -> tensor memory (``tcgen05.cp``)
  and issues ``tcgen05.mma.kind::mxf4nvf4.block_scale.block16`` into an FP32
  accumulator in tensor memory; two accumulator buffers (``PipelineUmmaAsync``)
  let the epilogue of tile i overlap the main loop of tile i+1.
- warps 0-3 (epilogue): ``tcgen05.ld`` the accumulator subtile into registers,
  multiply by gA[row] * gW[col], add bias[col], convert, store to smem and TMA
  store to global memory.

A tile with MMA M = 256 uses the 2-CTA instruction (``CtaGroup.TWO``): a pair of
CTAs in the cluster computes one 256 x N tile, each holding 128 rows.
Every CTA walks tiles with the static persistent scheduler (grid = the number of
clusters that fit on the GPU), so the prologue (barrier init, TMEM allocation)
is paid once per CTA, not per tile.

Shapes: any M >= 1 (TMA fills rows beyond M with zeros on load and clips them on
store); K a multiple of 32 (16-byte TMA row pitch of packed FP4: see
``layout.pad_k``); N a multiple of 8 (16-byte pitch of a bf16/fp16 output row).
Scale tensors are padded to 128 rows and K/64 columns (``layout``).

Nothing here imports at package import time: ``cutlass_kernels/__init__`` loads
this module only when a kernel is built.
"""

from __future__ import annotations

from typing import Tuple

import cuda.bindings.driver as cuda

import cutlass
import cutlass.memory
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils as utils
import cutlass.utils.blackwell_helpers as sm100_utils
import cutlass.utils.blockscaled_layout as blockscaled_utils
from cutlass.cute.nvgpu import OperandMajorMode, cpasync, tcgen05
from cutlass.pipeline import pipeline_init_arrive, pipeline_init_wait

SF_VEC_SIZE = 16  # NVFP4: one E4M3 scale per 16 elements along K
MMA_TILE_M = (128, 256)
MMA_TILE_N = (64, 128)

OUT_DTYPES = {"bfloat16": cutlass.BFloat16, "float16": cutlass.Float16}


def validate_config(tile_mn: Tuple[int, int], cluster_mn: Tuple[int, int]) -> None:
    """Raise ValueError for a tile/cluster this kernel does not implement."""
    tm, tn = tile_mn
    cm, cn = cluster_mn
    if tm not in MMA_TILE_M or tn not in MMA_TILE_N:
        raise ValueError(f"MMA tile {tile_mn}: M must be in {MMA_TILE_M}, N in {MMA_TILE_N}")
    pow2 = lambda v: v > 0 and v & (v - 1) == 0  # noqa: E731
    if not (pow2(cm) and pow2(cn)) or cm > 4 or cn > 4:
        # scale tiles are multicast to at most 4 CTAs
        raise ValueError(f"cluster {cluster_mn}: each side a power of 2, at most 4")
    if tm == 256 and cm % 2:
        raise ValueError("the 2-CTA tile (M=256) needs an even cluster M")


class BlockScaledGemm:
    """One compiled variant of the GEMM: tile, cluster, output dtype, epilogue mode.

    ``row_scale``: gA is a vector over rows (per-token) instead of one scalar.
    ``col_scale``: gW is a vector over output columns instead of one scalar.
    ``bias``: add a bias vector (out dtype) over columns.
    """

    def __init__(
        self,
        tile_mn: Tuple[int, int],
        cluster_mn: Tuple[int, int],
        out_dtype: str = "bfloat16",
        row_scale: bool = True,
        col_scale: bool = False,
        bias: bool = False,
    ):
        validate_config(tile_mn, cluster_mn)
        self.out_dtype = OUT_DTYPES[out_dtype]
        self.row_scale = row_scale
        self.col_scale = col_scale
        self.has_bias = bias
        self.acc_dtype = cutlass.Float32
        self.ab_dtype = cutlass.Float4E2M1FN
        self.sf_dtype = cutlass.Float8E4M3FN
        self.cluster_shape_mn = tuple(cluster_mn)
        self.use_2cta = tile_mn[0] == 256
        self.cta_group = tcgen05.CtaGroup.TWO if self.use_2cta else tcgen05.CtaGroup.ONE
        self.mma_tiler_mn = tuple(tile_mn)

        # warp roles
        self.epi_warps = (0, 1, 2, 3)
        self.mma_warp = 4
        self.tma_warp = 5
        self.threads_per_cta = 32 * 6
        self.epi_barrier = pipeline.NamedBarrier(barrier_id=1, num_threads=32 * len(self.epi_warps))
        self.tmem_barrier = pipeline.NamedBarrier(
            barrier_id=2, num_threads=32 * (len(self.epi_warps) + 1)
        )
        self.smem_capacity = utils.get_smem_capacity_in_bytes("sm_100")
        self.tmem_cols = cute.arch.get_max_tmem_alloc_cols("sm_100")

    # ------------------------------------------------------------------ setup
    def _make_tiled_mmas(self):
        """The MMA of the tile, and the 1-CTA MMA whose B shape tiles the sW load.

        The W scale tile always spans a multiple of 128 rows of N (one scale atom
        is 128 x 4), so for N tile 64 the sW load covers two N tiles and the MMA
        warp offsets into it (see the main loop).
        """
        mma = sm100_utils.make_blockscaled_trivial_tiled_mma(
            self.ab_dtype, self.ab_dtype, OperandMajorMode.K, OperandMajorMode.K,
            self.sf_dtype, SF_VEC_SIZE, self.cta_group, self.mma_tiler_mn,
        )
        sfb_mn = (self.mma_tiler_mn[0] // (2 if self.use_2cta else 1),
                  cute.round_up(self.mma_tiler_mn[1], 128))
        mma_sfb = sm100_utils.make_blockscaled_trivial_tiled_mma(
            self.ab_dtype, self.ab_dtype, OperandMajorMode.K, OperandMajorMode.K,
            self.sf_dtype, SF_VEC_SIZE, tcgen05.CtaGroup.ONE, sfb_mn,
        )
        return mma, mma_sfb, sfb_mn

    def _setup(self):
        mma, mma_sfb, sfb_mn = self._make_tiled_mmas()
        # One K step = 4 MMA instructions (4 x 64 FP4 elements = 256 = 16 scales).
        inst_k = cute.size(mma.shape_mnk, mode=[2])
        k_step = inst_k * 4
        self.mma_tiler = (*self.mma_tiler_mn, k_step)
        self.mma_tiler_sfb = (*sfb_mn, k_step)
        v = cute.size(mma.thr_id.shape)  # 2 for the 2-CTA instruction
        self.cta_tile = (self.mma_tiler[0] // v, self.mma_tiler[1], k_step)
        self.cta_tile_sfb = (self.mma_tiler_sfb[0] // v, self.mma_tiler_sfb[1], k_step)

        self.cluster_vmnk = cute.tiled_divide(
            cute.make_layout((*self.cluster_shape_mn, 1)), (mma.thr_id.shape,)
        )
        self.cluster_sfb_vmnk = cute.tiled_divide(
            cute.make_layout((*self.cluster_shape_mn, 1)), (mma_sfb.thr_id.shape,)
        )
        self.mcast_a = cute.size(self.cluster_vmnk.shape[2])
        self.mcast_b = cute.size(self.cluster_vmnk.shape[1])

        self.c_layout = utils.LayoutEnum.ROW_MAJOR
        self.epi_tile = sm100_utils.compute_epilogue_tile_shape(
            self.cta_tile, self.use_2cta, self.c_layout, self.out_dtype
        )

        self.num_acc_stage = 2  # N tile <= 128: two accumulators fit in TMEM
        self.num_ab_stage, self.num_c_stage = self._stages(mma)
        self.a_smem = sm100_utils.make_smem_layout_a(mma, self.mma_tiler, self.ab_dtype, self.num_ab_stage)
        self.b_smem = sm100_utils.make_smem_layout_b(mma, self.mma_tiler, self.ab_dtype, self.num_ab_stage)
        self.sfa_smem = blockscaled_utils.make_smem_layout_sfa(mma, self.mma_tiler, SF_VEC_SIZE, self.num_ab_stage)
        self.sfb_smem = blockscaled_utils.make_smem_layout_sfb(mma, self.mma_tiler, SF_VEC_SIZE, self.num_ab_stage)
        self.c_smem = sm100_utils.make_smem_layout_epi(self.out_dtype, self.c_layout, self.epi_tile, self.num_c_stage)

        # TMEM columns: accumulators first, then the sA and sW tiles of one K step
        # (32 lanes x 4 scales per column word; 4 MMA instructions per K step).
        self.acc_cols = self.cta_tile[1] * self.num_acc_stage
        self.sfa_cols = (self.cta_tile[0] // 32) * 4
        self.sfb_cols = (self.cta_tile_sfb[1] // 32) * 4
        assert self.acc_cols + self.sfa_cols + self.sfb_cols <= self.tmem_cols
        return mma, mma_sfb

    def _stages(self, mma) -> Tuple[int, int]:
        """Fill shared memory: as many A/B/scale stages as fit beside 2 C stages."""
        one = lambda f, *a: f(mma, self.mma_tiler, *a, 1)  # noqa: E731
        ab_bytes = (
            cute.size_in_bytes(self.ab_dtype, one(sm100_utils.make_smem_layout_a, self.ab_dtype))
            + cute.size_in_bytes(self.ab_dtype, one(sm100_utils.make_smem_layout_b, self.ab_dtype))
            + cute.size_in_bytes(self.sf_dtype, one(blockscaled_utils.make_smem_layout_sfa, SF_VEC_SIZE))
            + cute.size_in_bytes(self.sf_dtype, one(blockscaled_utils.make_smem_layout_sfb, SF_VEC_SIZE))
        )
        c_bytes = cute.size_in_bytes(
            self.out_dtype, sm100_utils.make_smem_layout_epi(self.out_dtype, self.c_layout, self.epi_tile, 1)
        )
        reserved = 1024  # barriers and the TMEM address
        ab_stages = (self.smem_capacity - reserved - 2 * c_bytes) // ab_bytes
        c_stages = 2 + (self.smem_capacity - reserved - 2 * c_bytes - ab_stages * ab_bytes) // c_bytes
        return ab_stages, c_stages

    # ------------------------------------------------------------------- host
    @cute.jit
    def __call__(
        self,
        a_ptr: cute.Pointer,
        b_ptr: cute.Pointer,
        sfa_ptr: cute.Pointer,
        sfb_ptr: cute.Pointer,
        c_ptr: cute.Pointer,
        a_scale_ptr: cute.Pointer,
        w_scale_ptr: cute.Pointer,
        bias_ptr: cute.Pointer,
        m: cutlass.Int32,
        n: cutlass.Int32,
        k: cutlass.Int32,
        max_active_clusters: cutlass.Constexpr,
        stream: cuda.CUstream,
    ):
        mma, mma_sfb = self._setup()

        # Global tensors (batch mode L = 1 kept for the CuTe helpers).
        # K-major A/W: the row pitch K/2 bytes is a multiple of 16 (K % 32 == 0).
        mA = cute.make_tensor(a_ptr, cute.make_ordered_layout((m, cute.assume(k, 32), 1), order=(1, 0, 2)))
        mB = cute.make_tensor(b_ptr, cute.make_ordered_layout((n, cute.assume(k, 32), 1), order=(1, 0, 2)))
        mC = cute.make_tensor(c_ptr, cute.make_ordered_layout((m, cute.assume(n, 8), 1), order=(1, 0, 2)))
        # Scales: the 128x4 atom tiled over (rows, K): SPEC section 3's swizzle.
        mSFA = cute.make_tensor(sfa_ptr, blockscaled_utils.tile_atom_to_shape_SF(mA.shape, SF_VEC_SIZE))
        mSFB = cute.make_tensor(sfb_ptr, blockscaled_utils.tile_atom_to_shape_SF(mB.shape, SF_VEC_SIZE))
        # Epilogue vectors: a 1-element tensor in scalar mode.
        mAS = cute.make_tensor(a_scale_ptr, cute.make_layout(m if self.row_scale else 1))
        mWS = cute.make_tensor(w_scale_ptr, cute.make_layout(n if self.col_scale else 1))
        mBias = cute.make_tensor(bias_ptr, cute.make_layout(n if self.has_bias else 1))

        # TMA descriptors (multicast variants chosen by the cluster shape).
        v = cute.size(mma.thr_id.shape)
        a_s0 = cute.slice_(self.a_smem, (None, None, None, 0))
        b_s0 = cute.slice_(self.b_smem, (None, None, None, 0))
        sfa_s0 = cute.slice_(self.sfa_smem, (None, None, None, 0))
        sfb_s0 = cute.slice_(self.sfb_smem, (None, None, None, 0))
        tma_a, tA = cute.nvgpu.make_tiled_tma_atom_A(
            sm100_utils.cluster_shape_to_tma_atom_A(self.cluster_shape_mn, mma.thr_id),
            mA, a_s0, self.mma_tiler, mma, self.cluster_vmnk.shape,
        )
        tma_b, tB = cute.nvgpu.make_tiled_tma_atom_B(
            sm100_utils.cluster_shape_to_tma_atom_B(self.cluster_shape_mn, mma.thr_id),
            mB, b_s0, self.mma_tiler, mma, self.cluster_vmnk.shape,
        )
        # Scales move as 16-bit words (pairs of E4M3) to satisfy TMA's minimum width.
        tma_sfa, tSFA = cute.nvgpu.make_tiled_tma_atom_A(
            sm100_utils.cluster_shape_to_tma_atom_A(self.cluster_shape_mn, mma.thr_id),
            mSFA, sfa_s0, self.mma_tiler, mma, self.cluster_vmnk.shape,
            internal_type=cutlass.Int16,
        )
        tma_sfb, tSFB = cute.nvgpu.make_tiled_tma_atom_B(
            sm100_utils.cluster_shape_to_tma_atom_SFB(self.cluster_shape_mn, mma.thr_id),
            mSFB, sfb_s0, self.mma_tiler_sfb, mma_sfb, self.cluster_sfb_vmnk.shape,
            internal_type=cutlass.Int16,
        )
        self.tma_bytes = v * (
            cute.size_in_bytes(self.ab_dtype, a_s0) + cute.size_in_bytes(self.ab_dtype, b_s0)
            + cute.size_in_bytes(self.sf_dtype, sfa_s0) + cute.size_in_bytes(self.sf_dtype, sfb_s0)
        )
        tma_c, tC = cpasync.make_tiled_tma_atom(
            cpasync.CopyBulkTensorTileS2GOp(), mC,
            cute.slice_(self.c_smem, (None, None, 0)), self.epi_tile,
        )

        # Persistent grid: one CTA per SM-slot, tiles rastered along M.
        tiles = cute.zipped_divide(mC, tiler=cute.slice_(self.cta_tile, (None, None, 0)))
        sched = utils.PersistentTileSchedulerParams(
            tiles[(0, (None, None, None))].shape, (*self.cluster_shape_mn, 1), 1, True
        )
        grid = utils.StaticPersistentTileScheduler.get_grid_shape(sched, max_active_clusters)

        align = 1024

        @cute.struct
        class Storage:
            ab_full: cute.struct.MemRange[cutlass.Int64, self.num_ab_stage]
            ab_empty: cute.struct.MemRange[cutlass.Int64, self.num_ab_stage]
            acc_full: cute.struct.MemRange[cutlass.Int64, self.num_acc_stage]
            acc_empty: cute.struct.MemRange[cutlass.Int64, self.num_acc_stage]
            tmem_dealloc: cutlass.Int64
            tmem_addr: cutlass.Int32
            sC: cute.struct.Align[cute.struct.MemRange[self.out_dtype, cute.cosize(self.c_smem.outer)], align]
            sA: cute.struct.Align[cute.struct.MemRange[self.ab_dtype, cute.cosize(self.a_smem.outer)], align]
            sB: cute.struct.Align[cute.struct.MemRange[self.ab_dtype, cute.cosize(self.b_smem.outer)], align]
            sSFA: cute.struct.Align[cute.struct.MemRange[self.sf_dtype, cute.cosize(self.sfa_smem)], align]
            sSFB: cute.struct.Align[cute.struct.MemRange[self.sf_dtype, cute.cosize(self.sfb_smem)], align]

        self.storage = Storage

        self.kernel(
            mma, mma_sfb, tma_a, tA, tma_b, tB, tma_sfa, tSFA, tma_sfb, tSFB, tma_c, tC,
            mC, mAS, mWS, mBias, self.cluster_vmnk, self.cluster_sfb_vmnk,
            self.a_smem, self.b_smem, self.sfa_smem, self.sfb_smem, self.c_smem,
            self.epi_tile, sched,
        ).launch(
            grid=grid,
            block=[self.threads_per_cta, 1, 1],
            cluster=(*self.cluster_shape_mn, 1),
            stream=stream,
            min_blocks_per_mp=1,
        )

    # ----------------------------------------------------------------- device
    @cute.kernel
    def kernel(
        self,
        mma: cute.TiledMma,
        mma_sfb: cute.TiledMma,
        tma_a: cute.CopyAtom,
        mA: cute.Tensor,
        tma_b: cute.CopyAtom,
        mB: cute.Tensor,
        tma_sfa: cute.CopyAtom,
        mSFA: cute.Tensor,
        tma_sfb: cute.CopyAtom,
        mSFB: cute.Tensor,
        tma_c: cute.CopyAtom,
        mC_tma: cute.Tensor,
        mC: cute.Tensor,
        mAS: cute.Tensor,
        mWS: cute.Tensor,
        mBias: cute.Tensor,
        cluster_vmnk: cute.Layout,
        cluster_sfb_vmnk: cute.Layout,
        a_smem: cute.ComposedLayout,
        b_smem: cute.ComposedLayout,
        sfa_smem: cute.Layout,
        sfb_smem: cute.Layout,
        c_smem: cute.ComposedLayout,
        epi_tile: cute.Tile,
        sched: utils.PersistentTileSchedulerParams,
    ):
        warp = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        if warp == self.tma_warp:
            for atom in (tma_a, tma_b, tma_sfa, tma_sfb, tma_c):
                cpasync.prefetch_descriptor(atom)

        v = cute.size(mma.thr_id.shape)
        two_cta = v == 2
        bidx, _, _ = cute.arch.block_idx()
        peer = bidx % v  # which half of a 2-CTA tile this CTA holds
        is_leader = peer == 0
        rank = cute.arch.make_warp_uniform(cute.arch.block_idx_in_cluster())
        crd_vmnk = cluster_vmnk.get_flat_coord(rank)
        crd_sfb_vmnk = cluster_sfb_vmnk.get_flat_coord(rank)
        tidx, _, _ = cute.arch.thread_idx()

        # ---- shared memory, barriers, TMEM allocator
        storage = cutlass.memory.SmemAllocator().allocate(self.storage)
        ab_pipe = pipeline.PipelineTmaUmma.create(
            barrier_storage=storage.ab_full.data_ptr(),
            num_stages=self.num_ab_stage,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
            consumer_group=pipeline.CooperativeGroup(
                pipeline.Agent.Thread, self.mcast_a + self.mcast_b - 1
            ),
            tx_count=self.tma_bytes,
            cta_layout_vmnk=cluster_vmnk,
            defer_sync=True,
        )
        acc_pipe = pipeline.PipelineUmmaAsync.create(
            barrier_storage=storage.acc_full.data_ptr(),
            num_stages=self.num_acc_stage,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
            consumer_group=pipeline.CooperativeGroup(
                pipeline.Agent.Thread, 32 * len(self.epi_warps) * (2 if two_cta else 1)
            ),
            cta_layout_vmnk=cluster_vmnk,
            defer_sync=True,
        )
        tmem = cutlass.memory.TmemAllocator(
            storage.tmem_addr.ptr,
            barrier_for_retrieve=self.tmem_barrier,
            allocator_warp_id=self.epi_warps[0],
            is_two_cta=two_cta,
            two_cta_tmem_dealloc_mbar_ptr=storage.tmem_dealloc.ptr,
        )
        pipeline_init_arrive(cluster_shape_mn=self.cluster_shape_mn, is_relaxed=True)

        sC = storage.sC.get_tensor(c_smem.outer, swizzle=c_smem.inner)
        sA = storage.sA.get_tensor(a_smem.outer, swizzle=a_smem.inner)
        sB = storage.sB.get_tensor(b_smem.outer, swizzle=b_smem.inner)
        sSFA = storage.sSFA.get_tensor(sfa_smem)
        sSFB = storage.sSFB.get_tensor(sfb_smem)

        # Multicast masks: A/sA go to the CTAs of the same tile row (mode 2),
        # W/sW to those of the same tile column (mode 1).
        mask_a = mask_b = mask_sfa = mask_sfb = None
        if cutlass.const_expr(self.mcast_a > 1 or self.mcast_b > 1 or self.use_2cta):
            mask_a = cpasync.create_tma_multicast_mask(cluster_vmnk, crd_vmnk, mcast_mode=2)
            mask_b = cpasync.create_tma_multicast_mask(cluster_vmnk, crd_vmnk, mcast_mode=1)
            mask_sfa = cpasync.create_tma_multicast_mask(cluster_vmnk, crd_vmnk, mcast_mode=2)
            mask_sfb = cpasync.create_tma_multicast_mask(cluster_sfb_vmnk, crd_sfb_vmnk, mcast_mode=1)

        # ---- global tiles: (tile, tile, RestM/N, RestK, L)
        gA = cute.local_tile(mA, cute.slice_(self.mma_tiler, (None, 0, None)), (None, None, None))
        gB = cute.local_tile(mB, cute.slice_(self.mma_tiler, (0, None, None)), (None, None, None))
        gSFA = cute.local_tile(mSFA, cute.slice_(self.mma_tiler, (None, 0, None)), (None, None, None))
        gSFB = cute.local_tile(mSFB, cute.slice_(self.mma_tiler_sfb, (0, None, None)), (None, None, None))
        gC = cute.local_tile(mC_tma, cute.slice_(self.mma_tiler, (None, None, 0)), (None, None, None))
        # Same tiling of an identity tensor: the (m, n) coordinate of each output.
        cC = cute.local_tile(
            cute.make_identity_tensor(mC.shape), cute.slice_(self.mma_tiler, (None, None, 0)),
            (None, None, None),
        )
        k_steps = cute.size(gA, mode=[3])

        thr = mma.get_slice(peer)
        thr_sfb = mma_sfb.get_slice(peer)
        tCgA = thr.partition_A(gA)
        tCgB = thr.partition_B(gB)
        tCgSFA = thr.partition_A(gSFA)
        tCgSFB = thr_sfb.partition_B(gSFB)
        tCgC = thr.partition_C(gC)
        tCcC = thr.partition_C(cC)

        # TMA partitions: (smem stage view, gmem tile view) per operand.
        a_cta = cute.make_layout(cute.slice_(cluster_vmnk, (0, 0, None, 0)).shape)
        b_cta = cute.make_layout(cute.slice_(cluster_vmnk, (0, None, 0, 0)).shape)
        sfb_cta = cute.make_layout(cute.slice_(cluster_sfb_vmnk, (0, None, 0, 0)).shape)
        tAsA, tAgA = cpasync.tma_partition(
            tma_a, crd_vmnk[2], a_cta, cute.group_modes(sA, 0, 3), cute.group_modes(tCgA, 0, 3)
        )
        tBsB, tBgB = cpasync.tma_partition(
            tma_b, crd_vmnk[1], b_cta, cute.group_modes(sB, 0, 3), cute.group_modes(tCgB, 0, 3)
        )
        tAsSFA, tAgSFA = cpasync.tma_partition(
            tma_sfa, crd_vmnk[2], a_cta, cute.group_modes(sSFA, 0, 3), cute.group_modes(tCgSFA, 0, 3)
        )
        tAsSFA = cute.filter_zeros(tAsSFA)
        tAgSFA = cute.filter_zeros(tAgSFA)
        tBsSFB, tBgSFB = cpasync.tma_partition(
            tma_sfb, crd_sfb_vmnk[1], sfb_cta, cute.group_modes(sSFB, 0, 3), cute.group_modes(tCgSFB, 0, 3)
        )
        tBsSFB = cute.filter_zeros(tBsSFB)
        tBgSFB = cute.filter_zeros(tBgSFB)

        # MMA operand views of shared memory and the (fake) accumulator layout.
        tCrA = mma.make_fragment_A(sA)
        tCrB = mma.make_fragment_B(sB)
        acc_shape = mma.partition_shape_C(self.mma_tiler[:2])
        tCtAcc_layout = mma.make_fragment_C(cute.append(acc_shape, self.num_acc_stage)).layout

        pipeline_init_wait(cluster_shape_mn=self.cluster_shape_mn)

        # ================================================= producer warp (TMA)
        if warp == self.tma_warp:
            tiles = utils.StaticPersistentTileScheduler.create(sched, cute.arch.block_idx(), cute.arch.grid_dim())
            work = tiles.initial_work_tile_info()
            prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.num_ab_stage)
            while work.is_valid_tile:
                t = work.tile_idx
                tm, tn, tl = t[0] // v, t[1], t[2]
                gA_k = tAgA[(None, tm, None, tl)]
                gB_k = tBgB[(None, tn, None, tl)]
                gSFA_k = tAgSFA[(None, tm, None, tl)]
                sfb_n = tn
                if cutlass.const_expr(self.cta_tile[1] == 64):
                    sfb_n = tn // 2  # one 128-row scale tile serves two N tiles
                gSFB_k = tBgSFB[(None, sfb_n, None, tl)]

                prod.reset_count()
                ready = cutlass.Boolean(1)
                if prod.count < k_steps:
                    ready = ab_pipe.producer_try_acquire(prod)
                for _ in cutlass.range(0, k_steps, 1, unroll=1):
                    ab_pipe.producer_acquire(prod, ready)
                    bar = ab_pipe.producer_get_barrier(prod)
                    cute.copy(tma_a, gA_k[(None, prod.count)], tAsA[(None, prod.index)], tma_bar_ptr=bar, mcast_mask=mask_a)
                    cute.copy(tma_b, gB_k[(None, prod.count)], tBsB[(None, prod.index)], tma_bar_ptr=bar, mcast_mask=mask_b)
                    cute.copy(tma_sfa, gSFA_k[(None, prod.count)], tAsSFA[(None, prod.index)], tma_bar_ptr=bar, mcast_mask=mask_sfa)
                    cute.copy(tma_sfb, gSFB_k[(None, prod.count)], tBsSFB[(None, prod.index)], tma_bar_ptr=bar, mcast_mask=mask_sfb)
                    prod.advance()
                    ready = cutlass.Boolean(1)
                    if prod.count < k_steps:
                        ready = ab_pipe.producer_try_acquire(prod)
                tiles.advance_to_next_work()
                work = tiles.get_current_work()
            ab_pipe.producer_tail(prod)

        # ======================================================== MMA warp
        if warp == self.mma_warp:
            tmem.wait_for_alloc()
            acc_ptr = tmem.retrieve_ptr(self.acc_dtype)
            tCtAcc_all = cute.make_tensor(acc_ptr, tCtAcc_layout)
            sfa_ptr = cute.recast_ptr(acc_ptr + self.acc_cols, dtype=self.sf_dtype)
            tCtSFA_layout = blockscaled_utils.make_tmem_layout_sfa(
                mma, self.mma_tiler, SF_VEC_SIZE, cute.slice_(sfa_smem, (None, None, None, 0))
            )
            tCtSFA = cute.make_tensor(sfa_ptr, tCtSFA_layout)
            sfb_base = acc_ptr + self.acc_cols + self.sfa_cols
            tCtSFB_layout = blockscaled_utils.make_tmem_layout_sfb(
                mma, self.mma_tiler, SF_VEC_SIZE, cute.slice_(sfb_smem, (None, None, None, 0))
            )
            tCtSFB = cute.make_tensor(cute.recast_ptr(sfb_base, dtype=self.sf_dtype), tCtSFB_layout)
            s2t_sfa, sSFA_s2t, tSFA_s2t = self._s2t_partition(sSFA, tCtSFA)
            s2t_sfb, sSFB_s2t, tSFB_s2t = self._s2t_partition(sSFB, tCtSFB)

            tiles = utils.StaticPersistentTileScheduler.create(sched, cute.arch.block_idx(), cute.arch.grid_dim())
            work = tiles.initial_work_tile_info()
            cons = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.num_ab_stage)
            acc_prod = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.num_acc_stage)
            while work.is_valid_tile:
                tn = work.tile_idx[1]
                tCtAcc = tCtAcc_all[(None, None, None, acc_prod.index)]

                cons.reset_count()
                ready = cutlass.Boolean(1)
                if cons.count < k_steps and is_leader:
                    ready = ab_pipe.consumer_try_wait(cons)
                if is_leader:
                    acc_pipe.producer_acquire(acc_prod)

                tCtSFB_mma = tCtSFB
                if cutlass.const_expr(self.cta_tile[1] == 64):
                    # Odd N tiles use the second 64 rows of the 128-row sW tile:
                    # shift the TMEM address by 2 columns (64 rows / 32 lanes).
                    shift = cutlass.Int32((tn % 2) * 2)
                    tCtSFB_mma = cute.make_tensor(
                        cute.recast_ptr(sfb_base + shift, dtype=self.sf_dtype), tCtSFB_layout
                    )

                for kk in range(k_steps):
                    if is_leader:
                        ab_pipe.consumer_wait(cons, ready)
                        stage = (None, None, None, None, cons.index)
                        cute.copy(s2t_sfa, sSFA_s2t[stage], tSFA_s2t)
                        cute.copy(s2t_sfb, sSFB_s2t[stage], tSFB_s2t)
                        # the first K step overwrites the accumulator, later ones add
                        mma.set(tcgen05.Field.ACCUMULATE, kk != 0)
                        ab = (None, None, None, cons.index)
                        cute.gemm(mma, tCtAcc, [tCrA[ab], tCtSFA], [tCrB[ab], tCtSFB_mma], tCtAcc)
                        ab_pipe.consumer_release(cons)
                    cons.advance()
                    ready = cutlass.Boolean(1)
                    if cons.count < k_steps:
                        if is_leader:
                            ready = ab_pipe.consumer_try_wait(cons)
                if is_leader:
                    acc_pipe.producer_commit(acc_prod)
                acc_prod.advance()
                tiles.advance_to_next_work()
                work = tiles.get_current_work()
            acc_pipe.producer_tail(acc_prod)

        # =================================================== epilogue warps
        if warp < self.mma_warp:
            tmem.allocate(self.tmem_cols)
            tmem.wait_for_alloc()
            acc_ptr = tmem.retrieve_ptr(self.acc_dtype)
            tCtAcc_all = cute.make_tensor(acc_ptr, tCtAcc_layout)

            # TMEM -> registers, one subtile (epi_tile) at a time
            t2r_atom = sm100_utils.get_tmem_load_op(
                self.cta_tile, self.c_layout, self.out_dtype, self.acc_dtype, epi_tile, self.use_2cta
            )
            tAcc_epi = cute.flat_divide(tCtAcc_all[((None, None), 0, 0, None)], epi_tile)
            t2r = tcgen05.make_tmem_copy(t2r_atom, tAcc_epi[(None, None, 0, 0, 0)])
            thr_t2r = t2r.get_slice(tidx)
            tTR_tAcc = thr_t2r.partition_S(tAcc_epi)
            gC_epi = cute.flat_divide(tCgC[((None, None), 0, 0, None, None, None)], epi_tile)
            cC_epi = cute.flat_divide(tCcC[((None, None), 0, 0, None, None, None)], epi_tile)
            tTR_gC = thr_t2r.partition_D(gC_epi)
            tTR_cC = thr_t2r.partition_D(cC_epi)
            tTR_rAcc = cute.make_rmem_tensor(tTR_gC[(None, None, None, 0, 0, 0, 0, 0)].shape, self.acc_dtype)
            tTR_rC = cute.make_rmem_tensor(tTR_rAcc.shape, self.out_dtype)

            # registers -> smem -> (TMA) gmem
            r2s = cute.make_tiled_copy_D(
                sm100_utils.get_smem_store_op(self.c_layout, self.out_dtype, self.acc_dtype, t2r), t2r
            )
            thr_r2s = r2s.get_slice(tidx)
            tRS_sC = thr_r2s.partition_D(sC)
            tRS_rC = r2s.retile(tTR_rC)
            bSG_sC, bSG_gC_all = cpasync.tma_partition(
                tma_c, 0, cute.make_layout(1),
                cute.group_modes(sC, 0, 2), cute.group_modes(gC_epi, 0, 2),
            )

            m_last = mC.shape[0] - 1
            n_last = mC.shape[1] - 1

            tiles = utils.StaticPersistentTileScheduler.create(sched, cute.arch.block_idx(), cute.arch.grid_dim())
            work = tiles.initial_work_tile_info()
            acc_cons = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.num_acc_stage)
            c_pipe = pipeline.PipelineTmaStore.create(
                num_stages=self.num_c_stage,
                producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, 32 * len(self.epi_warps)),
            )
            while work.is_valid_tile:
                t = work.tile_idx
                tile = (t[0] // v, t[1], t[2])
                bSG_gC = cute.group_modes(bSG_gC_all[(None, None, None, *tile)], 1, 3)
                tTR_c = tTR_cC[(None, None, None, None, None, *tile)]
                tTR_c = cute.group_modes(tTR_c, 3, cute.rank(tTR_c))
                tTR_tAcc_t = tTR_tAcc[(None, None, None, None, None, acc_cons.index)]
                tTR_tAcc_t = cute.group_modes(tTR_tAcc_t, 3, cute.rank(tTR_tAcc_t))

                acc_pipe.consumer_wait(acc_cons)
                subtiles = cute.size(tTR_tAcc_t.shape, mode=[3])
                done_before = tiles.num_tiles_executed * subtiles
                for st in cutlass.range(subtiles):
                    cute.copy(t2r, tTR_tAcc_t[(None, None, None, st)], tTR_rAcc)
                    # 4/6 global scales and bias, FP32, in SPEC order:
                    # (acc * (gA * gW)) + bias
                    crd = tTR_c[(None, None, None, st)]
                    for i in cutlass.range_constexpr(cute.size(tTR_rAcc)):
                        row = cutlass.min(crd[i][0], m_last)
                        col = cutlass.min(crd[i][1], n_last)
                        ga = mAS[row] if cutlass.const_expr(self.row_scale) else mAS[0]
                        gw = mWS[col] if cutlass.const_expr(self.col_scale) else mWS[0]
                        val = tTR_rAcc[i] * (ga * gw)
                        if cutlass.const_expr(self.has_bias):
                            val = val + mBias[col].to(cutlass.Float32)
                        tTR_rAcc[i] = val
                    tRS_rC.store(r2s.retile(tTR_rAcc).load().to(self.out_dtype))
                    buf = (done_before + st) % self.num_c_stage
                    cute.copy(r2s, tRS_rC, tRS_sC[(None, None, None, buf)])
                    cute.arch.fence_proxy("async.shared", space="cta")
                    self.epi_barrier.arrive_and_wait()
                    if warp == self.epi_warps[0]:
                        cute.copy(tma_c, bSG_sC[(None, buf)], bSG_gC[(None, st)])
                        c_pipe.producer_commit()
                        c_pipe.producer_acquire()
                    self.epi_barrier.arrive_and_wait()
                acc_pipe.consumer_release(acc_cons)
                acc_cons.advance()
                tiles.advance_to_next_work()
                work = tiles.get_current_work()

            tmem.relinquish_alloc_permit()
            self.epi_barrier.arrive_and_wait()
            tmem.free(acc_ptr)
            c_pipe.producer_tail()

    def _s2t_partition(self, sSF: cute.Tensor, tSF: cute.Tensor):
        """``tcgen05.cp`` (4x32x128b) of a scale tile: smem view, tmem view."""
        s_compact = cute.filter_zeros(sSF)
        t_compact = cute.filter_zeros(tSF)
        atom = cute.make_copy_atom(tcgen05.Cp4x32x128bOp(self.cta_group), self.sf_dtype)
        s2t = tcgen05.make_s2t_copy(atom, t_compact)
        thr = s2t.get_slice(0)
        src = tcgen05.get_s2t_smem_desc_tensor(s2t, thr.partition_S(s_compact))
        dst = thr.partition_D(t_compact)
        return s2t, src, dst
