"""Run 19c: why the wgmma GEMM with a per-row activation scale (W4A4) is slower than without
(run 19a: 4096x14336 M = 1024 209.7 vs 173.1 us on the same operand)."""
import sys, warnings
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

warnings.simplefilter("always")
gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
WG = tg.GemmConfig(kind="wgmma")
for (N, K) in [(4096, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    bias = torch.randn(N, device="cuda").to(torch.bfloat16)
    M = 1024
    x = _activations(M, K, gen)
    q = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
    qt = tq.quantize_triton(x, "mse", per_row=False, write_packed=False, dequant_dtype=torch.bfloat16)
    ones = torch.ones(M, device="cuda")
    cases = {
        "no ga (forced wgmma)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, config=WG)),
        "ga per row (forced)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=WG)),
        "ga per row + bias (forced)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, bias=bias, config=WG)),
        "ga per tensor (forced)": lambda i: (lambda: tg.fp4_gemm(qt.dequant, ds[i][0], ds[i][1], gw, ga=qt.global_scale, config=WG)),
        "ga = ones per row (forced)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=ones, config=WG)),
        "no ga, bias (forced)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, bias=bias, config=WG)),
        "ga per row (selected)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale)),
        "no ga (selected)": lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, gw_float=gwf)),
    }
    for name, mk in cases.items():
        t = _bench_rotating(mk, cq)
        print(f"{N}x{K} M={M} {name}: {t*1e3:.1f} us  (wgmma failed: {bool(tg._WGMMA_FAILED)})", flush=True)
    del ds
    torch.cuda.empty_cache()
