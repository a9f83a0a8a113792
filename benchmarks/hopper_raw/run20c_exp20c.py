"""Run 20c: the quantizer's long-row pass at 512-2048 rows of K = 14336 (W4A4 at M = 1024, 4096x14336):
128-block chunks read twice (current: >= 4 rows an SM) vs one pass vs 256-block chunks; W4A4 end to end."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), flush=True)
N, K = 4096, 14336
w = torch.randn(N, K, device="cuda") * 0.02
wq = nvfp4.quantize(w, "mse")
cq = _copies(N * K * 9 // 16)
ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
gw = wq.global_scale.float().reshape(())
VARIANTS = {"chunks128": dict(_MANY_ROWS_PER_SM=4, _MANY_ROWS_CHUNK_BLOCKS=128),
            "one pass": dict(_MANY_ROWS_PER_SM=10 ** 6),
            "chunks256": dict(_MANY_ROWS_PER_SM=4, _MANY_ROWS_CHUNK_BLOCKS=256)}
for M in (512, 1024, 2048):
    x = _activations(M, K, gen)
    ref = None
    res = []
    for name, v in VARIANTS.items():
        for k, val in v.items():
            setattr(tq, k, val)
        fq = lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
        q = fq()
        if ref is None:
            ref = q
        torch.cuda.synchronize()
        assert torch.equal(q.dequant, ref.dequant) and torch.equal(q.global_scale, ref.global_scale), name
        tqz = _bench_graph(fq, 100)

        def a4(i):
            def f():
                qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                        launch_dependents=True)
                return tg.fp4_gemm(qq.dequant, ds[i][0], ds[i][1], gw, ga=qq.global_scale, pdl=True)
            return f
        t4 = _bench_rotating(a4, cq) if M == 1024 else float("nan")
        res.append(f"{name}: quantizer {tqz*1e3:.1f} W4A4 {t4*1e3:.1f}")
    tq._MANY_ROWS_PER_SM, tq._MANY_ROWS_CHUNK_BLOCKS = 4, 128
    print(f"[{M}, {K}] " + " | ".join(res), flush=True)
