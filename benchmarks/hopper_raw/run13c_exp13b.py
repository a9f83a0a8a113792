"""Run 13c: quantizer at K = 14336 (single pass, 2 blocks a thread, vs chunked rows); GEMV tiles repeated."""
import sys, time
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _bench_graph
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_quantize as tq

gen = torch.Generator().manual_seed(0)
print("## quantizer, per token mse, CUDA graph, L2 flushed (us)", flush=True)
for R, K in ((4096, 14336), (4096, 4096), (4096, 8192), (16, 14336), (4096, 11008)):
    x = (torch.randn(R, K, generator=gen) * torch.exp(torch.randn(1, K, generator=gen))).to(torch.bfloat16)
    xc = x.cuda()
    ref = nvfp4.quantize(x, "mse", per_row=True)
    for single, chunk in ((1024, 256), (512, 256), (512, 512), (256, 128), (256, 256)):
        tq._MAX_SINGLE_PASS_BLOCKS, tq._CHUNK_BLOCKS = single, chunk
        for deq in (None, torch.bfloat16):
            f = lambda: tq.quantize_triton(xc, "mse", write_packed=deq is None, dequant_dtype=deq)
            q = f()
            ok = True
            if deq is None:
                ok = torch.equal(q.data.cpu(), ref.data) and torch.equal(q.scales.view(torch.uint8).cpu(), ref.scales.view(torch.uint8))
            t = _bench_graph(f, 100)
            print(f"{R}x{K} single<={single} chunk={chunk} {'operand' if deq else 'packed '}: {t*1e3:7.1f} us  exact={ok}", flush=True)
tq._MAX_SINGLE_PASS_BLOCKS, tq._CHUNK_BLOCKS = 1024, 256

print("## GEMV M=1 repeat (rotating, graph; us)", flush=True)
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (14336, 4096), (4096, 11008), (11008, 4096)]:
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = torch.ones((), device="cuda")
    x = torch.randn(1, K, generator=gen).cuda().to(torch.bfloat16)
    cfgs = [tg.select_config(1, N, K, x.device), tg.GemmConfig("gemv2", BM=1, BN=8, BK=2048, num_warps=4, num_stages=1),
            tg.GemmConfig("gemv2", BM=1, BN=16, BK=2048, num_warps=8, num_stages=1),
            tg.GemmConfig("gemv2", BM=1, BN=8, BK=1024, num_warps=2, num_stages=1)]
    for rep in range(2):
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        row = [f"bf16 {t_bf*1e3:.1f}"]
        for c in cfgs:
            if K % c.BK:
                continue
            t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=c)), cq)
            row.append(f"{c.short()} {t*1e3:.1f} ({t_bf/t:.2f}x)")
        print(f"{N}x{K} #{rep}: " + " | ".join(row), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
