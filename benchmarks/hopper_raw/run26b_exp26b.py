"""Run 26b: ncu on the W4A16 GEMV (M = 1), a pure read of the same bytes, the M = 16 tc tile,
and the 4/6 quantizer (4096 x 4096, mse, packed and operand). Plain launches, L2 flushed by ncu."""
import sys
import torch, triton, triton.language as tl
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.triton_quantize import quantize_triton


@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _rd_tile(p, out, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(v, 0, _xor))


bf = torch.bfloat16
N = K = 4096
w = torch.randn(N, K, device="cuda") * 0.02
wq = nvfp4.quantize(w, "mse")
data, sc = wq.data, wq.scales.view(torch.uint8)
gw = wq.global_scale.float().reshape(())
nw = N * K * 9 // 16 // 4
buf = torch.randint(-2**31, 2**31 - 1, (nw,), dtype=torch.int32, device="cuda")
fo = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
x1 = torch.randn(1, K, device="cuda").to(bf)
x16 = torch.randn(16, K, device="cuda").to(bf)
xq = torch.randn(4096, K, device="cuda").to(bf)
calls = [
    ("gemv M=1", lambda: tg.fp4_gemm(x1, data, sc, gw)),
    ("read 8KB w4", lambda: _rd_tile[(triton.cdiv(nw, 2048),)](buf, fo, nw, BLOCK=2048, num_warps=4)),
    ("tc M=16", lambda: tg.fp4_gemm(x16, data, sc, gw)),
    ("quant packed", lambda: quantize_triton(xq, "mse")),
    ("quant operand", lambda: quantize_triton(xq, "mse", write_packed=False, dequant_dtype=bf)),
    ("copy", lambda: xq.clone()),
]
for _, f in calls:
    for _ in range(3):
        f()
torch.cuda.synchronize()
torch.cuda.profiler.start()
for name, f in calls:
    torch.cuda.nvtx.range_push(name)
    f()
    torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
torch.cuda.profiler.stop()
print("done", flush=True)
