"""Run 25e (W4A4 small M, main = bf391b5): (1) the Gluon mma kernel launched as a programmatic dependent
where main launches it plainly (M = 8 below N = 16384, K > 8192), the quantizer waiting as a dependent
but not triggering it early; (2) the quantizer splitting K = 4096 rows over 2 or 4 programs at few rows
(as it does beyond K = 4096), by its module constants."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, triton_quantize as tq

print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
be = TritonBackend()
a4 = ActivationQuant("mse", "token")
D_SHORT, D_MIN = tq._SHORT_ROW_BLOCKS, tq._SPLIT_MIN_BLOCKS
D_MMA = tg._mma_pdl


def setk(short=D_SHORT, mn=D_MIN, mma=D_MMA):
    tq._SHORT_ROW_BLOCKS, tq._SPLIT_MIN_BLOCKS, tg._mma_pdl = short, mn, mma


for N, K in [(6144, 4096), (4096, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    wb = [w.to(bf) for _ in range(cb)]
    qws = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    del w
    for M in (1, 2, 4, 8, 16):
        x = (torch.randn(M, K, device="cuda") * 2).to(bf)
        cfg = tg.select_config(M, N, K, torch.device("cuda"), cublas_prefill=False)

        def main(i):
            setk()
            return be.linear(x, qws[i], None, a4)

        def mma_dep(i):  # mma as a dependent, the quantizer not triggering it early
            setk(mma=lambda M, N, K: True)
            q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=bf, pdl_wait=True)
            out = tg.fp4_gemm(q.dequant, qws[i].data, qws[i].scales, qws[i].global_scale, ga=q.global_scale,
                              out_dtype=bf, pdl=True)
            setk()
            return out

        def split(i, mn):
            setk(short=128, mn=mn)
            out = be.linear(x, qws[i], None, a4)
            setk()
            return out

        vs = []
        if cfg.kind == "mma" and not D_MMA(M, N, K):
            vs.append(("mma dependent, no early trigger", mma_dep))
        if K == 4096:
            vs += [("quantizer split 2", lambda i: split(i, 128)), ("quantizer split 4", lambda i: split(i, 64))]
        if not vs:
            continue
        ref = main(0)
        eq = [torch.equal(f(0), ref) for _, f in vs]
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb), (lambda i: (lambda: main(i)), cq)]
        makers += [(lambda i, f=f: (lambda: f(i)), cq) for _, f in vs]
        names = ["bf16", "W4A4 main"] + ["W4A4 " + n for n, _ in vs]
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M} cfg {cfg.short()}  outputs equal: {eq}")
        for n, m, u, v in zip(names, means, ra, rb):
            print(f"  {n:36s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.3f}"
                  f"  this/main {m / means[1]:.3f}", flush=True)
    del wb, qws
