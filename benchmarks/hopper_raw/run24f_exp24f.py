"""Run 24f: split 1 vs 2 (vs 4) for the 16-row tensor-core tile where its tiles fill 1.5-7 waves
(wide weights), M = 9 and 16, W4A16, mirrored with bf16."""
import sys
sys.path.insert(0, "tools")
import torch
from dataclasses import replace
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg

print(torch.cuda.get_device_name(), flush=True)
for N, K in [(11008, 4096), (14336, 4096), (28672, 4096), (57344, 4096), (28672, 8192), (14336, 8192)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in (16, 9):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        sel = tg._with_split(tg.select_config(M, N, K, x.device), M, N, K, tg.num_sms(x.device))
        cfgs = [replace(sel, split_k=s) for s in (1, 2, 4)]
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)]
        makers += [((lambda c: lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)))(c), cq) for c in cfgs]
        means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        tiles = -(-N // sel.BN)
        print(f"{N}x{K} M={M} ({tiles} tiles, selected split {sel.split_k}): " + " | ".join(
            f"{n} {m * 1e3:.2f} ({u * 1e3:.2f}, {v * 1e3:.2f})" for n, m, u, v in zip(["bf16", "s1", "s2", "s4"], means, a, b))
            + " | bf16/s1 %.2fx, bf16/s2 %.2fx" % (means[0] / means[1], means[0] / means[2]), flush=True)
    del wb, ds, w
