"""Benchmark fouroversix-convert against a plain load-and-save copy, in the same run.

For the same checkpoint, alternating, ``--repeats`` times each, median reported:

- ``copy (safetensors)``: ``safetensors.torch.load_file`` + ``save_file`` of every shard
  (pure I/O: the floor any converter pays);
- ``copy (transformers)``: ``AutoModelForCausalLM.from_pretrained`` + ``save_pretrained``
  (what a user's "load and re-save" costs);
- ``convert``: ``convert_checkpoint(...)`` with the default options (weight rule mse,
  per-token activations), on ``--device`` (on CPU: the C quantizer);
- with ``--also-torch``: the same CPU conversion with the C quantizer turned off
  (``nvfp4.quantize`` in PyTorch, what runs where no C compiler is found).

The target of issue #4 is convert <= 3x copy. Checkpoints:

- default: the real SmolLM2-135M-Instruct bf16 directory (``tools/assets.py``);
- ``--model-dir DIR``: any local model directory;
- ``--random-model``: a randomly initialised model with SmolLM2-135M's config, built on
  the spot (for machines that cannot receive the 269 MB real model, e.g. the GPU box).

    .venv/bin/python tools/bench_convert.py                       # CPU, real model
    .venv/bin/python tools/bench_convert.py --random-model --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

# SmolLM2-135M-Instruct's architecture (config.json of the real model), so that the
# random model has the same tensors, shapes and dtype.
SMOLLM2_CONFIG = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)


def build_random_model(path: Path, seed: int = 0) -> Path:
    """A random-init LlamaForCausalLM with SmolLM2-135M's config, saved as bf16 safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_CONFIG)).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    return path


def copy_safetensors(src: Path, dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.safetensors")):
        save_file(load_file(f), dst / f.name, metadata={"format": "pt"})


def copy_transformers(src: Path, dst: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    model.save_pretrained(dst, safe_serialization=True)


class AnonRssPeak:
    """Peak anonymous resident memory (Linux ``RssAnon``: heap, not page cache) while
    active, sampled every 20 ms in a thread; None where /proc is missing."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        try:
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(0.02)

    def __enter__(self) -> "AnonRssPeak":
        self.base = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src_group = ap.add_mutually_exclusive_group()
    src_group.add_argument("--model-dir", type=Path, default=None, help="model directory (default: real SmolLM2-135M)")
    src_group.add_argument("--random-model", action="store_true",
                           help="random-init model with SmolLM2-135M's config, built on the spot")
    ap.add_argument("--device", default="cpu", help="conversion device: cpu, cuda, auto (default: cpu)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: 3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--also-torch", action="store_true",
                    help="also time a CPU conversion with the C quantizer turned off (nvfp4's PyTorch code)")
    args = ap.parse_args()

    from transformers.utils import logging as hf_logging

    from vllm_fouroversix import nvfp4
    from vllm_fouroversix.convert import convert_checkpoint
    from vllm_fouroversix.kernels import cpu_quantize

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        if args.random_model:
            src = build_random_model(work / "random-smollm2")
            label = "random-init SmolLM2-135M config (bf16)"
        else:
            from assets import smollm2_bf16_dir

            src = args.model_dir or smollm2_bf16_dir()
            label = f"{src.name}"
        size = sum(f.stat().st_size for f in src.glob("*.safetensors"))
        if args.device != "cpu" and torch.cuda.is_available():
            # The first CUDA use costs seconds of context set-up: not conversion time.
            nvfp4.quantize(torch.randn(128, 128, device="cuda" if args.device == "auto" else args.device), "mse")

        times: dict[str, list[float]] = {"copy (safetensors)": [], "copy (transformers)": [], "convert": []}
        if args.also_torch:
            times["convert (PyTorch quantizer)"] = []
        summary = None
        mem_peak = 0
        for r in range(args.repeats):
            for name in times:
                dst = work / f"out-{r}-{list(times).index(name)}"
                t0 = time.perf_counter()
                if name == "copy (safetensors)":
                    copy_safetensors(src, dst)
                elif name == "copy (transformers)":
                    copy_transformers(src, dst)
                elif name == "convert":
                    with AnonRssPeak() as mem:
                        summary = convert_checkpoint(src, dst, device=args.device, progress=False)
                    mem_peak = max(mem_peak, mem.peak - mem.base)
                else:  # the same conversion on nvfp4.quantize, as without a C compiler
                    real = cpu_quantize.available
                    cpu_quantize.available = lambda: False
                    try:
                        convert_checkpoint(src, dst, device="cpu", progress=False)
                    finally:
                        cpu_quantize.available = real
                if args.device != "cpu" and torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
                shutil.rmtree(dst, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "model": label,
            "bytes": size,
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "repeats": args.repeats,
            "median_s": med,
            "all_s": times,
            "ratio_vs_safetensors_copy": med["convert"] / med["copy (safetensors)"],
            "ratio_vs_transformers_copy": med["convert"] / med["copy (transformers)"],
            "convert_peak_anon_rss_growth_bytes": mem_peak,
            "layers_quantized": len(summary.quantized) if summary else 0,
            "mean_weight_error": summary.mean_weight_error if summary else None,
        }
        print(f"model: {label}, {size / 1e6:.0f} MB, convert on {args.device}, "
              f"{torch.get_num_threads()} CPU threads, {args.repeats} repeats (median)")
        print("| step | median s | all runs s |")
        print("|---|---|---|")
        for k, v in times.items():
            print(f"| {k} | {med[k]:.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
        print(f"convert / copy (safetensors) = {result['ratio_vs_safetensors_copy']:.2f}x; "
              f"convert / copy (transformers) = {result['ratio_vs_transformers_copy']:.2f}x (target <= 3x)")
        print(f"convert: peak anonymous RSS growth {mem_peak / 1e6:.0f} MB (checkpoint {size / 1e6:.0f} MB)")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
