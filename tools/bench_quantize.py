"""Benchmark the 4/6 quantizer: ours vs the fouroversix 1.0.5 reference, side by side.

CPU mode (default): quantizes a [rows, cols] bf16 tensor with every rule using
`vllm_fouroversix.nvfp4.quantize` and the reference `quantize_to_fp4` in the
same process, alternating, and reports median times, the speedup and whether
the outputs are bit-identical (the reference with E2M1 saturation, SPEC §2).

    .venv/bin/python tools/bench_quantize.py [--rows 4096 --cols 4096 --repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from make_reference_vectors import load_reference  # noqa: E402

from vllm_fouroversix import nvfp4  # noqa: E402

RULES = ("mse", "mae", "abs_max", "static_6", "static_4")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_cpu(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.cols).bfloat16()
    with tempfile.TemporaryDirectory() as tmp:
        ref, RSR = load_reference(Path(tmp))
        raw = ref.fake_quantize_to_e2m1
        ref.fake_quantize_to_e2m1 = lambda y, *, round_style=ref.RoundStyle.nearest: raw(
            y, round_style=round_style
        ).clamp(-6, 6)
        lines = [
            f"| rule | ours (ms) | reference (ms) | speedup | bit-exact |",
            f"|---|---|---|---|---|",
        ]
        for rule in args.rules:
            ours = lambda: nvfp4.quantize(x, rule)  # noqa: E731
            theirs = lambda: ref.quantize_to_fp4(  # noqa: E731
                x, scale_rule=RSR(rule), use_blackwell_scale_layout=False
            )
            a, b = ours(), theirs()  # warm-up, and the outputs to compare
            exact = torch.equal(a.data, b[0]) and torch.equal(
                a.scales.view(torch.uint8).reshape(-1), b[1].view(torch.uint8).reshape(-1)
            )
            t_ours, t_ref = [], []
            for _ in range(args.repeats):  # interleaved so both see the same machine load
                t_ours.append(_median_time(ours, 1))
                t_ref.append(_median_time(theirs, 1))
            mo, mr = statistics.median(t_ours), statistics.median(t_ref)
            lines.append(f"| {rule} | {mo * 1e3:.0f} | {mr * 1e3:.0f} | {mr / mo:.2f}x | {'yes' if exact else 'NO'} |")
            print(lines[-1], flush=True)
    head = (
        f"[{args.rows}, {args.cols}] bf16 on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, median of {args.repeats}"
    )
    return head + "\n\n" + "\n".join(lines)


def bench_cuda(args: argparse.Namespace) -> str:
    """GPU mode: the Triton quantizer vs a device-to-device copy, timed in the same run.

    Bandwidth counts bytes read (the bf16 input) plus bytes written (packed
    codes, E4M3 scales, per-row fp32 global scales); the copy counts its read
    and write. Reports the quantizer's share of the copy's bandwidth.
    """
    import triton
    from bench_gemm import _bench_graph

    import vllm_fouroversix.kernels.triton_quantize as tq
    from vllm_fouroversix.kernels.triton_quantize import quantize_triton

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.cols, generator=gen).bfloat16().cuda()
    dst = torch.empty_like(x)
    t_copy = _bench_graph(lambda: dst.copy_(x), 200)
    copy_bw = 2 * x.numel() * x.element_size() / (t_copy * 1e-3)
    lines = [
        f"device-to-device copy of the input: {t_copy * 1e3:.1f} us, {copy_bw / 1e12:.2f} TB/s (read + write)",
        "",
        "| rule | mode | Triton quantizer (us) | TB/s | % of copy bandwidth | eager do_bench (us) | bit-exact vs nvfp4.quantize (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    R, K = x.shape

    refs = {}
    sweep = [(b, n) for b in args.bpt for n in args.maxnreg]
    modes = (True, False) if args.tensor else (True,)
    for rule, per_row, (bpt, nreg) in [(r, p, v) for r in args.rules for p in modes for v in sweep]:
        tq._BLOCKS_PER_THREAD = bpt
        tq._EXTRA_LAUNCH = {"maxnreg": nreg} if nreg else {}
        fn = lambda: quantize_triton(x, rule, per_row=per_row)  # noqa: E731
        q = fn()
        if (rule, per_row) not in refs:
            refs[rule, per_row] = nvfp4.quantize(x.cpu(), rule, per_row=per_row)
        r = refs[rule, per_row]
        exact = torch.equal(q.data.cpu(), r.data) and torch.equal(
            q.scales.view(torch.uint8).cpu(), r.scales.view(torch.uint8)
        ) and torch.equal(q.global_scale.cpu().reshape(-1), r.global_scale.float().reshape(-1))
        t = _bench_graph(fn, 200)
        t_eager = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
        nbytes = R * K * 2 + R * K // 2 + R * K // 16 + (R * 4 if per_row else 4)
        bw = nbytes / (t * 1e-3)
        mode = "token" if per_row else "tensor (+ amax pass)"
        if len(sweep) > 1:
            mode += f" bpt={bpt} maxnreg={nreg or '-'}"
        lines.append(
            f"| {rule} | {mode} | {t * 1e3:.1f} | {bw / 1e12:.2f} | {100 * bw / copy_bw:.0f}% | {t_eager * 1e3:.1f} | {'yes' if exact else 'NO'} |"
        )
        print(lines[-1], flush=True)
    tq._BLOCKS_PER_THREAD = 1
    tq._EXTRA_LAUNCH = {}
    if args.deq:
        # What the W4A4 GEMM path runs: decoded q * s in bf16 (2 bytes a value) instead of packed codes.
        lines += ["", "W4A4 operand (write_packed=False, dequant bf16, per token):", "",
                  "| rule | us | TB/s (read + bf16 write + fp32 scales) | % of copy bandwidth |", "|---|---|---|---|"]
        for rule in args.rules:
            fn = lambda: quantize_triton(x, rule, per_row=True, write_packed=False,  # noqa: E731
                                         dequant_dtype=torch.bfloat16)
            t = _bench_graph(fn, 200)
            bw = (R * K * 4 + R * 4) / (t * 1e-3)
            lines.append(f"| {rule} | {t * 1e3:.1f} | {bw / 1e12:.2f} | {100 * bw / copy_bw:.0f}% |")
            print(lines[-1], flush=True)
    import triton as _t

    head = (
        f"[{args.rows}, {args.cols}] bf16 on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"triton {_t.__version__}, median of CUDA-graph replays (L2 flushed before each)"
    )
    return head + "\n\n" + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for both (default: torch's)")
    ap.add_argument("--bpt", type=int, nargs="+", default=[1],
                    help="cuda: 16-element blocks a thread handles (sweep; sets num_warps)")
    ap.add_argument("--deq", action="store_true", help="cuda: also time the W4A4 operand output (bf16 q * s)")
    ap.add_argument("--maxnreg", type=int, nargs="+", default=[0], help="cuda: register caps to sweep (0: none)")
    ap.add_argument("--tensor", action=argparse.BooleanOptionalAction, default=True,
                    help="cuda: also time per-tensor mode (with its amax pass)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: time the Triton quantizer against a device copy (GPU mode)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(bench_cuda(args) if args.device == "cuda" else bench_cpu(args))


if __name__ == "__main__":
    main()
