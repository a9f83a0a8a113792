"""Run 13 experiments (device): A) W4A4 prefill GEMM, TMA persistent kernel vs the old tile vs cuBLAS;
B) M = 1 GEMV: memory floor, bigger K tiles, TMA-pipelined loop."""
import sys, time
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch, triton, triton.language as tl
from bench_gemm import _bench_rotating, _copies, _bench_graph
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_prefill as tp
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
part = sys.argv[1] if len(sys.argv) > 1 else "AB"
gen = torch.Generator().manual_seed(0)
t0 = time.time()


def old_dq_gemm(a, w, gw, ga):
    out = torch.empty((a.shape[0], w.shape[0]), dtype=torch.bfloat16, device="cuda")
    cfg = tg.DQ_TILE
    M, K = a.shape; N = w.shape[0]
    tiles = triton.cdiv(M, cfg.BM) * triton.cdiv(N, cfg.BN)
    tg._fp4_gemm_kernel[(tiles, 1)](
        a, w, w, w, gw, ga, gw, out, out, out, M, N, K, a.stride(0), out.stride(0), 1, M * N, K // 2, K // 16,
        BM=cfg.BM, BN=cfg.BN, BK=cfg.BK, SPLIT_K=1, GROUP_M=cfg.group_m, EVEN_K=K % cfg.BK == 0,
        DT=tl.bfloat16, USE_ASM=False, GW_VEC=False, HAS_GA=True, HAS_BIAS=False, IEEE=False, W_BF16=True,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


TILES = [tp.PrefillTile(128, 256, 64, 8, 8, 3), tp.PrefillTile(128, 128, 64, 8, 8, 4), tp.PrefillTile(128, 128, 64, 8, 4, 4),
         tp.PrefillTile(256, 128, 64, 8, 8, 3), tp.PrefillTile(128, 128, 128, 8, 8, 3), tp.PrefillTile(128, 256, 64, 4, 8, 3),
         tp.PrefillTile(64, 256, 64, 8, 4, 4)]

if "A" in part:
    print("## A: W4A4 prefill GEMM on decoded operands (graph replay, L2 flushed; us)", flush=True)
    for N, K in SHAPES:
        w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
        wq = nvfp4.quantize(w, "mse")
        wd = tg.dequantize_weight(wq.data, wq.scales.view(torch.uint8), torch.bfloat16)
        gw = wq.global_scale.reshape(1).float()
        for M in (256, 1024, 4096):
            x = torch.randn(M, K, generator=gen).cuda().to(torch.bfloat16)
            q = quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16)
            a, ga = q.dequant, q.global_scale
            ref = old_dq_gemm(a, wd, gw, ga).float()
            t_bf = _bench_graph(lambda: torch.matmul(a, wd.T), 200)
            t_old = _bench_graph(lambda: old_dq_gemm(a, wd, gw, ga), 200)
            t_q = _bench_graph(lambda: quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16), 100)
            t_dq = _bench_graph(lambda: tg.dequantize_weight(wq.data, wq.scales.view(torch.uint8), torch.bfloat16), 100)
            print(f"== {N}x{K} M={M}: cuBLAS bf16 {t_bf*1e3:.1f}, old tile {t_old*1e3:.1f} ({t_bf/t_old:.2f}x cuBLAS), "
                  f"quantizer {t_q*1e3:.1f}, weight decode {t_dq*1e3:.1f}  [{time.time()-t0:.0f}s]", flush=True)
            for t in TILES:
                try:
                    out = tp.prefill_gemm(a, wd, gw, ga, tile=t).float()
                    d = (out - ref).abs().max().item() / ref.abs().max().item()
                    tt = _bench_graph(lambda: tp.prefill_gemm(a, wd, gw, ga, tile=t), 200)
                    print(f"   {t.short():28s} {tt*1e3:8.1f} us {t_bf/tt:5.2f}x cuBLAS  maxdiff/max {d:.1e}", flush=True)
                except Exception as e:
                    print(f"   {t.short():28s} FAIL {type(e).__name__} {str(e)[:200]}", flush=True)
        del wd
        torch.cuda.empty_cache()


