"""Run 24c: the M = 1 GEMV with its epilogue operands (gw, ga, bias) loaded before the K loop (tg_v2)
instead of after the final reduction (main), W4A16 without and with a bias and per-channel gw, and
W4A4-style (ga per row); the M = 16 tile at the main code's split vs split 1 (after run 24b's fix-up)."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
import tg_v2

print(torch.cuda.get_device_name(), flush=True)
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwv = gw.expand(N).contiguous() * (1 + torch.rand(N, device="cuda") * 2 ** -10)
    bias = torch.randn(N, device="cuda").to(torch.bfloat16)
    x = torch.randn(1, K, device="cuda").to(torch.bfloat16)
    ga = torch.rand(1, device="cuda") + 0.5
    cases = [("plain", dict()), ("bias+gw[N]", dict(bias=bias)), ("ga+bias", dict(ga=ga, bias=bias))]
    makers, names = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)], ["bf16"]
    for cname, kw in cases:
        for mod in (tg, tg_v2):
            g = gwv if cname == "bias+gw[N]" else gw
            y = mod.fp4_gemm(x, wq.data, wq.scales, g, **kw)
            if mod is tg_v2:
                assert torch.equal(y, y_main), (N, K, cname)
            y_main = y
            makers.append(((lambda mod, g, kw: lambda i: (lambda: mod.fp4_gemm(x, ds[i][0], ds[i][1], g, **kw)))(mod, g, kw), cq))
            names.append(f"{'v2' if mod is tg_v2 else 'main'} {cname}")
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    print(f"{N}x{K} M=1 ({tg.select_config(1, N, K, x.device).short()}): v2 outputs bitwise equal to main")
    for n, m, u, v in zip(names, means, a, b):
        print(f"  {n:22s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    x16 = torch.randn(16, K, device="cuda").to(torch.bfloat16)
    sel = tg._with_split(tg.select_config(16, N, K, x.device), 16, N, K, tg.num_sms(x.device))
    from dataclasses import replace
    cfgs = [sel] + [replace(sel, split_k=s) for s in (1, 2, 4) if s != sel.split_k]
    makers = [(lambda i: (lambda: torch.matmul(x16, wb[i].T)), cb)]
    makers += [((lambda c: lambda i: (lambda: tg.fp4_gemm(x16, ds[i][0], ds[i][1], gw, config=c)))(c), cq) for c in cfgs]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    print(f"{N}x{K} M=16:")
    for n, m, u, v in zip(["bf16"] + [c.short() for c in cfgs], means, a, b):
        print(f"  {n:28s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, w
