"""17h: the split plan (whole waves of 256-row tiles + one wave of 128-row tiles) vs one launch and decode + cuBLAS."""
import sys
sys.path.insert(0, "tools"); sys.path.insert(0, ".")
import torch
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gw

dev = torch.device("cuda")
be = TritonBackend()
WG, DQ = tg.GemmConfig(kind="wgmma"), tg.GemmConfig(kind="dq")
# correctness of the split plan (per-channel gw, bias, W4A4-style ga)
for (N, K, M) in [(6144, 1024, 1024), (5120, 512, 1000), (14336, 256, 1024)]:
    w = torch.randn(N, K) * 0.02
    wq = nvfp4.quantize(w, "mse")
    gwv = wq.global_scale.reshape(1) * torch.linspace(0.5, 2, N)
    x = torch.randn(M, K).to(torch.bfloat16)
    bias = torch.randn(N).to(torch.bfloat16)
    ga = torch.rand(M) + 0.5
    qs = nvfp4.decode_blocks(wq.data, wq.scales).float()
    ref = ((x.float() @ qs.T) * (ga[:, None] * gwv[None, :])) + bias.float()
    out = tg.fp4_gemm(x.cuda(), wq.data.cuda(), wq.scales.cuda(), gwv.cuda(), ga=ga.cuda(), bias=bias.cuda(), config=WG).float().cpu()
    d = ((out - ref).abs().max() / ref.abs().max()).item()
    print(f"check {N}x{K} M={M} plan {gw.plan(M, N, 132)}: rel {d:.2e} {'OK' if d < 4e-3 else 'BAD'}", flush=True)
for (N, K) in [(6144, 4096), (14336, 4096), (4096, 4096)]:
    w = torch.randn(N, K, device=dev) * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb16 = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [wb16] + [wb16.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    gf = qw.extra.get("gw_float")
    for M in (768, 1024, 1536):
        x = torch.randn(M, K, device=dev).to(torch.bfloat16)
        t_b = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        r = {}
        for name, cfg, split in (("dq", DQ, True), ("one", WG, False), ("plan", WG, True)):
            gw._SPLIT = split
            r[name] = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, wqs[i].data, wqs[i].scales, wqs[i].global_scale,
                                                                      config=cfg, gw_float=gf)), cq)
        gw._SPLIT = True
        print(f"{N}x{K} M={M}: bf16 {t_b*1e3:.1f} | dq {r['dq']*1e3:.1f} ({t_b/r['dq']:.2f}x) | wgmma one launch {r['one']*1e3:.1f} "
              f"({t_b/r['one']:.2f}x) | plan {gw.plan(M, N, 132)} {r['plan']*1e3:.1f} ({t_b/r['plan']:.2f}x) | selected {tg.select_config(M, N, K, dev).kind}", flush=True)
    del wb, wqs
    torch.cuda.empty_cache()
