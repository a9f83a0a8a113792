"""Run 22a: the 4/6 quantizer (operand mode, what W4A4 uses) with many rows of K = 4096 split over
2 or 4 programs a row (the SPLIT path: each program reads the whole row for its amax and quantizes
its chunk), against one program a row (main); static_6 and a copy as floors; W4A4 end to end."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.nvfp4 import rule_constants, ScaleRule
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg


def q_split(x, progs, rule="mse", launch_dependents=False):
    """Operand mode, per-token amax, each row over ``progs`` programs (SPLIT)."""
    R, K = x.shape
    nb = K // 16
    cb = triton.next_power_of_2(triton.cdiv(nb, progs))
    progs = triton.cdiv(nb, cb)
    warps = max(1, cb // 32)
    c = rule_constants(ScaleRule(rule))
    gs = torch.empty(R, dtype=torch.float32, device=x.device)
    deq = torch.empty((R, K), dtype=torch.bfloat16, device=x.device)
    amax_tile = min(triton.next_power_of_2(K), warps * 32 * tq._SPLIT_AMAX_PER_THREAD)
    tq._quantize_kernel[(R, progs)](
        x, gs, deq, deq, gs, deq, K, x.stride(0), deq.stride(0),
        RULE=tq.RULE_IDS[ScaleRule(rule)], M=c.M, MS=c.MS, ROW_AMAX=True, AMAX_PER_ROW=False,
        NUM_CHUNKS=progs, CB=cb, WRITE_PACKED=False, WRITE_DEQ=True, HW_CVT=tq._hw_cvt(x.device),
        LAUNCH_DEPENDENTS=launch_dependents, SPLIT=True, AMAX_TILE=amax_tile,
        AMAX_ITERS=triton.cdiv(K, amax_tile), AMAX_IS_MAX=True, num_warps=warps, enable_fp_fusion=False)
    return tq.QuantizedActivation(None, None, gs, deq)


def q_main(x, rule="mse", launch_dependents=False):
    return tq.quantize_triton(x, rule, per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                              launch_dependents=launch_dependents)


gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
for R, K in [(1024, 4096), (2048, 4096), (4096, 4096), (1024, 14336)]:
    x = _activations(R, K, gen)
    ref = q_main(x)
    res = []
    for name, f in [("main", lambda: q_main(x)), ("split2", lambda: q_split(x, 2)), ("split4", lambda: q_split(x, 4)),
                    ("split8", lambda: q_split(x, 8)), ("static_6 main", lambda: q_main(x, "static_6")),
                    ("copy", lambda: ref.dequant.copy_(x))]:
        if K != 4096 and name.startswith("split") and name != "split8":
            continue
        out = f()
        torch.cuda.synchronize()
        if name.startswith("split"):
            assert torch.equal(out.dequant, ref.dequant) and torch.equal(out.global_scale, ref.global_scale), name
        res.append(f"{name} {_bench_graph(f, 100)*1e3:.1f}")
    print(f"quantizer operand [{R}, {K}] us: " + " | ".join(res), flush=True)
    del x
for N, K in [(4096, 4096), (6144, 4096), (4096, 14336)]:
    M = 1024
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = _activations(M, K, gen)
    res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}",
           f"W4A16 {_bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)*1e3:.1f}"]
    outs = {}
    for rep in range(2):
        for name, quant in (("main", lambda: q_main(x, launch_dependents=True)),
                            ("split2", lambda: q_split(x, 2, launch_dependents=True)),
                            ("split8", lambda: q_split(x, 8, launch_dependents=True))):
            if K != 4096 and name == "split2":
                continue

            def a4(i, quant=quant):
                def f():
                    qq = quant()
                    return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
                return f
            if rep == 0:
                outs[name] = a4(0)()
                torch.cuda.synchronize()
                assert torch.equal(outs[name], outs["main"]), name
            res.append(f"{name} {_bench_rotating(a4, cq)*1e3:.1f}")
    print(f"{N}x{K} M={M} us: " + " | ".join(res), flush=True)
    del w, wb, ds
