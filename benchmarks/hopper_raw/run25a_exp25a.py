"""Run 25a: programmatic dependent launch (PDL) for the small-M GEMMs whatever kernel precedes them
(implicit trigger: the GEMM may launch once the previous kernel's blocks have all exited; it reads only
weights before griddepcontrol.wait), W4A16 and W4A4 (quantizer launched as a dependent too).
tg25/tq25 = main's triton_gemm/triton_quantize + PDL knobs (tc kernel PDL, L2 prefetch before the wait,
quantizer PDL wait)."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, triton_quantize as tq
import tg25, tq25

print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
SH = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
for N, K in SH:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(bf) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    del w
    for M in (1, 2, 4, 8, 16):
        x = (torch.randn(M, K, device="cuda") * 2).to(bf)

        def a16(mod, i, **kw):
            return mod.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf, **kw)

        def a4(qmod, gmod, i, trig=True, qwait=False, **kw):
            q = qmod.quantize_triton(x, "mse", write_packed=False, dequant_dtype=bf, launch_dependents=trig,
                                     **({"pdl_wait": True} if qwait else {}))
            return gmod.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, out_dtype=bf, **kw)

        if M <= 2:
            v16 = [("pdl reg", lambda i: a16(tg, i, pdl=True)), ("pdl l2pf", lambda i: a16(tg25, i, pdl=True, l2pf=True))]
            v4 = [("qwait", lambda i: a4(tq25, tg, i, qwait=True, pdl=True)),
                  ("qwait l2pf", lambda i: a4(tq25, tg25, i, qwait=True, pdl=True, l2pf=True))]
        elif M <= 8:
            v16 = [("mma pdl", lambda i: a16(tg25, i, pdl=True, mma_pdl="on"))]
            v4 = [("qwait", lambda i: a4(tq25, tg, i, qwait=True, pdl=True)),
                  ("qwait mma pdl", lambda i: a4(tq25, tg25, i, qwait=True, pdl=True, mma_pdl="on"))]
        else:
            v16 = [("tc pdl", lambda i: a16(tg25, i, tc_pdl=True)), ("tc pdl l2pf", lambda i: a16(tg25, i, tc_pdl=True, l2pf=True))]
            v4 = [("qwait", lambda i: a4(tq25, tg, i, qwait=True, pdl=True)),
                  ("qwait notrig tc pdl", lambda i: a4(tq25, tg25, i, trig=False, qwait=True, tc_pdl=True)),
                  ("qwait tc pdl l2pf", lambda i: a4(tq25, tg25, i, qwait=True, tc_pdl=True, l2pf=True))]
        ref16 = a16(tg, 0)
        ref4 = a4(tq, tg, 0, pdl=True)
        eq = [torch.equal(f(0), ref16) for _, f in v16] + [torch.equal(f(0), ref4) for _, f in v4]
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb), (lambda i: (lambda: a16(tg, i)), cq)]
        makers += [(lambda i, f=f: (lambda: f(i)), cq) for _, f in v16]
        makers += [(lambda i: (lambda: a4(tq, tg, i, pdl=True)), cq)]
        makers += [(lambda i, f=f: (lambda: f(i)), cq) for _, f in v4]
        names = ["bf16", "W4A16 main"] + ["W4A16 " + n for n, _ in v16] + ["W4A4 main"] + ["W4A4 " + n for n, _ in v4]
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M} cfg {tg.select_config(M, N, K, torch.device('cuda')).short()}  outputs equal: {eq}")
        for n, m, u, v in zip(names, means, ra, rb):
            print(f"  {n:24s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.3f}", flush=True)
    del wb, ds

# The same launches after a producer kernel (an elementwise copy writing the activations), as in a model:
# time of (producer + GEMM) minus the producer alone, so the GEMM's gain is not only from following itself.
print("\nproducer + GEMM pairs (x written by a copy kernel before every GEMM)")
for N, K in [(4096, 4096), (6144, 4096)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(bf) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    for M in (1, 16):
        src = (torch.randn(M, K, device="cuda") * 2).to(bf)
        x = torch.empty_like(src)

        def prod():
            x.copy_(src)
        extra = {"pdl": True} if M == 1 else {"tc_pdl": True}
        makers = [(lambda i: prod, cq),
                  (lambda i: (lambda: (prod(), torch.matmul(x, wb[i].T))), cb),
                  (lambda i: (lambda: (prod(), tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf))), cq),
                  (lambda i: (lambda: (prod(), tg25.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf, **extra))), cq)]
        names = ["producer alone", "producer + bf16", "producer + W4A16 main", f"producer + W4A16 {extra}"]
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M}")
        for n, m, u, v in zip(names, means, ra, rb):
            print(f"  {n:34s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  minus producer {(m - means[0]) * 1e3:7.2f}", flush=True)
        print(f"  bf16/W4A16 (marginal): main {(means[1] - means[0]) / (means[2] - means[0]):.3f}, "
              f"pdl {(means[1] - means[0]) / (means[3] - means[0]):.3f}")
    del wb, ds
