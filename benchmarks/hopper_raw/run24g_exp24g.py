"""Run 24g: M = 16 tensor-core tiles with more weight rows a CTA (BN 128/256: fewer activation re-reads
from L2, which at BN = 64 are as many bytes as the weight) and deeper K splits, vs the selected tile."""
import sys
sys.path.insert(0, "tools")
import itertools
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
C = tg.GemmConfig

print(torch.cuda.get_device_name(), flush=True)
M = 16
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
    oracle = (x.double() @ nvfp4.dequantize(wq).double().T).float()
    sel = tg._with_split(tg.select_config(M, N, K, x.device), M, N, K, tg.num_sms(x.device))
    cands = [sel]
    for bn, bk, nw, st, sk in [(128, 128, 4, 3, 4), (128, 128, 4, 3, 8), (128, 128, 8, 3, 8), (128, 128, 4, 4, 8),
                               (128, 128, 8, 3, 16), (128, 256, 8, 3, 4), (128, 256, 8, 3, 8), (128, 64, 4, 4, 8),
                               (256, 64, 8, 3, 8), (256, 64, 8, 4, 8), (256, 64, 8, 3, 16), (256, 128, 8, 3, 8),
                               (256, 128, 8, 3, 16), (256, 128, 8, 2, 16), (128, 64, 4, 4, 16)]:
        c = C("tc", BM=16, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk)
        if c != sel:
            cands.append(c)
    res = []
    for c in cands:
        try:
            y = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=c).float()
            err = float((y - oracle).abs().max() / oracle.abs().max())
            assert err < 1e-2, err
            t = _bench_rotating(lambda i, c=c: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)), cq, reps=15)
            res.append((t, c))
        except Exception as e:  # noqa: BLE001
            print(f"  {c.short()}: {type(e).__name__}: {str(e)[:80]}")
    res.sort(key=lambda r: r[0])
    t_sel = [t for t, c in res if c == sel][0]
    print(f"{N}x{K} M={M}: {len(res)} tiles; selected {sel.short()} {t_sel * 1e3:.2f} us; fastest:")
    for t, c in res[:6]:
        print(f"  {c.short():28s} {t * 1e3:7.2f} us")
    top = [c for _, c in res[:4] if c != sel]
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)]
    makers += [((lambda c: lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)))(c), cq) for c in [sel] + top]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    for n, m, u, v in zip(["bf16", "sel " + sel.short()] + [c.short() for c in top], means, a, b):
        print(f"  mirrored {n:30s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, w
