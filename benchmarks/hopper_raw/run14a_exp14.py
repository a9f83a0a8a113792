"""Run 14a: (A) W4A4 M = 1/2 GEMV with the first weight tile read before the PDL wait, old vs new;
(B) prefill (dq) path with the weight decoded in L2-sized chunks of rows, W4A16 (cuBLAS) and W4A4 (Triton GEMM)."""
import sys, importlib.util
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels import triton_quantize as tq

spec = importlib.util.spec_from_file_location("tg_old", ".scratch/tg_old.py")
tg_old = importlib.util.module_from_spec(spec); sys.modules["tg_old"] = tg_old; spec.loader.exec_module(tg_old)
gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), "L2", torch.cuda.get_device_properties(0).L2_cache_size >> 20, "MiB", flush=True)
SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
part = sys.argv[1] if len(sys.argv) > 1 else "AB"

def weights(N, K):
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    return w.to(torch.bfloat16), wq

if "A" in part:
    print("## A: W4A4 GEMV, PDL; rotating weights, graph (us)", flush=True)
    for N, K in SHAPES:
        wb, wq = weights(N, K)
        cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
        wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
        ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
        gw = wq.global_scale.reshape(())
        for M in (1, 2):
            x = (torch.randn(M, K, generator=gen)).cuda().to(torch.bfloat16)
            def w4a4(mod, pdl):
                def mk(i):
                    def f():
                        q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16, launch_dependents=pdl)
                        return mod.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, pdl=pdl)
                    return f
                return mk
            o_new, o_old = w4a4(tg, True)(0)(), w4a4(tg_old, True)(0)()
            same = torch.equal(o_new, o_old)
            for rep in range(2):
                t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
                t16 = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
                t_new = _bench_rotating(w4a4(tg, True), cq)
                t_old = _bench_rotating(w4a4(tg_old, True), cq)
                t_nopdl = _bench_rotating(w4a4(tg, False), cq)
                print(f"{N}x{K} M={M} #{rep}: bf16 {t_bf*1e3:.1f} | W4A16 {t16*1e3:.1f} ({t_bf/t16:.2f}x) | W4A4 old-pdl {t_old*1e3:.1f} ({t_bf/t_old:.2f}x)"
                      f" | new-pdl {t_new*1e3:.1f} ({t_bf/t_new:.2f}x) | no-pdl {t_nopdl*1e3:.1f} | same={same}", flush=True)
        del wbs, ds
        torch.cuda.empty_cache()

if "B" in part:
    print("## B: prefill, weight decoded in chunks of rows; rotating weights, graph (us; ratio bf16/ours)", flush=True)
    for N, K in SHAPES:
        wb, wq = weights(N, K)
        cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
        wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
        ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
        gw = wq.global_scale.reshape(())
        gwf = float(gw)
        for M in (256, 1024, 4096):
            x = (torch.randn(M, K, generator=gen)).cuda().to(torch.bfloat16)
            q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16)
            t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
            row = [f"bf16 {t_bf*1e3:.1f}"]
            ref16 = ref4 = None
            for rows in (None, 8192, 4096, 3072, 2048, 1024):
                if rows is not None and rows >= N:
                    continue
                tg._DQ_CHUNK_ROWS = rows
                cfg = tg.GemmConfig("dq")
                f16 = lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf, config=cfg))
                f4 = lambda i: (lambda: tg.fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale, config=cfg))
                o16, o4 = f16(0)(), f4(0)()
                if ref16 is None:
                    ref16, ref4 = o16, o4
                d16 = (o16.float() - ref16.float()).abs().max().item()
                eq4 = torch.equal(o4, ref4)
                t16 = _bench_rotating(f16, cq)
                t4 = _bench_rotating(f4, cq)
                row.append(f"{rows or 'all'}: A16 {t16*1e3:.1f} ({t_bf/t16:.2f}x) A4gemm {t4*1e3:.1f} ({t_bf/t4:.2f}x) d16={d16:.2g} eq4={eq4}")
            tg._DQ_CHUNK_ROWS = None
            print(f"{N}x{K} M={M}: " + " | ".join(row), flush=True)
        del wbs, ds
        torch.cuda.empty_cache()
