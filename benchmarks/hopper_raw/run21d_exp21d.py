"""Run 21d: with run 21b's chunked path (one amax reduction, next chunk prefetched): K = 4096 rows in
two 128-block chunks when there are many rows (instead of one pass, 8 warps a row), and 256-block chunks
at K = 14336; W4A4 at 4096x4096 M = 1024."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

BASE = dict(_SHORT_ROW_BLOCKS=tq._SHORT_ROW_BLOCKS, _MANY_ROWS_CHUNK_BLOCKS=tq._MANY_ROWS_CHUNK_BLOCKS)
VARIANTS = {"main": {}, "K4096 chunked": dict(_SHORT_ROW_BLOCKS=128), "chunks256": dict(_MANY_ROWS_CHUNK_BLOCKS=256)}


def use(v):
    for k, val in {**BASE, **v}.items():
        setattr(tq, k, val)


gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, flush=True)
for R, K in [(1024, 4096), (2048, 4096), (4096, 4096), (1024, 14336), (4096, 14336)]:
    x = _activations(R, K, gen)
    res, ref = [], None
    for name, v in VARIANTS.items():
        if K == 4096 and name == "chunks256" or K != 4096 and name == "K4096 chunked":
            continue
        use(v)
        fq = lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
        fp = lambda: tq.quantize_triton(x, "mse", per_row=True)
        q, p = fq(), fp()
        torch.cuda.synchronize()
        if ref is None:
            ref = (q, p)
        assert torch.equal(q.dequant, ref[0].dequant) and torch.equal(q.global_scale, ref[0].global_scale), name
        assert torch.equal(p.data, ref[1].data) and torch.equal(p.scales.view(torch.uint8), ref[1].scales.view(torch.uint8)), name
        res.append(f"{name} {_bench_graph(fq, 100)*1e3:.1f} / {_bench_graph(fp, 100)*1e3:.1f}")
    use({})
    print(f"quantizer [{R}, {K}] us (operand / packed): " + " | ".join(res), flush=True)
    del x
N, K, M = 4096, 4096, 1024
w = torch.randn(N, K, device="cuda") * 0.02
wq = nvfp4.quantize(w, "mse")
cb = _copies(N * K * 2)
wb = [w.to(torch.bfloat16) for _ in range(cb)]
cq = _copies(N * K * 9 // 16)
ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
gw = wq.global_scale.float().reshape(())
x = _activations(M, K, gen)
res = [f"bf16 {_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].t())), cb)*1e3:.1f}"]
for rep in range(2):
    for name in ("main", "K4096 chunked"):
        use(VARIANTS[name])

        def a4(i):
            def f():
                qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                        launch_dependents=True)
                return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
            return f
        res.append(f"{name} {_bench_rotating(a4, cq)*1e3:.1f}")
use({})
print(f"{N}x{K} M={M} W4A4 us (two rounds): " + " | ".join(res), flush=True)
