"""Run 24h: at M = 1, the Gluon mma kernel (cp.async ring, scale folded into the decode since run 22)
vs the selected GEMV, W4A16 and W4A4 (quantizer + GEMM, PDL), after runs 22-24."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_gemm
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
    x = torch.randn(1, K, device="cuda").to(torch.bfloat16)
    oracle = (x.double() @ nvfp4.dequantize(wq).double().T).float()
    rows = []
    for warps, stages in ((4, 3), (8, 2), (8, 1), (4, 1)):
        if K % (128 * warps):
            continue
        c = C("mma", BM=8, BN=16, BK=128, num_warps=warps, num_stages=stages)
        y = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=c).float()
        rows.append((c, float((y - oracle).abs().max() / oracle.abs().max())))
    print(f"{N}x{K}: mma rel err max {max(e for _, e in rows):.2e}")
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
              (lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)]
    makers += [((lambda c: lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)))(c), cq) for c, _ in rows]
    # W4A4: quantizer (operand mode, launch_dependents) + GEMM with pdl, as TritonBackend does
    from vllm_fouroversix.kernels.triton_quantize import quantize_triton

    def w4a4(i, c=None):
        def f():
            q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
            return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=c, pdl=True)
        return f
    makers += [(lambda i: w4a4(i), cq)] + [((lambda c: lambda i: w4a4(i, c))(c), cq) for c, _ in rows]
    names = ["bf16", "W4A16 sel"] + [f"W4A16 mma w{c.num_warps} st{c.num_stages}" for c, _ in rows]
    names += ["W4A4 sel"] + [f"W4A4 mma w{c.num_warps} st{c.num_stages}" for c, _ in rows]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    for n, m, u, v in zip(names, means, a, b):
        print(f"  {n:22s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, w
