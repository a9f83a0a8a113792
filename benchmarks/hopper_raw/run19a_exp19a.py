"""Run 19a: where W4A4's time over W4A16 goes at M = 512/1024 (the planned run 18e), and the
quantizer's time against a copy of its input at 1..4096 rows."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels.triton_gemm import fp4_gemm, select_config

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)


def graph_time(fn, calls=20, reps=20):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay(); torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / calls)
    ts.sort()
    return ts[len(ts) // 2]


def q_op(x):
    return tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)


print("## quantizer (CUDA graph of 20 calls, same input, us)")
for K in (4096, 14336):
    for M in (1, 8, 16, 256, 1024, 4096):
        x = _activations(M, K, gen)
        y = torch.empty_like(x)
        t_copy = graph_time(lambda: y.copy_(x))
        t_q = graph_time(lambda: q_op(x))
        t_p = graph_time(lambda: tq.quantize_triton(x, "mse", per_row=True))
        t_s = graph_time(lambda: tq.quantize_triton(x, "static_6", per_row=True, write_packed=False,
                                                     dequant_dtype=torch.bfloat16))
        print(f"[{M}, {K}] copy {t_copy:.1f} | mse operand {t_q:.1f} | mse packed {t_p:.1f} | static_6 operand {t_s:.1f}",
              flush=True)

print("## quantizer variants at K = 4096 (mse operand, us)")
for M in (256, 1024, 4096):
    x = _activations(M, 4096, gen)
    base = graph_time(lambda: q_op(x))
    tq._BLOCKS_PER_THREAD = 2
    two = graph_time(lambda: q_op(x))
    tq._BLOCKS_PER_THREAD = 1
    old = tq._SHORT_ROW_BLOCKS
    tq._SHORT_ROW_BLOCKS = 128
    chunk = graph_time(lambda: q_op(x))
    tq._SHORT_ROW_BLOCKS = old
    print(f"[{M}, 4096] one block a thread (8 warps) {base:.1f} | two blocks a thread (4 warps) {two:.1f} "
          f"| 128-block chunks, 4 warps, read twice {chunk:.1f}", flush=True)

print("## GEMM decomposition (rotating weights, us)")
for (N, K) in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    gw = wq.global_scale.float().reshape(())
    gwf = float(gw)
    for M in (512, 1024):
        x = _activations(M, K, gen)
        q = q_op(x)
        tb = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)
        t16 = _bench_rotating(lambda i: (lambda: fp4_gemm(x, ds[i][0], ds[i][1], gw, gw_float=gwf)), cq)
        t16d = _bench_rotating(lambda i: (lambda: fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, gw_float=gwf)), cq)
        tg4 = _bench_rotating(lambda i: (lambda: fp4_gemm(q.dequant, ds[i][0], ds[i][1], gw, ga=q.global_scale)), cq)
        tq_ = _bench_rotating(lambda i: (lambda: q_op(x)), cq)

        def a4(i):
            def f():
                qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                        launch_dependents=True)
                return fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
            return f
        t4 = _bench_rotating(a4, cq)
        print(f"{N}x{K} M={M} [{select_config(M, N, K, x.device).short()}]: bf16 {tb*1e3:.1f} | W4A16 {t16*1e3:.1f} "
              f"| W4A16-style GEMM on q.dequant {t16d*1e3:.1f} | W4A4 GEMM (ga) {tg4*1e3:.1f} | quantizer alone "
              f"{tq_*1e3:.1f} | W4A4 quantizer + GEMM {t4*1e3:.1f}", flush=True)
    del ds, wb
    torch.cuda.empty_cache()
