"""Run 23b: the Gluon mma kernel generalized to 16 activation rows (two n8 MMA columns a decoded
weight fragment) and to 32 weight rows a CTA (two A fragments a warp sharing the activations),
at M = 16 (and 12) against the selected Triton tile, and at M = 8 against the selected kernel;
plus run 23a's questions: the mma kernel at M = 1 against the GEMV, and at M = 8 with its ring.
W4A16 and W4A4 (quantizer + GEMM as the backend launches them), rotating weights, best of two
rounds. Each forced config's output is compared with the selected path's (rel. Frobenius)."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_quantize as tq

gen = torch.Generator().manual_seed(0)
dev = torch.device("cuda")
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)


def mma(bm, rows, warps, stages):
    return tg.GemmConfig(kind="mma", BM=bm, BN=rows, BK=128, num_warps=warps, num_stages=stages)


def cands(M, N, K):
    bm = 8 if M <= 8 else 16
    out = {}
    for rows, warps, stages in ((16, 8, 1), (16, 4, 1), (16, 4, 3), (16, 8, 2), (32, 4, 1), (32, 8, 1), (32, 4, 3)):
        if K % (128 * warps) == 0 and not (M == 1 and rows == 32):
            out[f"mma r{rows} w{warps} st{stages}"] = mma(bm, rows, warps, stages)
    return out


shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
for (N, K) in shapes:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone().view(torch.float8_e4m3fn)) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in (1, 8, 16, 12):
        x = _activations(M, K, gen)
        cfgs = {"selected": None, **cands(M, N, K)}
        sel = tg.select_config(M, N, K, dev, cublas_prefill=False).short()
        tb = min(_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb) for _ in range(2))
        res = [f"bf16 {tb * 1e3:.1f}"]
        ref = None
        for name, cfg in cfgs.items():
            out = tg.fp4_gemm(x, ds[0][0], ds[0][1], gw, config=cfg).float()
            if ref is None:
                ref = out
            rel = ((out - ref).norm() / ref.norm()).item()
            assert rel < 1e-3, (name, rel)

            def a4(i, cfg=cfg):
                def f():
                    q = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                           launch_dependents=True)
                    return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=cfg, pdl=True)
                return f
            t16 = min(_bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)
                      for _ in range(2))
            t4 = min(_bench_rotating(a4, cq) for _ in range(2))
            res.append(f"{name} {t16 * 1e3:.1f} / {t4 * 1e3:.1f} (rel {rel:.0e})")
        print(f"{N}x{K} M={M} [selected: {sel}]\n    " + "\n    ".join(res), flush=True)
    del wb, ds, w
