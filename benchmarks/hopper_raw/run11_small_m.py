"""tc path with HW scales / PERM_K at M=16 (and 8, 32), gemv2 split rule at M=1/4."""
import sys, itertools, time, torch
sys.path.insert(0, "."); sys.path.insert(0, "tools")
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
C = tg.GemmConfig
gen = torch.Generator().manual_seed(0)
shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
t0 = time.time()
for N, K in shapes:
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    wdec = tg.dequantize_weight(wq.data, wq.scales, torch.float32)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = torch.ones((), device="cuda")
    for M in (1, 4, 16, 32):
        x = torch.randn(M, K, generator=gen).cuda().to(torch.bfloat16)
        ref = x.float() @ wdec.T
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        cfgs = [tg.select_config(M, N, K, x.device)]
        if M <= 4:
            for bn, bk, nw, sk in ((16, 1024, 4, 1), (16, 1024, 4, 2), (16, 1024, 4, 4), (16, 512, 4, 4), (64, 512, 8, 4), (32, 1024, 8, 2)):
                cfgs.append(C("gemv2", BM=M, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk))
        else:
            BM = 16 if M <= 16 else 32
            for kind, bn, bk, nw, st, pk in (("tc", 64, 256, 4, 3, False), ("tc", 64, 256, 4, 3, True), ("tc", 32, 256, 4, 3, True),
                                             ("tc", 64, 128, 4, 4, True), ("tc", 128, 256, 8, 3, True), ("tc", 64, 512, 4, 2, True),
                                             ("tcT", 64, 256, 4, 3, True), ("tcT", 64, 256, 4, 3, False), ("tcT", 128, 128, 4, 3, True)):
                for sk in (1, 4):
                    cfgs.append(C(kind, BM=BM, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk, perm_k=pk))
        rows = []
        for cfg in cfgs:
            try:
                out = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=cfg).float()
                err = ((out - ref).norm() / ref.norm()).item()
                if err > 1e-2:
                    rows.append((1e9, cfg.short(), f"BAD err {err:.1e}"))
                    continue
                t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq, reps=15)
                rows.append((t, cfg.short(), f"err {err:.1e}"))
            except Exception as e:
                rows.append((1e9, cfg.short(), f"FAIL {type(e).__name__} {str(e)[:120]}"))
        sel = rows[0]
        print(f"== {N}x{K} M={M} bf16 {t_bf*1e3:.1f} us; selected {sel[1]} {sel[0]*1e3:.1f} us ({t_bf/sel[0]:.2f}x)  [{time.time()-t0:.0f}s]", flush=True)
        for t, name, note in sorted(rows)[:8]:
            print(f"   {t*1e3:6.1f} us {t_bf/t:5.2f}x  {name} {note}", flush=True)
        for t, name, note in rows:
            if t > 1e8:
                print("   ", name, note, flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
