"""Run 24b: what the split-K fix-up costs (M = 16 tensor-core tile, M = 1 GEMV with a split), and a
fix-up that resets its tile counter with a plain store instead of an atomic exchange (tg_v1)."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
import tg_v1
C = tg.GemmConfig

print(torch.cuda.get_device_name(), flush=True)
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    deq = nvfp4.dequantize(wq).double()
    for M in (16, 1):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        oracle = (x.double() @ deq.T).float()
        sel = tg._with_split(tg.select_config(M, N, K, x.device), M, N, K, tg.num_sms(x.device))
        if M == 16:
            cands = [(mod, C("tc", BM=16, BN=64, BK=256, num_warps=4, num_stages=3, split_k=s))
                     for mod, s in ((tg, sel.split_k), (tg_v1, sel.split_k), (tg_v1, 1), (tg_v1, 2), (tg_v1, 8))]
        else:
            cands = [(tg, sel), (tg, C("gemv2", BM=1, BN=8, BK=2048, num_warps=4, num_stages=1, split_k=2)),
                     (tg_v1, C("gemv2", BM=1, BN=8, BK=2048, num_warps=4, num_stages=1, split_k=2))]
        names = ["bf16"] + [f"{'v1' if mod is tg_v1 else 'cur'} {c.short()}" for mod, c in cands]
        errs, same = [], []
        for mod, c in cands:
            y = mod.fp4_gemm(x, wq.data, wq.scales, gw, config=c)
            y2 = mod.fp4_gemm(x, wq.data, wq.scales, gw, config=c)
            same.append(torch.equal(y, y2))
            errs.append(float((y.float() - oracle).abs().max() / oracle.abs().max()))
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)]
        makers += [((lambda mod, c: lambda i: (lambda: mod.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)))(mod, c), cq)
                   for mod, c in cands]
        means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M}: rel err max {max(errs):.2e}, repeat-equal {all(same)}")
        for n, m, u, v in zip(names, means, a, b):
            print(f"  {n:34s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, w
