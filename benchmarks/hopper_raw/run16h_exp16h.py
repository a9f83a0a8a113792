"""Run 16h (device): M = 1 GEMV tiles with fewer bytes a program (the read floor's best was ~8 KB
programs), W4A16 and W4A4 (quantizer + PDL GEMV), next to the current selection."""
import sys, time
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.triton_quantize import quantize_triton
C = tg.GemmConfig
t0 = time.time()
for N, K in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    cq = _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32) * gw
    x = torch.randn(1, K, device="cuda").to(torch.bfloat16)
    ref = x.float() @ wdec.T
    sel = tg.select_config(1, N, K, torch.device("cuda"))
    cfgs = [None]
    for bn in (2, 4, 8):
        for bk in (1024, 2048, 4096):
            if bk > K:
                continue
            for nw in (1, 2, 4):
                if bn * bk // 2 // (32 * nw) < 16:
                    continue
                for sk in ((1, 2) if K // bk >= 2 else (1,)):
                    cfgs.append(C("gemv2", BM=1, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk))
    res = []
    for cfg in cfgs:
        try:
            o = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=cfg).float()
            err = ((o - ref).norm() / ref.norm()).item()
            t16 = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)

            def w4(i):
                def f():
                    q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=True)
                    return tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=cfg, pdl=True)
                return f
            t4 = _bench_rotating(w4, cq)
        except Exception as e:  # noqa: BLE001
            print(f"   {cfg}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
            continue
        name = "selected " + sel.short() if cfg is None else cfg.short()
        res.append((t16, t4, name, err))
        print(f"   {N}x{K} {name:34s} W4A16 {t16*1e3:6.2f} us  W4A4 {t4*1e3:6.2f} us  err {err:.1e}", flush=True)
    print(f"== {N}x{K}: best W4A16 {min(res)[2]} {min(res)[0]*1e3:.2f}; best W4A4 "
          f"{min(res, key=lambda r: r[1])[2]} {min(r[1] for r in res)*1e3:.2f}  [{time.time()-t0:.0f}s]", flush=True)
    del ds, w, wq, wdec
    torch.cuda.empty_cache()
