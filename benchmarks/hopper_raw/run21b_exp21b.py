"""Run 21b: the quantizer's chunked path (many rows of K > 4096): the row amax as one elementwise
max over the chunks and one reduction (new, main) vs a CTA reduction a chunk (old, run 20), and the
new one with the next chunk prefetched in the quantize loop; W4A4 at 4096x14336 M = 1024."""
import sys, importlib.util
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq_new
from vllm_fouroversix.kernels import triton_gemm as tg


def _load(name):
    sp = importlib.util.spec_from_file_location(name, f".scratch/{name}.py")
    m = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(m)
    return m


MODS = {"old": _load("tq_old"), "new": tq_new, "new+prefetch": _load("tq_pf")}
gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for K in (14336, 8192):
    for R in (512, 1024, 2048, 4096):
        x = _activations(R, K, gen)
        res, ref = [], None
        for name, tq in MODS.items():
            fq = lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
            fp = lambda: tq.quantize_triton(x, "mse", per_row=True)
            q, p = fq(), fp()
            torch.cuda.synchronize()
            if ref is None:
                ref = (q, p)
            assert torch.equal(q.dequant, ref[0].dequant) and torch.equal(q.global_scale, ref[0].global_scale), name
            assert torch.equal(p.data, ref[1].data) and torch.equal(p.scales.view(torch.uint8), ref[1].scales.view(torch.uint8)), name
            res.append(f"{name} {_bench_graph(fq, 100)*1e3:.1f} / {_bench_graph(fp, 100)*1e3:.1f}")
        cp = _bench_graph(lambda: x.clone(), 100)
        print(f"quantizer [{R}, {K}] us (operand / packed): " + " | ".join(res) + f" | copy {cp*1e3:.1f}", flush=True)
        del x
for (N, K) in [(4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    cb = _copies(N * K * 2)
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    del w
    cq = _copies(N * K * 9 // 16)
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    for M in (1024, 512):
        x = _activations(M, K, gen)
        path = tg.select_config(M, N, K, x.device).short()
        res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}"]
        outs = {}
        for rep in range(2):
            for name, tq in MODS.items():
                def a4(i):
                    def f():
                        qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                                launch_dependents=True)
                        return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
                    return f
                outs[name] = a4(0)()
                res.append(f"{name} {_bench_rotating(a4, cq)*1e3:.1f}")
        torch.cuda.synchronize()
        for k, v in outs.items():
            assert torch.equal(outs["old"], v), (N, K, M, k)
        print(f"{N}x{K} M={M} [{path}] W4A4 us (two rounds): " + " | ".join(res), flush=True)
