"""Run 16b (device): the rotating harness before and after run 16's fix, same objects, same run.

old: graph of `copies` calls, replay timed at once (host graph submission inside the interval);
new: tools/bench_gemm._bench_rotating (>= 48 calls a graph, replay queued behind a GPU sleep)."""
import sys, time
sys.path.insert(0, "tools")
import torch, triton, triton.language as tl
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend


def old_rotating(make_fn, copies, reps=30):
    fns = [make_fn(i) for i in range(copies)]
    for f in fns[:2]:
        f(); f()
    torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) / copies)
    ts.sort()
    return ts[len(ts) // 2]


@triton.jit
def _empty(out):
    if tl.program_id(0) < 0:
        tl.store(out, 1)


be = TritonBackend()
a16, a4 = ActivationQuant("mse", "none"), ActivationQuant("mse", "token")
fo = torch.empty(16, dtype=torch.int32, device="cuda")
print("| N x K | M | harness | bf16 (us) | W4A16 (us) | W4A4 (us) | bf16/W4A16 | bf16/W4A4 | empty kernel (us) | copies bf16/fp4 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    qws = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    for M in (1, 16, 1024):
        x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
        for name, h in (("old", old_rotating), ("new", _bench_rotating), ("old", old_rotating), ("new", _bench_rotating)):
            tb = h(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
            t16 = h(lambda i: (lambda: be.linear(x, qws[i], None, a16)), cq)
            t4 = h(lambda i: (lambda: be.linear(x, qws[i], None, a4)), cq)
            te = h(lambda i: (lambda: _empty[(132,)](fo)), cq)
            print(f"| {N}x{K} | {M} | {name} | {tb*1e3:.1f} | {t16*1e3:.1f} | {t4*1e3:.1f} | {tb/t16:.2f} | {tb/t4:.2f} | "
                  f"{te*1e3:.2f} | {cb}/{cq} |", flush=True)
    del wb, qws, w, qw
    torch.cuda.empty_cache()
