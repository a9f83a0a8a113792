"""Run 24a: M = 1 GEMV tiles that cover a row's whole K in one step (no K loop; all of a thread's
weight bytes requested at once, as the read-floor kernels do), never tried in the run-11 grid
(BN >= 8 there), next to the selected tile, bf16 cuBLAS and the 8 KB read kernel."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
import triton.language as tl
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
C = tg.GemmConfig


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
CANDS = {
    4096: [(4, 4096, 4, 1), (2, 4096, 4, 1), (4, 4096, 8, 1), (2, 4096, 2, 1), (8, 4096, 8, 1), (1, 4096, 4, 1),
           (8, 2048, 4, 2)],
    14336: [(4, 4096, 4, 1), (4, 2048, 4, 1), (8, 2048, 8, 1), (2, 4096, 4, 1), (4, 2048, 4, 7), (8, 2048, 4, 7)],
}
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
    sel = tg.select_config(1, N, K, x.device)
    cfgs = [None] + [C("gemv2", BM=1, BN=bn, BK=bk, num_warps=nw_, num_stages=1, split_k=sk)
                     for bn, bk, nw_, sk in CANDS[K]]
    ref = tg.fp4_gemm(x, wq.data, wq.scales, gw).float()
    oracle = (x.double() @ nvfp4.dequantize(wq).double().T).float()
    ok = []
    for c in cfgs[1:]:
        y = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=c).float()
        ok.append(float((y - oracle).abs().max() / oracle.abs().max()))
    names = ["bf16", f"sel {sel.short()}"] + [c.short() for c in cfgs[1:]] + ["read 8KB"]
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)]
    makers += [((lambda c: lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)))(c), cq) for c in cfgs]
    makers += [(lambda i: (lambda: _rd_tile[(triton.cdiv(nw, 2048),)](bufs[i], fo, nw, BLOCK=2048, num_warps=4)), cq)]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    print(f"{N}x{K}: sel rel err {float((ref - oracle).abs().max() / oracle.abs().max()):.2e}; cand rel err max {max(ok):.2e}")
    for n, m, u, v in zip(names, means, a, b):
        print(f"  {n:32s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, bufs, w
