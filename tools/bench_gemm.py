"""Benchmark (and check) the Hopper Triton NVFP4 GEMMs against bf16 cuBLAS and the reference backend.

For every Llama-3-8B linear shape (N, K) and M, times in one run, side by side,
with ``triton.testing.do_bench`` (median; the L2 cache is flushed before every
repetition, so weights come from HBM as in a real forward pass):

- ``bf16``: ``torch.matmul(x, W_bf16.T)`` (cuBLAS), the baseline;
- ``W4A16``: the triton backend, bf16 activations, packed FP4 weights;
- ``W4A4``: the triton backend, 4/6 per-token activation quantization + GEMM;
- ``ref``: the reference backend (``nvfp4.reference_linear``, W4A4 per token).

bf16, W4A16 and W4A4 are each timed twice, in the mirrored order bf16, W4A16, W4A4,
W4A4, W4A16, bf16, and the mean of the two runs is reported (the H100's clock under
its power cap drifts with the work before; see ``_mirrored``). ``--rotate`` adds the
same timings with rotating weight copies in CUDA graphs (``_bench_rotating``), the
table the Hopper targets are read from.

``--check`` first verifies on the GPU: the quantizer bit for bit against the
CPU oracle ``nvfp4.quantize`` (all rules, per-token and per-tensor), and every
GEMM path against ``nvfp4.reference_linear`` (CPU, fp32). ``--sweep`` also
times candidate tile configurations per shape and M (for tuning
``select_config``).

    PYTHONPATH=. python3 tools/bench_gemm.py --check [--sweep] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
MS = [1, 2, 4, 8, 16, 64, 256, 512, 1024, 4096]
RULES = ("mse", "mae", "abs_max", "static_6", "static_4")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _activations(M: int, K: int, gen: torch.Generator, device="cuda") -> torch.Tensor:
    # Heavy-ish tails and a few outlier channels, like LLM activations.
    x = torch.randn(M, K, generator=gen, device="cpu")
    x = x * torch.exp(0.5 * torch.randn(1, K, generator=gen))
    return x.to(torch.bfloat16).to(device)


def check_quantizer(rows: int, K: int, gen: torch.Generator) -> list[str]:
    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.kernels.triton_quantize import quantize_triton

    lines = ["| rule | mode | rows x K | blocks | code bytes differing | scales differing | global scales equal | decoded equal |",
             "|---|---|---|---|---|---|---|---|"]
    for rule in RULES:
        for per_row in (True, False):
            x = _activations(rows, K, gen)
            x[0, :64] = 0  # a zero block
            if per_row:
                x[1] = 0  # a zero row
            q = quantize_triton(x, rule, per_row=per_row, dequant_dtype=torch.bfloat16)
            torch.cuda.synchronize()
            r = nvfp4.quantize(x.cpu(), rule, per_row=per_row)
            d_bytes = int((q.data.cpu() != r.data).sum())
            d_sc = int((q.scales.view(torch.uint8).cpu() != r.scales.view(torch.uint8)).sum())
            g_eq = torch.equal(q.global_scale.cpu().reshape(-1), r.global_scale.float().reshape(-1))
            deq_eq = torch.equal(q.dequant.float().cpu(), nvfp4._decode_blocks(r))
            lines.append(f"| {rule} | {'token' if per_row else 'tensor'} | {rows}x{K} | {rows * K // 16} | "
                         f"{d_bytes} | {d_sc} | {g_eq} | {deq_eq} |")
            _log(lines[-1])
    return lines


def check_gemm(gen: torch.Generator) -> list[str]:
    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.triton import TritonBackend
    from vllm_fouroversix.kernels import gluon_wgmma
    from vllm_fouroversix.kernels.triton_gemm import GemmConfig, fp4_gemm, select_config

    be = TritonBackend()
    lines = ["| N x K | M | mode | path | max abs err / max abs ref | rel Frobenius err | bf16 ulps > 1 | written |",
             "|---|---|---|---|---|---|---|---|"]
    for (N, K) in [(4096, 4096), (1024, 14336), (384, 272)]:
        w = torch.randn(N, K, generator=gen)
        wq = nvfp4.quantize(w, "mse")
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
            nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
        bias = torch.randn(N, generator=gen).to(torch.bfloat16)
        for M in (1, 3, 16, 48, 200, 1024):
            x = _activations(M, K, gen)
            for mode in ("none", "token", "tensor"):
                act = ActivationQuant("mse", mode)
                out = be.linear(x, qw, bias.cuda(), act).float().cpu()
                ref = nvfp4.reference_linear(x.cpu(), wq, bias, per_row=mode == "token",
                                             act_quant=mode != "none").float()
                err = (out - ref).abs()
                rel = (err.norm() / ref.norm()).item()
                ulp = (err > ref.abs() * 2 ** -7 + 1e-6).sum().item()
                cfg = select_config(M, N, K, torch.device("cuda"),
                                    cublas_prefill=mode == "none" and qw.extra.get("gw_float") is not None)
                lines.append(f"| {N}x{K} | {M} | {mode} | {cfg.short()} | {err.max().item() / ref.abs().max().item():.2e} "
                             f"| {rel:.2e} | {ulp} | {bool(torch.isfinite(out).all())} |")
                _log(lines[-1])
            # every explicit path on this shape (W4A16, bias, scalar gw)
            for cfg in (GemmConfig("gemv", BM=1, BN=16, BK=256), GemmConfig("gemv2", BM=1 if M == 1 else 4, BN=32, BK=512),
                        GemmConfig("tc", BM=16, BN=64, BK=128),
                        GemmConfig("tc", BM=128, BN=128, BK=64, num_warps=8), GemmConfig("dq"), GemmConfig("wgmma")):
                if cfg.kind in ("gemv", "gemv2") and M > 4:
                    continue
                if cfg.kind == "wgmma" and (M < 48 or K % 64 or not gluon_wgmma.available(torch.device("cuda"))):
                    continue
                out = fp4_gemm(x, qw.data, qw.scales, qw.global_scale, bias=bias.cuda(), config=cfg).float().cpu()
                ref = nvfp4.reference_linear(x.cpu(), wq, bias, act_quant=False).float()
                rel = ((out - ref).norm() / ref.norm()).item()
                lines.append(f"| {N}x{K} | {M} | none | {cfg.short()} (forced) | - | {rel:.2e} | - | - |")
                _log(lines[-1])
    return lines


def _bench(fn, rep_ms: int) -> float:
    import triton

    return triton.testing.do_bench(fn, warmup=max(5, rep_ms // 4), rep=rep_ms, return_mode="median")


def capture_graph(calls: list, warm: list | None = None) -> torch.cuda.CUDAGraph:
    """A CUDA graph of ``calls`` in order, after one run of each of ``warm`` (default: ``calls``)
    on a side stream, as capturing requires (lazy set-up and allocations happen outside it)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in calls if warm is None else warm:
            f()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in calls:
            f()
    return g


