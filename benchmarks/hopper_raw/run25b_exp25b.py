"""Run 25b: W4A4 with the quantizer launched as a programmatic dependent of the kernel before it (it waits
at its start: its launch overlaps that kernel's end), and for the tensor-core tiles (M = 9..64) the GEMM
launched as the quantizer's dependent: waiting at its start (quantizer not triggering early), or holding
its first K tile's weight in registers across the wait (quantizer triggering at its start; 'preload'),
optionally capped at 128 registers. M = 1024: the quantizer's wait only (the wgmma plan as in main).
tg25's L2PF flag on the tc kernel = the preload here."""
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
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(bf) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    del w
    for M in (9, 16, 32, 64, 1024):
        if M == 1024 and N > 6144:
            continue
        x = (torch.randn(M, K, device="cuda") * 2).to(bf)

        def a4(qmod, gmod, i, trig=True, qwait=False, **kw):
            q = qmod.quantize_triton(x, "mse", write_packed=False, dequant_dtype=bf, launch_dependents=trig,
                                     **({"pdl_wait": True} if qwait else {}))
            return gmod.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, out_dtype=bf, **kw)

        if M == 1024:
            v4 = [("qwait", lambda i: a4(tq25, tg, i, qwait=True, pdl=True))]
        else:
            v4 = [("qwait", lambda i: a4(tq25, tg, i, qwait=True, pdl=True)),
                  ("qwait notrig tc wait", lambda i: a4(tq25, tg25, i, trig=False, qwait=True, tc_pdl=True)),
                  ("qwait trig tc preload", lambda i: a4(tq25, tg25, i, qwait=True, tc_pdl=True, l2pf=True)),
                  ("qwait trig tc preload r128", lambda i: a4(tq25, tg25, i, qwait=True, tc_pdl=True, l2pf=True,
                                                               tc_maxnreg=128)),
                  ("qwait notrig tc preload", lambda i: a4(tq25, tg25, i, trig=False, qwait=True, tc_pdl=True,
                                                          l2pf=True))]
        ref4 = a4(tq, tg, 0, pdl=True)
        eq = [torch.equal(f(0), ref4) for _, f in v4]
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb), (lambda i: (lambda: a4(tq, tg, i, pdl=True)), cq)]
        makers += [(lambda i, f=f: (lambda: f(i)), cq) for _, f in v4]
        names = ["bf16", "W4A4 main"] + ["W4A4 " + n for n, _ in v4]
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M} cfg {tg.select_config(M, N, K, torch.device('cuda'), cublas_prefill=False).short()}"
              f"  outputs equal: {eq}")
        for n, m, u, v in zip(names, means, ra, rb):
            print(f"  {n:28s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.3f}"
                  f"  this/main {m / means[1]:.3f}", flush=True)
    del wb, ds
