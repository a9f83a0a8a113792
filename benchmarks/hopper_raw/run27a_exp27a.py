"""Run 27a: the warp-specialized TMA GEMV prototype (.scratch/gl_gemv.py) at M = 1, W4A16: its output against
fp4_gemm's (the GEMV), then its time against the GEMV and bf16 cuBLAS (rotating copies, CUDA graphs)."""
import sys, itertools
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
import gl_gemv

print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
# (rows, cols, stages, warps, maxnreg): without maxnreg the default partition asks for up to 240
# registers (1 CTA an SM with the padded 8 warps); 64 -> 4 CTAs an SM.
CFGS = [(16, 256, 4, 4, None), (16, 256, 4, 4, 64), (16, 256, 6, 4, 64), (16, 256, 3, 4, 56), (8, 256, 4, 4, 64),
        (8, 256, 8, 4, 56), (32, 256, 4, 8, 64), (32, 256, 4, 4, 80), (16, 128, 8, 4, 64), (64, 256, 3, 8, 80)]
for N, K in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(1)
    wb = [w.to(bf) for _ in range(cb)]
    del w
    x = (torch.randn(1, K, device="cuda") * 2).to(bf)
    ref = tg.fp4_gemm(x, ds[0][0], ds[0][1], gw.reshape(()))
    res = {"bf16": _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
           "GEMV (main)": _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw.reshape(()))), cq)}
    for rows, cols, st, wp, mr in CFGS:
        name = f"ws-tma {rows}x{cols} st{st} w{wp} r{mr}"
        try:
            dd = [gl_gemv.descs(d, s, rows, cols) for d, s in ds]
            out = gl_gemv.gemv_ws(x, ds[0][0], ds[0][1], gw, rows, cols, st, wp, dd[0], mr)
            err = (out.float() - ref.float()).abs().max().item() / ref.float().abs().max().item()
            ulp = ((out.float() - ref.float()).abs() > 1e-2 * ref.float().abs().max()).sum().item()
            res[name] = _bench_rotating(lambda i: (lambda: gl_gemv.gemv_ws(x, ds[i][0], ds[i][1], gw, rows, cols, st, wp, dd[i], mr)), cq)
            print(f"  {N}x{K} {name}: max rel diff vs GEMV {err:.2e} ({ulp} outputs > 1%)", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"  {N}x{K} {name} failed: {repr(e)[:300]}", flush=True)
    tb = res["bf16"]
    print(f"== {N}x{K}: bf16 {tb * 1e3:.2f} us", flush=True)
    for n, t in sorted(res.items(), key=lambda kv: kv[1]):
        print(f"   {t * 1e3:7.2f} us  bf16/this {tb / t:.2f}x  {n}", flush=True)
    del wb, ds
    torch.cuda.empty_cache()