def _bench_rotating(make_fn, copies: int, reps: int = 30, min_calls: int = 48) -> float:
    """GPU time of one call, from a CUDA graph of calls on ``copies`` distinct weight copies.

    The copies together exceed the 50 MB L2, so every call reads its weight
    from HBM (as each layer of a real forward pass does) without the dirty-L2
    flush of do_bench; the graph removes host launch costs (as vLLM's decode
    graphs do). The graph cycles through the copies until it holds at least
    ``min_calls`` calls, and each timed replay is queued behind a GPU sleep, so
    that the host's ~15 us graph submission is not inside the timed interval
    (before run 16 it was, adding ~15 us / copies to every call: more to bf16,
    which has fewer copies, than to FP4). Median over ``reps`` replays, divided
    by the number of calls.
    """
    fns = [make_fn(i) for i in range(copies)]
    calls = [fns[i % copies] for i in range(copies * -(-min_calls // copies))]
    for f in fns[:2]:
        f()
        f()
    torch.cuda.synchronize()
    g = capture_graph(calls, warm=fns)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)  # ~0.5 ms of GPU time: the host queues the replay meanwhile
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / len(calls))
    times.sort()
    return times[len(times) // 2]


def _mirrored(measures: list) -> tuple[list[float], tuple[list[float], list[float]]]:
    """Run each measurement twice, in the order A B C C B A; return the mean of each one's two
    runs and the runs (first, second).

    Under a sustained load the H100 runs at its power cap and its clock follows the work and the
    temperature before (run 23c: SM clock 1485-1980 MHz, a GEMM timed last in a sequence up to 4%
    slower than timed first). One fixed order gives the last contender the hottest GPU; the
    mirrored order gives every contender the same mean position.
    """
    first = [m() for m in measures]
    second = [m() for m in reversed(measures)][::-1]
    return [(a + b) / 2 for a, b in zip(first, second)], (first, second)


def _copies(nbytes: int) -> int:
    return max(2, min(24, -(-160 * 2**20 // nbytes)))


def _bench_graph(fn, rep_ms: int) -> float:
    """GPU time of ``fn`` captured in a CUDA graph (as vLLM runs decode), L2 flushed before each replay.

    Without the graph, a few-microsecond kernel is timed together with its
    Python launch cost whenever that exceeds the flush that do_bench puts
    before it; the graph removes the host from the measurement for every
    contender alike.
    """
    fn()
    fn()  # compile, allocate workspaces outside the capture
    torch.cuda.synchronize()
    g = capture_graph([fn])
    g.replay()
    torch.cuda.synchronize()
    return _bench(g.replay, rep_ms)


def bench(args: argparse.Namespace, gen: torch.Generator) -> tuple[list[str], list[dict]]:
    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.reference import ReferenceBackend
    from vllm_fouroversix.backends.triton import TritonBackend
    from vllm_fouroversix.kernels.triton_gemm import GemmConfig, fp4_gemm, select_config

    be, ref_be = TritonBackend(), ReferenceBackend()
    a16, a4 = ActivationQuant("mse", "none"), ActivationQuant("mse", "token")
    lines = ["| N x K | M | bf16 cuBLAS (us) | W4A16 (us) | W4A4 (us) | reference (us) | bf16/W4A16 | bf16/W4A4 | ref/W4A4 | path |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rot = ["| N x K | M | bf16 cuBLAS (us) | W4A16 (us) | W4A4 (us) | bf16/W4A16 | bf16/W4A4 | copies bf16/fp4 "
           "| runs (us: first, second) bf16 / W4A16 / W4A4 |",
           "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for (N, K) in args.shapes:
        w = torch.randn(N, K, device="cuda") * 0.02
        wq = nvfp4.quantize(w, "mse")
        w_bf16 = w.to(torch.bfloat16)
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
        bias = None
        for M in args.ms:
            x = _activations(M, K, gen)
            (t_bf16, t_a16, t_a4), _ = _mirrored([lambda: _bench_graph(lambda: torch.matmul(x, w_bf16.T), args.rep),
                                                  lambda: _bench_graph(lambda: be.linear(x, qw, bias, a16), args.rep),
                                                  lambda: _bench_graph(lambda: be.linear(x, qw, bias, a4), args.rep)])
            t_ref = _bench(lambda: ref_be.linear(x, qw, bias, a4), min(args.rep, 50)) if args.ref else float("nan")
            cfg = select_config(M, N, K, torch.device("cuda"), cublas_prefill=qw.extra.get("gw_float") is not None)
            cfg4 = select_config(M, N, K, torch.device("cuda"), cublas_prefill=False)
            path = cfg.short() if cfg4 == cfg else f"{cfg.short()} / W4A4 {cfg4.short()}"
            row = dict(N=N, K=K, M=M, bf16=t_bf16, w4a16=t_a16, w4a4=t_a4, ref=t_ref, path=path)
            if args.rotate:
                cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
                wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
                wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                              extra=dict(qw.extra)) for _ in range(cq - 1)]
                (r_bf16, r_a16, r_a4), runs = _mirrored(
                    [lambda: _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
                     lambda: _bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], bias, a16)), cq),
                     lambda: _bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], bias, a4)), cq)])
                del wb, wqs
                row.update(rot_bf16=r_bf16, rot_w4a16=r_a16, rot_w4a4=r_a4, rot_runs=runs)
                rot.append(f"| {N}x{K} | {M} | {r_bf16 * 1e3:.1f} | {r_a16 * 1e3:.1f} | {r_a4 * 1e3:.1f} | "
                           f"{r_bf16 / r_a16:.2f} | {r_bf16 / r_a4:.2f} | {cb}/{cq} | "
                           + " / ".join(f"{a * 1e3:.1f}, {b * 1e3:.1f}" for a, b in zip(*runs)) + " |")
                _log(rot[-1])
            rows.append(row)
            lines.append(f"| {N}x{K} | {M} | {t_bf16 * 1e3:.1f} | {t_a16 * 1e3:.1f} | {t_a4 * 1e3:.1f} | "
                         f"{t_ref * 1e3:.0f} | {t_bf16 / t_a16:.2f} | {t_bf16 / t_a4:.2f} | {t_ref / t_a4:.1f} | {path} |")
            _log(lines[-1])
            if args.sweep:
                for cfg in _sweep_configs(M):
                    try:
                        t = _bench_graph(lambda: fp4_gemm(x, qw.data, qw.scales, qw.global_scale, config=cfg,
                                                          gw_float=qw.extra.get("gw_float")), args.rep)
                    except Exception as e:  # noqa: BLE001 - a config that does not compile is reported
                        _log(f"  sweep {cfg.short()}: FAILED {type(e).__name__}: {str(e)[:200]}")
                        continue
                    rows.append(dict(N=N, K=K, M=M, sweep=cfg.short(), t=t, bf16=t_bf16))
                    _log(f"  sweep {N}x{K} M={M} {cfg.short():32s} {t * 1e3:8.1f} us  bf16/this {t_bf16 / t:.2f}")
        del w, w_bf16, qw, wq
        torch.cuda.empty_cache()
    if args.rotate:
        lines += ["", "Rotating weight copies (no L2 flush), CUDA graph cycling through the copies (>= 48 calls), replay queued "
                  "behind a GPU sleep, median of 30 replays / calls; each contender timed twice in the order bf16, W4A16, "
                  "W4A4, W4A4, W4A16, bf16 and the mean of its two runs shown:",
                  ""] + rot
    return lines, rows


