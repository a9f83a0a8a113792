"""Run 14b: quantizer with few rows split over parallel programs (each reading the whole row for its amax):
alone (W4A4 operand mode, CUDA graph, L2 flushed) and W4A4 end to end at M = 1, 2, 16 (rotating weights)."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _bench_graph
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_quantize as tq

gen = torch.Generator().manual_seed(0)
print("## quantizer alone, mse per token, operand mode (us); split off | split with programs of >= 32/64/128 blocks", flush=True)
for K in (4096, 14336):
    for R in (1, 2, 4, 16, 32, 64):
        x = (torch.randn(R, K, generator=gen) * torch.exp(torch.randn(1, K, generator=gen))).to(torch.bfloat16)
        xc = x.cuda()
        ref = nvfp4.quantize(x, "mse", per_row=True)
        row = []
        for smax, smin in ((0, 32), (32, 32), (32, 64), (32, 128)):
            tq._SPLIT_MAX_ROWS, tq._SPLIT_MIN_BLOCKS = smax, smin
            q = tq.quantize_triton(xc, "mse")
            ok = torch.equal(q.data.cpu(), ref.data) and torch.equal(q.scales.view(torch.uint8).cpu(), ref.scales.view(torch.uint8)) \
                and torch.equal(q.global_scale.cpu(), ref.global_scale.float().reshape(-1))
            t = _bench_graph(lambda: tq.quantize_triton(xc, "mse", write_packed=False, dequant_dtype=torch.bfloat16), 50)
            row.append(f"{'off' if smax == 0 else smin}: {t*1e3:5.1f}{'' if ok else ' MISMATCH'}")
        print(f"{R}x{K}: " + " | ".join(row), flush=True)
tq._SPLIT_MAX_ROWS, tq._SPLIT_MIN_BLOCKS = 32, 32

print("## W4A4 end to end (quantizer + GEMM, PDL where M <= 2), rotating weights, graph (us)", flush=True)
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.reshape(())
    for M in (1, 2, 16):
        x = torch.randn(M, K, generator=gen).cuda().to(torch.bfloat16)
        def mk(i):
            def f():
                q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
                return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=True)
            return f
        outs = []
        for rep in range(2):
            t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
            t16 = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
            row = [f"bf16 {t_bf*1e3:.1f}", f"W4A16 {t16*1e3:.1f} ({t_bf/t16:.2f}x)"]
            for smax in (0, 32):
                tq._SPLIT_MAX_ROWS = smax
                if rep == 0:
                    outs.append(mk(0)())
                t4 = _bench_rotating(mk, cq)
                row.append(f"W4A4 split {'off' if smax == 0 else 'on'} {t4*1e3:.1f} ({t_bf/t4:.2f}x)")
            print(f"{N}x{K} M={M} #{rep}: " + " | ".join(row) + f" | same={torch.equal(outs[0], outs[1])}", flush=True)
        tq._SPLIT_MAX_ROWS = 32
    del wbs, ds
    torch.cuda.empty_cache()
