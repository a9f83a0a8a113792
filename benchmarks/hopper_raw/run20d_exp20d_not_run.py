"""Run 20d: the wgmma GEMM launched as a programmatic dependent of the quantizer (W4A4 at
M = 512/1024; the loader requests its first weight tiles before waiting) vs plainly; bit equality."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in (1024,):
        x = _activations(M, K, gen)
        path = tg.select_config(M, N, K, x.device).short()
        if "wgmma" not in path:
            continue
        res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}"]
        outs = {}
        for name, pdl, wpdl in (("plain", False, False), ("PDL, wgmma plain (main)", True, False), ("PDL, wgmma dependent", True, True)):
            tg._WGMMA_PDL = wpdl

            def a4(i):
                def f():
                    qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                            launch_dependents=pdl)
                    return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=pdl)
                return f
            outs[name] = a4(0)()
            res.append(f"{name} {_bench_rotating(a4, cq)*1e3:.1f}")
        tg._WGMMA_PDL = True
        torch.cuda.synchronize()
        for k, v in outs.items():
            assert torch.equal(outs["plain"], v), (N, K, M, k)
        print(f"{N}x{K} M={M} [{path}] W4A4: " + " | ".join(res), flush=True)
    del ds, wb
    torch.cuda.empty_cache()
print("wgmma failed:", tg._WGMMA_FAILED)
