"""Run 18b: the mma kernel's cp.async ring (selected) vs plain loads, W4A16 and W4A4 (with PDL)."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import gluon_gemm as gg
from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, select_config, GemmConfig
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for (N, K) in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in (2, 3, 4, 8):
        x = _activations(M, K, gen)
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        new = select_config(M, N, K, x.device)
        old = GemmConfig(kind="mma", BM=8, BN=16, BK=128, num_warps=gg.mma_warps(N, K), num_stages=1)
        res = [f"bf16 {t_bf*1e3:.2f}"]
        outs = {}
        for name, cfg in (("old", old), ("new", new)):
            outs[name] = fp4_gemm(x, wq.data, wq.scales, gw, config=cfg)
            t = _bench_rotating(lambda i: (lambda: fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)
            res.append(f"W4A16 {name} [{cfg.short()}] {t*1e3:.2f} ({t_bf/t:.2f}x)")
        torch.testing.assert_close(outs["old"].float(), outs["new"].float(), rtol=2 ** -7, atol=1e-2 * outs["old"].float().abs().max().item())

        def a4(i, cfg, pdl):
            q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                launch_dependents=True)
            if pdl is None:
                return fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=cfg, pdl=True)
            g, ga, b, sga, ep = epilogue_args(gw, q.global_scale, None)
            o = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
            return gg.fp4_mma_gemm(q.dequant, ds[i][0], ds[i][1].view(torch.uint8), g, ga, b, o, sga, ep,
                                   cfg.num_warps, pdl=pdl, stages=cfg.num_stages)
        for name, cfg, pdl in (("old", old, None), ("new", new, None), ("new pdl", new, True), ("new nopdl", new, False)):
            t = _bench_rotating(lambda i: (lambda: a4(i, cfg, pdl)), cq)
            res.append(f"W4A4 {name} [{cfg.short()}] {t*1e3:.2f} ({t_bf/t:.2f}x)")
        print(f"{N}x{K} M={M}:\n   " + "\n   ".join(res), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
