"""17e: the committed gluon_wgmma (integer scale multipliers) vs bf16 cuBLAS and the decode + cuBLAS path."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg

dev = torch.device("cuda")
be = TritonBackend()
WG, DQ = tg.GemmConfig(kind="wgmma"), tg.GemmConfig(kind="dq")
for (N, K) in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device=dev) * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb16 = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [wb16] + [wb16.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    gf = qw.extra.get("gw_float")
    for M in (256, 1024):
        x = torch.randn(M, K, device=dev).to(torch.bfloat16)
        t_b = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        r = {}
        for name, cfg in (("dq", DQ), ("wgmma", WG)):
            r[name] = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, wqs[i].data, wqs[i].scales, wqs[i].global_scale,
                                                                      config=cfg, gw_float=gf)), cq)
        print(f"{N}x{K} M={M}: bf16 {t_b*1e3:.1f} | dq {r['dq']*1e3:.1f} ({t_b/r['dq']:.2f}x) | wgmma {r['wgmma']*1e3:.1f} "
              f"({t_b/r['wgmma']:.2f}x) | selected {tg.select_config(M, N, K, dev).kind}", flush=True)
    del wb, wqs
    torch.cuda.empty_cache()
