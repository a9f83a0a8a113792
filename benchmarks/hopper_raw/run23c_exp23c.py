"""Run 23c: bench_gemm's W4A4 excess at 4096x14336 M = 1024 (216-229 us there, 202-208 us in the
experiment scripts; runs 21f/21g/22d). One process: the rotating W4A4 timing on a fresh GPU, then
bench_gemm's exact sequence for that shape (non-rotating graph timings, rotating bf16, W4A16, W4A4),
then W4A4 again at once and after the GPU idled 3 s; clocks, power and throttle reasons around each."""
import subprocess
import sys
import time
sys.path.insert(0, "tools")
import torch
from bench_gemm import _bench_rotating, _bench_graph, _copies, _activations
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend


def smi(tag):
    q = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active"
    r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True)
    print(f"  [{tag}] {r.stdout.strip()}", flush=True)


print(torch.cuda.get_device_name(), flush=True)
be, a16, a4 = TritonBackend(), ActivationQuant("mse", "none"), ActivationQuant("mse", "token")
for (N, K) in [(4096, 14336), (4096, 4096)]:
    M = 1024
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    x = _activations(M, K, gen)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    r4 = lambda: _bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a4)), cq) * 1e3
    r16 = lambda: _bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, a16)), cq) * 1e3
    rbf = lambda: _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb) * 1e3
    print(f"{N}x{K} M={M}", flush=True)
    smi("start")
    print(f"  A fresh: rot a4 {r4():.1f} {r4():.1f}  rot a16 {r16():.1f}  rot bf16 {rbf():.1f}", flush=True)
    smi("after A")
    t0 = time.time()
    g = [_bench_graph(lambda: torch.matmul(x, w_bf16.T), 25), _bench_graph(lambda: be.linear(x, qw, None, a16), 25),
         _bench_graph(lambda: be.linear(x, qw, None, a4), 25)]
    smi("after bench's graph timings")
    b = [rbf(), r16(), r4()]
    print(f"  B bench order ({time.time() - t0:.1f} s): graph {g[0]*1e3:.1f} / {g[1]*1e3:.1f} / {g[2]*1e3:.1f}; "
          f"rot bf16 {b[0]:.1f} a16 {b[1]:.1f} a4 {b[2]:.1f}  (a4/bf16 {b[2]/b[0]:.3f})", flush=True)
    smi("after B")
    print(f"  C at once: rot a4 {r4():.1f} a16 {r16():.1f} bf16 {rbf():.1f}", flush=True)
    time.sleep(3)
    smi("after 3 s idle")
    print(f"  D after 3 s idle: rot a4 {r4():.1f} bf16 {rbf():.1f} a4 {r4():.1f}", flush=True)
    del wb, wqs, w, w_bf16, qw, wq
    torch.cuda.empty_cache()
