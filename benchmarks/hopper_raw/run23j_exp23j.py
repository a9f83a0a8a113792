"""Run 23j: the M = 1 read floor with the current harness (rotating copies, CUDA graph, mirrored
order): bf16 cuBLAS, our W4A16 GEMV, and one-tile-a-program read kernels over the N*K*9/16 bytes of
codes and scales (run 16a's best kind: 4-16 KB a program, 4 warps), side by side."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
import triton.language as tl
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg


@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _rd_tile(p, out, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(v, 0, _xor))


print(torch.cuda.get_device_name(), flush=True)
fo = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    nbytes = N * K * 9 // 16
    nw = nbytes // 4
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    bufs = [torch.randint(-2**31, 2**31 - 1, (nw,), dtype=torch.int32, device="cuda") for _ in range(cq)]
    x = torch.randn(1, K, device="cuda").to(torch.bfloat16)
    names = ["bf16", "W4A16", "read 4KB", "read 8KB", "read 16KB"]

    def rd(block):
        return lambda i: (lambda: _rd_tile[(triton.cdiv(nw, block),)](bufs[i], fo, nw, BLOCK=block, num_warps=4))
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb), (lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq),
              (rd(1024), cq), (rd(2048), cq), (rd(4096), cq)]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    best = min(means[2:])
    print(f"{N}x{K}: " + " | ".join(f"{n} {m * 1e3:.2f} ({u * 1e3:.2f}, {v * 1e3:.2f})" for n, m, u, v in zip(names, means, a, b))
          + f" | bf16/read {means[0] / best:.2f}x, bf16/W4A16 {means[0] / means[1]:.2f}x, W4A16/read {means[1] / best:.2f}x",
          flush=True)
    del wb, ds, bufs, w