def _sweep_configs(M: int):
    from vllm_fouroversix.kernels.triton_gemm import GemmConfig as C

    if M <= 4:
        return [C("gemv", BM=1 if M == 1 else 4, BN=bn, BK=bk, num_warps=nw, num_stages=st)
                for bn, bk, nw, st in ((16, 256, 4, 4), (32, 512, 8, 4), (8, 512, 2, 4), (16, 512, 4, 3),
                                       (32, 256, 4, 4))] + [
                C("tc", BM=16, BN=bn, BK=bk, num_warps=nw, num_stages=st)
                for bn, bk, nw, st in ((64, 128, 4, 4), (128, 128, 4, 3), (32, 256, 4, 4))]
    if M <= 64:
        bm = 16 if M <= 16 else 64
        return [C("tc", BM=bm, BN=bn, BK=bk, num_warps=nw, num_stages=st)
                for bn, bk, nw, st in ((64, 128, 4, 4), (128, 128, 4, 3), (64, 64, 4, 5), (64, 256, 4, 3),
                                       (32, 256, 4, 4))]
    return [C("tc", BM=bm, BN=bn, BK=bk, num_warps=nw, num_stages=st)
            for bm, bn, bk, nw, st in ((128, 128, 64, 8, 4), (128, 64, 128, 4, 4), (256, 128, 64, 8, 3))] + [C("dq")]


