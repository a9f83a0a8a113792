"""Host time of one ``triton`` backend linear call, against its GPU time and bf16 cuBLAS's.

CUDA graphs (vLLM's default for decode) replay kernels without the Python that launches
them. Calls outside a graph (``--enforce-eager``, batches larger than the captured sizes)
run that Python every time: shape checks, the path selection, allocations and Triton's
launch of each kernel. For small M that is far longer than the kernels, so the GPU waits
for the host. For each M this times, side by side in one run:

- ``eager``: back-to-back calls with one synchronization at the end (host-bound where the
  host's time a call exceeds the GPU's); the best of 5 rounds of ``--calls`` calls;
- ``graph``: the same call captured 20 times in a CUDA graph, replayed (the GPU's time);
- the same two for bf16 ``torch.matmul`` (cuBLAS) on the same shape;
- ``eager, Triton launch``: the eager calls with ``kernels.launch``'s fast path off, so every
  kernel goes through Triton's ``JITFunction.run``, in rounds alternating with the fast path's
  (what it saves, side by side; best of 8 rounds each).

``--profile`` adds cProfile's top functions for the calls at M = 1 and the largest M (where host
time goes).

    PYTHONPATH=. python3 tools/bench_host.py [--shape 4096x4096] [--ms 1 16 256 1024] [--out DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gemm import capture_graph  # noqa: E402


def eager_us(fn, calls: int, rounds: int = 5) -> float:
    """Best per-call wall time over ``rounds`` rounds of ``calls`` back-to-back calls (us)."""
    best = float("inf")
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / calls * 1e6)
    return best


def eager_us_launch(fn, calls: int, launch, rounds: int = 8) -> tuple[float, float]:
    """:func:`eager_us` with ``launch``'s fast path on and off in alternate rounds (the host's
    noise shared by both): the best round of each (us a call)."""
    fast = launch._ENABLED
    best = {True: float("inf"), False: float("inf")}
    try:
        for r in range(2 * rounds):
            launch._ENABLED = fast and r % 2 == 0
            best[launch._ENABLED] = min(best[launch._ENABLED], eager_us(fn, calls, rounds=1))
    finally:
        launch._ENABLED = fast
    return best[True], best[False]


def graph_us(fn, per_graph: int = 20, replays: int = 20) -> float:
    """GPU time of one call: ``per_graph`` calls captured in a CUDA graph, replayed (us)."""
    g = capture_graph([fn] * per_graph, warm=[fn])
    g.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(replays):
        g.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (replays * per_graph) * 1e6


def profile_text(fn, calls: int, top: int = 20) -> str:
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split("x")), default=(4096, 4096),
                    help="N x K of the weight")
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 16, 256, 1024])
    ap.add_argument("--calls", type=int, default=400, help="calls a round of the eager timing")
    ap.add_argument("--profile", action="store_true", help="cProfile the calls at M = 1 and the largest M")
    ap.add_argument("--out", type=Path, default=None, help="write the table here (bench_host.md)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_host.py needs a CUDA GPU (the triton backend's launch path)")

    import triton

    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.triton import TritonBackend
    from vllm_fouroversix.kernels import launch

    head = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}"
    print(head, flush=True)
    N, K = args.shape
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(N, K, generator=gen).cuda() * 0.02
    be = TritonBackend()
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    w16 = w.to(torch.bfloat16)
    modes = (("W4A16", ActivationQuant("mse", "none")), ("W4A4", ActivationQuant("mse", "token")))
    fast = launch.fast_launch_enabled()
    lines = [f"{N}x{K}, host-bound eager calls vs CUDA-graph replays (us a call); fast launch "
             f"{'on' if fast else 'off (VLLM_FOUROVERSIX_FAST_LAUNCH or this Triton)'}", "",
             "| M | bf16 eager | bf16 graph | W4A16 eager | W4A16 eager, Triton launch | W4A16 graph "
             "| W4A4 eager | W4A4 eager, Triton launch | W4A4 graph |",
             "|---|---|---|---|---|---|---|---|---|"]
    profiles = []
    for M in args.ms:
        x = torch.randn(M, K, generator=gen).to(torch.bfloat16).cuda()
        fns = [lambda: torch.matmul(x, w16.T)] + [lambda act=act: be.linear(x, qw, None, act) for _, act in modes]
        cells = []
        for i, fn in enumerate(fns):
            for _ in range(30):  # compile, allocate, warm up
                fn()
            if i:  # ours, also with every launch through Triton's JITFunction.run (alternate rounds)
                cells += list(eager_us_launch(fn, args.calls, launch))
            else:
                cells.append(eager_us(fn, args.calls))
            cells.append(graph_us(fn))
        lines.append(f"| {M} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
        print(lines[-1], flush=True)
        if args.profile and M in (1, max(args.ms)):
            for (name, _), fn in zip(modes, fns[1:]):
                profiles += [f"### cProfile, {name}, M = {M}, {args.calls} calls", "", "```",
                             profile_text(fn, args.calls), "```", ""]
    text = "\n".join([head, ""] + lines + [""] + profiles)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_host.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
