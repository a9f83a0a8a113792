"""Run 21f: why bench_gemm's W4A4 at 4096x14336 M = 1024 (~229 us) is ~20 us above the experiments'
(~205-210 us): the backend path (bench_gemm) vs fp4_gemm called directly (experiments), and
activations from three seeds; the quantizer alone on each."""
import sys
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_quantize as tq
from vllm_fouroversix.kernels import triton_gemm as tg

print(torch.cuda.get_device_name(), flush=True)
N, K, M = 4096, 14336, 1024
be, a4 = TritonBackend(), ActivationQuant("mse", "token")
w = torch.randn(N, K, device="cuda") * 0.02
wq = nvfp4.quantize(w, "mse")
qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
cq = _copies(N * K * 9 // 16)
wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
              for _ in range(cq - 1)]
gw = wq.global_scale.float().reshape(())
print("global_scale shapes", tuple(qw.global_scale.shape), tuple(gw.shape), "scales", qw.scales.dtype, tuple(qw.scales.shape),
      "data", tuple(qw.data.shape), qw.data.is_contiguous(), flush=True)
for seed in (0, 1, 2):
    x = _activations(M, K, torch.Generator().manual_seed(seed))
    res = []
    for rep in range(2):
        res.append(f"backend {_bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq)*1e3:.1f}")

        def d(i):
            def f():
                qq = tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                        launch_dependents=True)
                return tg.fp4_gemm(qq.dequant, wqs[i].data, wqs[i].scales, gw, ga=qq.global_scale, pdl=True)
            return f
        res.append(f"direct {_bench_rotating(d, cq)*1e3:.1f}")
    fq = lambda: tq.quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16)
    res.append(f"quantizer alone {_bench_graph(fq, 100)*1e3:.1f}")
    y1, y2 = be.linear(x, wqs[0], None, a4), d(0)()
    torch.cuda.synchronize()
    res.append(f"equal {torch.equal(y1, y2)}")
    print(f"seed {seed}: " + " | ".join(res), flush=True)
