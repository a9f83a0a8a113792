"""Run 23d: the quantizer's chunked path (rows of K > 4096, many rows; operand mode as W4A4 runs it)
with a persistent rows loop: P programs, each taking rows pid, pid + P, ..., so that only P rows are
in flight and each row's second read (quantize after the amax pass) can come from L2. Outputs
compared bitwise with quantize_triton; times from CUDA graphs with an L2 flush before each replay."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
import triton.language as tl
from bench_gemm import _bench_graph, _activations
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels.triton_quantize import _row_amax, _enc_dec, _load_tile, _quant_tile
from vllm_fouroversix.nvfp4 import rule_constants


@triton.jit
def _rows_kernel(x_ptr, deq_ptr, gs_ptr, R, K, stride_x, stride_deq,
                 RULE: tl.constexpr, M: tl.constexpr, MS: tl.constexpr, NUM_CHUNKS: tl.constexpr, CB: tl.constexpr,
                 HW_CVT: tl.constexpr):
    nb = K // 16
    for row in range(tl.program_id(0), R, tl.num_programs(0)):
        r64 = row.to(tl.int64)
        x_row = x_ptr + r64 * stride_x
        deq_row = deq_ptr + r64 * stride_deq
        amax = _row_amax(x_row, K, CB * 16, NUM_CHUNKS)
        tl.store(gs_ptr + row, tl.div_rn(amax, MS))
        enc, dec = _enc_dec(amax, MS)
        x_lo, x_hi = _load_tile(x_row, 0, nb, CB)
        for c in range(NUM_CHUNKS):
            n_lo, n_hi = _load_tile(x_row, (c + 1) * CB, nb, CB)
            _quant_tile(x_lo, x_hi, deq_row, deq_row, deq_row, c * CB, nb, amax, enc, dec,
                        CB, RULE, M, False, True, HW_CVT, True)
            x_lo = n_lo
            x_hi = n_hi


def rows_quant(x, progs, cb=128, rule="mse"):
    R, K = x.shape
    c = rule_constants(rule)
    deq = torch.empty_like(x)
    gs = torch.empty(R, dtype=torch.float32, device=x.device)
    _rows_kernel[(min(R, progs),)](x, deq, gs, R, K, x.stride(0), deq.stride(0), RULE=tq.RULE_IDS[tq.ScaleRule(rule)],
                                   M=c.M, MS=c.MS, NUM_CHUNKS=triton.cdiv(K // 16, cb), CB=cb, HW_CVT=True,
                                   num_warps=cb // 32, enable_fp_fusion=False)
    return deq, gs


print(torch.cuda.get_device_name(), flush=True)
gen = torch.Generator().manual_seed(0)
sms = torch.cuda.get_device_properties(0).multi_processor_count
for R, K in [(1024, 14336), (2048, 14336), (4096, 14336), (1024, 8192), (4096, 8192)]:
    x = _activations(R, K, gen)
    ref = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
    dst = torch.empty_like(x)
    res = [f"main {_bench_graph(lambda: tq.quantize_triton(x, 'mse', per_row=True, write_packed=False, dequant_dtype=torch.bfloat16), 50) * 1e3:.1f}",
           f"static_6 {_bench_graph(lambda: tq.quantize_triton(x, 'static_6', per_row=True, write_packed=False, dequant_dtype=torch.bfloat16), 50) * 1e3:.1f}",
           f"copy {_bench_graph(lambda: dst.copy_(x), 50) * 1e3:.1f}"]
    for per_sm in (1, 2, 4, 8, 16):
        for cb in (128, 256):
            deq, gs = rows_quant(x, per_sm * sms, cb)
            ok = torch.equal(deq, ref.dequant) and torch.equal(gs, ref.global_scale)
            t = _bench_graph(lambda: rows_quant(x, per_sm * sms, cb), 50)
            res.append(f"rows {per_sm}/SM cb{cb} {t * 1e3:.1f}{'' if ok else ' MISMATCH'}")
    print(f"[{R}, {K}]: " + " | ".join(res), flush=True)
