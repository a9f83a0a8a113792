"""Run 24k: the wgmma plan's two launches chained by PDL (the first triggers its dependents at its start
(W4A16) or right after its own wait for the quantizer (W4A4); the second starts as SMs free up and waits
only before its epilogue's activation scales), vs main's two plain launches. M = 1024 where plan() splits."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton
import gw_chain

print(torch.cuda.get_device_name(), flush=True)
sms = tg.num_sms(torch.device("cuda"))
for N, K, M in [(6144, 4096, 1024), (5120, 4096, 1024), (6144, 4096, 896)]:
    print(f"{N}x{K} M={M}: plan {gluon_wgmma.plan(M, N, sms)}")
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = torch.randn(M, K, device="cuda").to(torch.bfloat16)

    def gemm(mod, a, i, ga=None, pdl=False):
        out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
        gw_t, ga_t, bias_t, stride_ga, ep = epilogue_args(gw, ga, None)
        kw = {} if mod is gluon_wgmma else {"chain": True}
        return mod.fp4_wgmma_gemm(a, ds[i][0], ds[i][1], gw_t, ga_t, bias_t, out, stride_ga, ep, sms=sms, pdl=pdl, **kw)

    def w4a4(mod, i):
        q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
        return gemm(mod, q.dequant, i, ga=q.global_scale, pdl=True)
    for name, f in (("W4A16", lambda mod: gemm(mod, x, 0)), ("W4A4", lambda mod: w4a4(mod, 0))):
        ys = [f(gluon_wgmma) for _ in range(2)] + [f(gw_chain) for _ in range(3)]
        print(f"  {name}: chained output bitwise equal to main: {all(torch.equal(ys[0], y) for y in ys)}")
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
              (lambda i: (lambda: gemm(gluon_wgmma, x, i)), cq), (lambda i: (lambda: gemm(gw_chain, x, i)), cq),
              (lambda i: (lambda: w4a4(gluon_wgmma, i)), cq), (lambda i: (lambda: w4a4(gw_chain, i)), cq)]
    names = ["bf16", "W4A16 main", "W4A16 chained", "W4A4 main", "W4A4 chained"]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    for n, m, u, v in zip(names, means, a, b):
        print(f"  {n:16s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  this/bf16 {m / means[0]:.3f}x", flush=True)
    del wb, ds, w
