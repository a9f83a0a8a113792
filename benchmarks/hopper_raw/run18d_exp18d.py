"""Run 18d: activations in the small-M kernel's cp.async ring (conflict-free layout); 16 MMA columns."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, select_config
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
import gl_async2

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for (N, K) in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    sb = wq.scales.view(torch.uint8)
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), sb.clone()) for _ in range(cq)]
    gw, ga, bias, sga, ep = epilogue_args(wq.global_scale.float().reshape(()), None, None)
    for M in (2, 8, 16):
        x = _activations(M, K, gen)
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        cfg = select_config(M, N, K, x.device)
        ref = fp4_gemm(x, wq.data, wq.scales, gw).float()
        t_cur = _bench_rotating(lambda i: (lambda: fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
        res = [f"bf16 {t_bf*1e3:.2f}", f"cur[{cfg.short()}] {t_cur*1e3:.2f} ({t_bf/t_cur:.2f}x)"]
        for W, st, xs in ((4, 3, True), (4, 4, True), (8, 2, True), (4, 3, False)):
            if K % (128 * W) or (W == 4 and st == 4 and M == 2):
                continue
            try:
                o = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
                gl_async2.gemm(x, wq.data, sb, gw, ga, bias, o, sga, ep, W, st, xs)
                err = ((o.float() - ref).norm() / ref.norm()).item()
                t = _bench_rotating(lambda i: (lambda: gl_async2.gemm(x, ds[i][0], ds[i][1], gw, ga, bias, o, sga, ep, W, st, xs)), cq)
                res.append(f"ring W{W} S{st}{' xs' if xs else ''} {t*1e3:.2f} ({t_bf/t:.2f}x) err {err:.1e}")
            except Exception as e:
                res.append(f"ring W{W} S{st} xs{xs} FAILED {type(e).__name__}: {str(e)[:200]}")
        print(f"{N}x{K} M={M}:\n   " + "\n   ".join(res), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
