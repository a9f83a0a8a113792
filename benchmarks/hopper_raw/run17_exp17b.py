"""17a: the Gluon wgmma large-M kernel (.scratch/gl_wg.py): correctness and speed vs cuBLAS and the current path."""
import sys, time, traceback
sys.path.insert(0, ".scratch"); sys.path.insert(0, "tools"); sys.path.insert(0, ".")
import torch
import gl_wg
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels.triton_prefill import epilogue_args

torch.manual_seed(0)
dev = "cuda"
print(torch.cuda.get_device_name(), flush=True)
CFGS = [(256, 8, 3), (256, 8, 4), (128, 8, 4)]


def run(x, wq, bias, ga, gwvec, cfg):
    N = wq.data.shape[0]
    gw = wq.global_scale.reshape(-1).float().to(dev)
    if gwvec:
        gw = gw * torch.linspace(0.5, 2.0, N, device=dev)
    gw_t, ga_t, b_t, sga, flags = epilogue_args(gw, ga, bias)
    out = torch.empty(x.shape[0], N, dtype=torch.bfloat16, device=dev)
    gl_wg.wgmma_gemm(x, wq.data.view(torch.uint8), wq.scales.view(torch.uint8), gw_t, ga_t, b_t, out, sga, flags,
                     BM=cfg[0], W=cfg[1], STAGES=cfg[2])
    qs = nvfp4.decode_blocks(wq.data, wq.scales).float()
    ref = x.float() @ qs.T
    ref = ref * ((ga.reshape(-1, 1).float() if ga is not None else 1.0) * gw.reshape(1, -1))
    if bias is not None:
        ref = ref + bias.float()
    ref_b = ref.to(torch.bfloat16)
    d = (out.float() - ref).abs().max().item() / ref.abs().max().item()
    eq = (out == ref_b).float().mean().item()
    return d, eq


print("== correctness (max |out - fp32 oracle| / max|oracle|, fraction of bf16 outputs equal to the oracle's)")
bad = 0
for (N, K, M, bias_on, ga_on, gwvec) in [(4096, 4096, 1024, True, False, False), (200, 320, 300, True, True, True),
                                         (384, 256, 77, False, True, False), (1000, 1024, 513, True, False, True),
                                         (4096, 4096, 4096, False, False, False), (6144, 4096, 256, True, True, False),
                                         (512, 14336, 1000, False, True, True), (128, 192, 256, False, False, False)]:
    w = torch.randn(N, K, device=dev) * 0.02
    wq = nvfp4.quantize(w, "mse")
    x = torch.randn(M, K, device=dev).to(torch.bfloat16)
    bias = (torch.randn(N, device=dev) * 0.1).to(torch.bfloat16) if bias_on else None
    ga = torch.rand(M, device=dev) + 0.5 if ga_on else None
    for cfg in CFGS:
        try:
            d, eq = run(x, wq, bias, ga, gwvec, cfg)
            ok = d < 4e-3 and eq > 0.9
            bad += not ok
            print(f"N={N} K={K} M={M} bias={bias_on} ga={ga_on} gwvec={gwvec} cfg={cfg}: rel {d:.2e} equal {eq:.4f} {'OK' if ok else 'BAD'}", flush=True)
        except Exception as e:
            bad += 1
            print(f"cfg={cfg} FAILED {type(e).__name__}: {str(e)[:800]}", flush=True)
            traceback.print_exc()
print("bad:", bad, flush=True)

print("== speed (rotating weights, us; bf16/this)")
be = TritonBackend()
a16 = ActivationQuant("mse", "none")
for (N, K) in [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device=dev) * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    gw_t, ga_t, b_t, sga, flags = epilogue_args(qw.global_scale.reshape(-1).float(), None, None)
    for M in (256, 512, 1024, 2048, 4096):
        x = torch.randn(M, K, device=dev).to(torch.bfloat16)
        out = torch.empty(M, N, dtype=torch.bfloat16, device=dev)
        t_b = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
        t_c = _bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a16)), cq)
        res = []
        for cfg in CFGS:
            try:
                t = _bench_rotating(lambda i: (lambda: gl_wg.wgmma_gemm(x, wqs[i].data.view(torch.uint8), wqs[i].scales.view(torch.uint8),
                                                                       gw_t, ga_t, b_t, out, sga, flags, BM=cfg[0], W=cfg[1], STAGES=cfg[2])), cq)
                res.append(f"{cfg}: {t*1e3:.1f} ({t_b/t:.2f}x)")
            except Exception as e:
                res.append(f"{cfg}: FAILED {type(e).__name__}")
        print(f"{N}x{K} M={M}: bf16 {t_b*1e3:.1f} | current W4A16 {t_c*1e3:.1f} ({t_b/t_c:.2f}x) | " + " | ".join(res), flush=True)
    del wb, wqs
    torch.cuda.empty_cache()
