"""Run 18a: gluon_gemm's mma kernel vs the same with a cp.async ring (.scratch/gl_async.py)."""
import sys, time
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import gluon_gemm
from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, select_config
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
import gl_async

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
    for M in (1, 2, 4, 8):
        x = _activations(M, K, gen)
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        cfg = select_config(M, N, K, x.device)
        t_cur = _bench_rotating(lambda i: (lambda: fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
        res = [f"bf16 {t_bf*1e3:.2f}", f"cur[{cfg.short()}] {t_cur*1e3:.2f} ({t_bf/t_cur:.2f}x)"]
        out0 = None
        for W in (4, 8):
            if K % (128 * W):
                continue
            o = torch.empty(M, N, dtype=torch.bfloat16, device="cuda")
            gluon_gemm.fp4_mma_gemm(x, wq.data, sb, gw, ga, bias, o, sga, ep, W)
            out0 = o.clone()
            t = _bench_rotating(lambda i: (lambda: gluon_gemm.fp4_mma_gemm(x, ds[i][0], ds[i][1], gw, ga, bias, o, sga, ep, W)), cq)
            res.append(f"mma W{W} {t*1e3:.2f} ({t_bf/t:.2f}x)")
            for st in (2, 3, 4):
                for xa in (False, True):
                    try:
                        o2 = torch.zeros(M, N, dtype=torch.bfloat16, device="cuda")
                        gl_async.gemm(x, wq.data, sb, gw, ga, bias, o2, sga, ep, W, st, xa)
                        same = torch.equal(o2, out0)
                        t = _bench_rotating(lambda i: (lambda: gl_async.gemm(x, ds[i][0], ds[i][1], gw, ga, bias, o, sga, ep, W, st, xa)), cq)
                        res.append(f"async W{W} S{st}{' X' if xa else ''} {t*1e3:.2f} ({t_bf/t:.2f}x){'' if same else ' MISMATCH'}")
                    except Exception as e:
                        res.append(f"async W{W} S{st} xa{xa} FAILED {type(e).__name__}: {str(e)[:200]}")
        print(f"{N}x{K} M={M}:\n   " + "\n   ".join(res), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
