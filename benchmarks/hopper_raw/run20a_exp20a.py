"""Run 20a: wgmma epilogue variants at M = 512/1024 (compact activation-scale load vs per-column;
with and without the zero-bias workaround), bit equality, and W4A4 end to end."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import gluon_wgmma as gwg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
WG = tg.GemmConfig(kind="wgmma")
for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    bias = torch.randn(N, device="cuda").to(torch.bfloat16)
    zero = torch.zeros(N, device="cuda", dtype=torch.bfloat16)
    for M in (512, 1024):
        x = _activations(M, K, gen)
        q = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
        res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}",
               f"W4A16 {_bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf)), cq)*1e3:.1f}"]
        outs = {}
        for compact in (False, True):
            gwg._GA_COMPACT = compact
            for zb in (False, True):
                b = zero if zb else None
                outs[compact, zb] = tg.fp4_gemm(q.dequant, ds[0][0], ds[0][1], gw, ga=q.global_scale, bias=b, config=WG)
                t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, bias=b, config=WG)), cq)

                def a4(i):
                    def f():
                        qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                                launch_dependents=True)
                        return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, bias=b, pdl=True)
                    return f
                t4 = _bench_rotating(a4, cq)
                res.append(f"compact={int(compact)} zb={int(zb)}: GEMM {t*1e3:.1f} W4A4 {t4*1e3:.1f}")
            tb = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, bias=bias, config=WG)), cq)
            res.append(f"compact={int(compact)} +bias {tb*1e3:.1f}")
        gwg._GA_COMPACT = True
        torch.cuda.synchronize()
        for k, v in outs.items():
            assert torch.equal(outs[False, False], v), (N, K, M, k)
        print(f"{N}x{K} M={M} [{tg.select_config(M, N, K, x.device).short()}]: " + " | ".join(res), flush=True)
    del ds, wb
    torch.cuda.empty_cache()
print("wgmma failed:", tg._WGMMA_FAILED)
