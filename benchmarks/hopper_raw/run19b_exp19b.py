"""Run 19b: W4A4 at M = 1..4 end to end (quantizer launched with launch_dependents, GEMM as its
programmatic dependent, as TritonBackend.linear): the GEMV reading 2 weight tiles before its wait
instead of 1, and the quantizer's row split over 2-8 programs (each reading the whole row for
its amax), against W4A16 and bf16 on the same warm machine."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
D = dict(short=tq._SHORT_ROW_BLOCKS, minb=tq._SPLIT_MIN_BLOCKS)


def setq(split_min):
    if split_min is None:
        tq._SHORT_ROW_BLOCKS, tq._SPLIT_MIN_BLOCKS = D["short"], D["minb"]
    else:
        tq._SHORT_ROW_BLOCKS, tq._SPLIT_MIN_BLOCKS = 16, split_min


for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    for M in (1, 2, 4):
        x = _activations(M, K, gen)
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)
        t16 = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf)), cq)
        ref = None
        res = []
        for split_min in (None, 128, 64, 32):
            for tiles in ((1, 2) if M == 1 else (1,)):
                setq(split_min)
                tg._PDL_EXTRA_LAUNCH = {"PDL_TILES": tiles} if tiles > 1 else {}

                def a4(i):
                    def f():
                        qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False,
                                                dequant_dtype=torch.bfloat16, launch_dependents=True)
                        return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
                    return f
                out = a4(0)()
                torch.cuda.synchronize()
                if ref is None:
                    ref = out
                else:
                    assert torch.equal(out, ref), (N, K, M, split_min, tiles)
                t4 = _bench_rotating(a4, cq)
                res.append(f"q split {split_min or 'off'}/tiles {tiles}: {t4*1e3:.2f} ({tb/t4:.2f}x)")
        setq(None)
        tg._PDL_EXTRA_LAUNCH = {}
        print(f"{N}x{K} M={M}: bf16 {tb*1e3:.1f} | W4A16 {t16*1e3:.2f} ({tb/t16:.2f}x) | W4A4 " + " | ".join(res),
              flush=True)
    del ds, wb
    torch.cuda.empty_cache()