def decode_sweep(args: argparse.Namespace) -> list[str]:
    """Time candidate configs of the small-M kernels (W4A16, rotating weights) next to bf16,
    checking each against an fp32 product of the decoded weight; and W4A4 prefill tiles."""
    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.triton import TritonBackend
    from vllm_fouroversix.kernels import triton_gemm as tg
    from vllm_fouroversix.kernels.triton_gemm import GemmConfig as C, dequantize_weight, fp4_gemm

    gen = torch.Generator().manual_seed(5)
    lines = ["| N x K | M | config | us | bf16 us | speed-up | rel err |", "|---|---|---|---|---|---|---|"]

    def cands(M):
        out = []
        if M <= 4 and "gemv2" in args.kinds:
            for bn, bk, nw, sk in ((32, 512, 4, None), (32, 512, 4, 2), (32, 512, 4, 4), (32, 512, 4, 8),
                                   (64, 512, 4, None), (16, 512, 4, None), (32, 1024, 4, None), (64, 256, 4, None),
                                   (64, 512, 8, None), (128, 256, 8, None)):
                out.append(C("gemv2", BM=M, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk or 1))
            out.append(C("gemv", BM=M, BN=32, BK=512, num_warps=4, num_stages=3))
        if "gemv2" in args.kinds and len(args.kinds) == 1:
            return out
        if M <= 4:
            for bn, bk, nw in ((32, 1024, 4), (32, 512, 4), (64, 512, 8), (16, 1024, 4)):
                for sk in (None, 4):
                    out.append(C("gemv", BM=M, BN=bn, BK=bk, num_warps=nw, num_stages=1, split_k=sk or 1))
        for kind, bn, bk, nw, st in (("tc", 64, 256, 4, 3), ("tc", 32, 256, 4, 3), ("tc", 64, 128, 4, 3),
                                     ("tc", 128, 256, 4, 2), ("tcT", 64, 256, 4, 3), ("tcT", 128, 128, 4, 3)):
            for sk in (None, 4, 8):
                out.append(C(kind, BM=16, BN=bn, BK=bk, num_warps=nw, num_stages=st, split_k=sk or 1))
        out.append(C("tc", BM=16, BN=64, BK=256, num_warps=4, num_stages=3, prefetch=False))
        return out

    for (N, K) in args.shapes:
        w = torch.randn(N, K, device="cuda") * 0.02
        wq = nvfp4.quantize(w, "mse")
        wdec = dequantize_weight(wq.data, wq.scales, torch.float32) * wq.global_scale.float()
        w_bf16 = w.to(torch.bfloat16)
        cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
        wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
        ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
        gw = wq.global_scale.float().reshape(())
        for M in args.ms:
            x = _activations(M, K, gen)
            ref = x.float() @ wdec.T
            t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
            for cfg in cands(M):
                try:
                    out = fp4_gemm(x, wq.data, wq.scales, gw, config=cfg).float()
                    err = ((out - ref).norm() / ref.norm()).item()
                    t = _bench_rotating(lambda i: (lambda: fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)
                except Exception as e:  # noqa: BLE001
                    _log(f"  {N}x{K} M={M} {cfg.short()}: FAILED {type(e).__name__}: {str(e)[:300]}")
                    continue
                lines.append(f"| {N}x{K} | {M} | {cfg.short()} | {t * 1e3:.2f} | {t_bf * 1e3:.2f} | "
                             f"{t_bf / t:.2f}x | {err:.1e} |")
                _log(lines[-1])
        del wb, ds
        torch.cuda.empty_cache()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="correctness checks first")
    ap.add_argument("--sweep", action="store_true", help="also time candidate tile configs")
    ap.add_argument("--rotate", action="store_true", help="also time with rotating weight copies (no flush)")
    ap.add_argument("--no-ref", dest="ref", action="store_false", help="skip timing the reference backend")
    ap.add_argument("--rep", type=int, default=100, help="do_bench repetition time (ms)")
    ap.add_argument("--ms", type=int, nargs="+", default=MS)
    ap.add_argument("--shapes", type=lambda s: tuple(int(v) for v in s.split("x")), nargs="+", default=SHAPES,
                    help="N x K, e.g. 4096x4096")
    ap.add_argument("--decode-sweep", action="store_true", help="only sweep small-M configs (W4A16)")
    ap.add_argument("--kinds", nargs="+", default=["gemv", "gemv2", "tc", "tcT"],
                    help="decode sweep: kernel kinds to try (only 'gemv2': its configs and the old gemv)")
    ap.add_argument("--out", type=Path, default=None, help="write tables and JSON here")
    args = ap.parse_args()

    import triton

    dev = torch.cuda.get_device_name()
    head = (f"{dev}, torch {torch.__version__}, triton {triton.__version__}, "
            f"CPU torch capability {torch.backends.cpu.get_cpu_capability()}")
    _log(head)
    gen = torch.Generator().manual_seed(0)
    out = [head, ""]
    t0 = time.time()
    if args.decode_sweep:
        lines = decode_sweep(args)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "decode_sweep.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")
        return
    if args.check:
        for title, fn in (("Quantizer vs nvfp4.quantize (CPU)", lambda: check_quantizer(2048, 4096, gen)),
                          ("GEMM vs nvfp4.reference_linear (CPU fp32)", lambda: check_gemm(gen))):
            try:
                out += [f"## {title}", ""] + fn() + [""]
            except Exception as e:  # noqa: BLE001 - keep going to the timings, report the failure
                import traceback

                traceback.print_exc()
                out += [f"## {title}", "", f"FAILED: {type(e).__name__}: {e}", ""]
            _log(f"[{title}: {time.time() - t0:.0f}s]")
    lines, rows = bench(args, gen)
    out += ["## Times (median, us)", ""] + lines
    _log(f"[bench {time.time() - t0:.0f}s]")
    text = "\n".join(out)
    print("\n" + "\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gemm.md").write_text(text + "\n")
        (args.out / "bench_gemm.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
