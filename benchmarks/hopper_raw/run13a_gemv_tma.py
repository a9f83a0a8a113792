"""Experiment: the gemv2 loop with the weight and scale tiles read through TMA descriptors
(so Triton's pipeliner can keep num_stages tiles in flight in shared memory)."""
import triton
import triton.language as tl
from vllm_fouroversix.kernels.triton_gemm import (_DECODE_F32_ASM, _gemv2_row, _gemv_finish, _scale_values,
                                                  _split_k_range)


@triton.jit
def gemv_tma_kernel(
    a_ptr, w_desc, s_desc, gw_ptr, ga_ptr, bias_ptr, out_ptr, part_ptr, lock_ptr,
    M, N, K, stride_am, stride_om, stride_ga, stride_pk,
    BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr, SPLIT_K: tl.constexpr,
    A_F16: tl.constexpr, HW_E4M3: tl.constexpr, GW_VEC: tl.constexpr, HAS_GA: tl.constexpr, HAS_BIAS: tl.constexpr,
    STAGES: tl.constexpr = 3,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_n = pid_n * BN + tl.arange(0, BN)
    KB = K // 2
    k_tiles = tl.cdiv(KB, BKB)
    kt0, kt1 = _split_k_range(k_tiles, pid_k, SPLIT_K)
    kb = tl.arange(0, BKB)
    m0 = pid_m * BM
    a0 = a_ptr + m0.to(tl.int64) * stride_am
    acc0 = tl.zeros((BN, BKB // 8), dtype=tl.float32)
    zero_n = tl.zeros((BN, BKB), dtype=tl.int32)
    n0 = pid_n * BN
    for kt in tl.range(kt0, kt1, num_stages=STAGES):
        b0 = kt * BKB
        wp = w_desc.load([n0, b0])
        sb = s_desc.load([n0, b0 // 8])
        ap = tl.load(a0 + zero_n + (b0 + kb)[None, :])
        lo, hi = tl.inline_asm_elementwise(_DECODE_F32_ASM, "=r,=r,=r,=r,=r,=r,=r,=r,r", [wp],
                                           dtype=(tl.float32, tl.float32), is_pure=True, pack=4)
        s = _scale_values(sb, HW_E4M3)
        acc0 += _gemv2_row(ap, lo, hi, BN, BKB, A_F16, True) * s
    _gemv_finish(acc0, acc0, acc0, acc0, m0, offs_n, pid_k, pid_m, pid_n, M, N, part_ptr, lock_ptr, stride_pk,
                 gw_ptr, ga_ptr, bias_ptr, out_ptr, stride_om, stride_ga, BM, BN, SPLIT_K, GW_VEC, HAS_GA, HAS_BIAS)
