"""Run 22b: the decode with one mask-multiply-mask a bf16x2 pair (all GEMM paths) and the block
scale folded into the decode's fma (Gluon mma for M = 2..8, Triton tc tiles, as the wgmma kernel
already did) against HEAD's code (.scratch/vfo_old: the package at HEAD, renamed), through the
backends as bench_gemm times them (rotating weights). Outputs asserted bitwise equal."""
import sys
sys.path.insert(0, "tools")
sys.path.insert(0, ".scratch/vfo_old")
import torch
import triton
from bench_gemm import _bench_rotating, _copies, _activations
from vllm_fouroversix import nvfp4
import vllm_fouroversix.backends.base as nb
import vllm_fouroversix.backends.triton as nt
import vfo_old.backends.base as ob
import vfo_old.backends.triton as ot
from vllm_fouroversix.kernels.triton_gemm import select_config

gen = torch.Generator().manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
MODS = {"old": (ob, ot.TritonBackend()), "new": (nb, nt.TritonBackend())}
for (N, K) in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
    sets = {}
    for name, (base, be) in MODS.items():
        qw = be.prepare_weight(base.QuantizedWeight.from_nvfp4(wq))
        wqs = [qw] + [base.QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                           extra=dict(qw.extra)) for _ in range(cq - 1)]
        sets[name] = (be, wqs, base.ActivationQuant("mse", "none"), base.ActivationQuant("mse", "token"))
    for M in (1, 2, 4, 8, 16, 1024):
        x = _activations(M, K, gen)
        for mode in (2, 3):
            o = sets["old"][0].linear(x, sets["old"][1][0], None, sets["old"][mode])
            n = sets["new"][0].linear(x, sets["new"][1][0], None, sets["new"][mode])
            torch.cuda.synchronize()
            assert torch.equal(o, n), (N, K, M, mode, (o.float() - n.float()).abs().max().item())
        t = {"bf16": [_bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)]}
        for rnd in range(2):
            for name in (("old", "new") if rnd == 0 else ("new", "old")):
                be, wqs, a16, a4 = sets[name]
                t.setdefault(name + " W4A16", []).append(_bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a16)), cq))
                t.setdefault(name + " W4A4", []).append(_bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq))
        path = select_config(M, N, K, torch.device("cuda"), cublas_prefill=False).short()
        bf = t["bf16"][0]
        print(f"{N}x{K} M={M} [{path}] bf16 {bf*1e3:.1f} | " + " | ".join(
            f"{k} {'/'.join(f'{v*1e3:.1f}' for v in vs)} ({bf/min(vs):.2f}x)" for k, vs in t.items() if k != "bf16"), flush=True)
    del wb, sets, w