@triton.jit
def _read_floor(w_ptr, s_ptr, out_ptr, KB, BN: tl.constexpr, BKB: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BN + tl.arange(0, BN)
    kb = tl.arange(0, BKB)
    acc = tl.zeros((BN, BKB), tl.int32)
    acs = tl.zeros((BN, BKB // 8), tl.int32)
    for b0 in range(0, KB, BKB):
        acc += tl.load(w_ptr + rows[:, None].to(tl.int64) * KB + (b0 + kb)[None, :]).to(tl.int32)
        acs += tl.load(s_ptr + rows[:, None].to(tl.int64) * (KB // 8) + (b0 // 8 + tl.arange(0, BKB // 8))[None, :]).to(tl.int32)
    tl.store(out_ptr + pid, tl.sum(tl.sum(acc, 1), 0) + tl.sum(tl.sum(acs, 1), 0))


if "B" in part:
    print("## B: M = 1 (rotating weights, CUDA graph; us)", flush=True)
    from gemv_tma import gemv_tma_kernel
    from triton.tools.tensor_descriptor import TensorDescriptor
    for N, K in SHAPES:
        w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
        wq = nvfp4.quantize(w, "mse")
        wb = w.to(torch.bfloat16)
        cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
        wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
        ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
        gw = torch.ones((), device="cuda")
        x = torch.randn(1, K, generator=gen).cuda().to(torch.bfloat16)
        wdec = tg.dequantize_weight(wq.data, wq.scales.view(torch.uint8), torch.float32)
        ref = x.float() @ wdec.T
        t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
        sel = tg.select_config(1, N, K, x.device)
        t_sel = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
        print(f"== {N}x{K} M=1: bf16 {t_bf*1e3:.1f}, selected {sel.short()} {t_sel*1e3:.1f} ({t_bf/t_sel:.2f}x)", flush=True)
        fo = torch.empty(N, dtype=torch.int32, device="cuda")
        for bn, bkb, nw in ((16, 512, 4), (16, 2048, 4), (32, 512, 4), (8, 2048, 4)):
            if K // 2 % bkb:
                continue
            t = _bench_rotating(lambda i: (lambda: _read_floor[(N // bn,)](ds[i][0], ds[i][1], fo, K // 2, BN=bn, BKB=bkb, num_warps=nw)), cq)
            print(f"   floor read-only {bn}x{bkb}B w{nw}: {t*1e3:.1f} us ({t_bf/t:.2f}x)", flush=True)
        for bn, bk, nw, sk in ((16, 2048, 4, 1), (16, 4096, 4, 1), (8, 2048, 4, 1), (8, 4096, 4, 1), (16, 2048, 8, 1),
                               (32, 2048, 8, 1), (16, 2048, 4, 2)):
            if K % (bk * sk):
                continue
            cfg = tg.GemmConfig("gemv2", BM=1, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk)
            try:
                out = tg.fp4_gemm(x, wq.data, wq.scales, gw, config=cfg).float()
                err = ((out - ref).norm() / ref.norm()).item()
                t = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)
                print(f"   {cfg.short():32s} {t*1e3:6.1f} us {t_bf/t:5.2f}x err {err:.1e}", flush=True)
            except Exception as e:
                print(f"   {cfg.short():32s} FAIL {type(e).__name__} {str(e)[:200]}", flush=True)
        a32 = x.view(torch.int32)
        for bn, bkb, st, nw in ((16, 512, 2, 4), (16, 512, 3, 4), (16, 512, 4, 4), (16, 256, 4, 4), (32, 256, 3, 4), (16, 1024, 2, 4)):
            if (K // 2) % bkb:
                continue
            def mk(i, bn=bn, bkb=bkb, st=st, nw=nw):
                wd_ = TensorDescriptor(ds[i][0], [N, K // 2], [K // 2, 1], [bn, bkb])
                sd_ = TensorDescriptor(ds[i][1], [N, K // 16], [K // 16, 1], [bn, bkb // 8])
                o = torch.empty((1, N), dtype=torch.bfloat16, device="cuda")
                def f():
                    gemv_tma_kernel[(N // bn, 1, 1)](a32, wd_, sd_, gw, gw, gw, o, o, o, 1, N, K, a32.stride(0), o.stride(0), 0, N,
                                                     BM=1, BN=bn, BKB=bkb, SPLIT_K=1, A_F16=False, HW_E4M3=True, GW_VEC=False,
                                                     HAS_GA=False, HAS_BIAS=False, STAGES=st, num_warps=nw)
                    return o
                return f
            try:
                out = mk(0)()().float() if False else None
                f0 = mk(0); out = f0().float()
                err = ((out - ref).norm() / ref.norm()).item()
                t = _bench_rotating(mk, cq)
                print(f"   tma-gemv {bn}x{bkb}B st{st} w{nw}        {t*1e3:6.1f} us {t_bf/t:5.2f}x err {err:.1e}", flush=True)
            except Exception as e:
                print(f"   tma-gemv {bn}x{bkb}B st{st} FAIL {type(e).__name__} {str(e)[:300]}", flush=True)
        del wbs, ds
        torch.cuda.empty_cache()
print(f"done {time.time()-t0:.0f}s")
