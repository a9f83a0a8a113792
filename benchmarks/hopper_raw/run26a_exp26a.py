"""Run 26a probe: where the M = 16 tensor-core tile's time goes.
tg_abl = main's triton_gemm + ABL: 1 no decode (bytes converted to bf16), 2 no activation loads,
4 no split-K fix-up (partials stored only), 5 no weight loads (bytes made from the K index). Outputs of
the ablations are wrong by design; only times matter. Registers (sm_90, off-device): 105 / 110 / 58 / 80 / 78."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
import tg_abl

print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(bf) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    del w
    for M in (16,):
        x = (torch.randn(M, K, device="cuda") * 2).to(bf)
        cfg = tg.select_config(M, N, K, torch.device("cuda"), cublas_prefill=False)
        cfg = tg._with_split(cfg, M, N, K, tg.num_sms(torch.device("cuda")))
        x1 = x[:1].contiguous()
        makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
                  (lambda i: (lambda: tg.fp4_gemm(x1, ds[i][0], ds[i][1], gw)), cq),
                  (lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)]
        names = ["bf16", "W4A16 M=1 (GEMV)", f"W4A16 {cfg.short()}"]
        for abl, what in ((1, "no decode"), (2, "no activation loads"), (4, "no split-K fix-up"),
                          (5, "no weight loads")):
            if abl == 4 and cfg.split_k == 1:
                continue
            makers.append((lambda i, abl=abl: (lambda: tg_abl.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg, abl=abl)), cq))
            names.append(f"  ablation: {what}")
        means, (ra, rb) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
        print(f"{N}x{K} M={M}")
        for n, m, u, v in zip(names, means, ra, rb):
            print(f"  {n:36s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  this/tile {m / means[2]:.3f}", flush=True)
    del wb, ds
