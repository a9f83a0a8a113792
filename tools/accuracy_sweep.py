"""Run the accuracy table of benchmarks/ACCURACY.md: perplexity of BF16, plain
NVFP4 and 4/6 variants on real text, through vLLM and through the transformers
simulation, plus the weight error summary.

    .venv/bin/python tools/accuracy_sweep.py --engines hf vllm --max-windows 4

Each row is one `tools/eval_ppl.py` run in its own process (one vLLM engine at a
time) on a checkpoint written by `fouroversix-convert` (cached under
.cache/ckpt/), so the `hf` rows (transformers with the stored FP4 tensors run by
nvfp4.reference_linear) and the `vllm` rows score the very same weights. Results are appended to benchmarks/accuracy_results.jsonl
and the table is printed in Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
PY = sys.executable

# (label, weight rule, activation rule, activation mode); None weight rule = BF16.
VARIANTS = [
    ("BF16", None, None, None),
    ("NVFP4 W4A4 (static_6), per-token", "static_6", "static_6", "token"),
    ("4/6 mse W4A4, per-token", "mse", "mse", "token"),
    ("4/6 mae W4A4, per-token", "mae", "mae", "token"),
    ("4/6 abs_max W4A4, per-token", "abs_max", "abs_max", "token"),
    ("NVFP4 W4A4 (static_6), per-tensor", "static_6", "static_6", "tensor"),
    ("4/6 mse W4A4, per-tensor", "mse", "mse", "tensor"),
    ("NVFP4 weight-only (static_6)", "static_6", None, "none"),
    ("4/6 mse weight-only", "mse", None, "none"),
]


def run(cmd: list[str]) -> dict:
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def convert(model: Path, wrule: str, arule: str, amode: str) -> Path:
    out = ROOT / ".cache" / "ckpt" / f"{model.name}-{wrule}-{arule}-{amode}"
    if not (out / "config.json").exists():
        subprocess.run(
            [str(Path(PY).parent / "fouroversix-convert"), str(model), str(out), "--weight-rule", wrule,
             "--activation-rule", arule, "--activation-global-scale", amode, "--force"],
            check=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=None, help="bf16 model dir (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--engines", nargs="+", default=["hf"], choices=("hf", "vllm"))
    ap.add_argument("--max-windows", type=int, default=4)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--text", default="alice29.txt")
    ap.add_argument("--only", nargs="*", default=None, help="labels (substrings) to run")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "accuracy_results.jsonl"))
    args = ap.parse_args()
    if args.model is None:
        from assets import smollm2_bf16_dir

        model = smollm2_bf16_dir()
    else:
        model = Path(args.model)
    common = ["--window", str(args.window), "--max-windows", str(args.max_windows), "--text", args.text]
    rows = []
    for label, wrule, arule, amode in VARIANTS:
        if args.only and not any(o in label for o in args.only):
            continue
        for engine in args.engines:
            if wrule is None:
                target = model
            else:
                # Weight-only rows reuse the per-token checkpoint and switch activation
                # quantization off at evaluation time (a checkpoint always records it).
                target = convert(model, wrule, arule or wrule, "token" if amode == "none" else amode)
            if engine == "vllm" and amode == "none":
                continue  # vLLM serves what the checkpoint says: activations quantized
            cmd = [PY, str(ROOT / "tools" / "eval_ppl.py"), str(target), "--engine", engine, *common]
            if engine == "hf" and amode == "none":
                cmd += ["--act-mode", "none"]
            res = run(cmd)
            res["label"] = label
            res["command"] = " ".join(Path(c).name if c == PY else c for c in cmd)
            rows.append(res)
            with open(args.results, "a") as f:
                f.write(json.dumps(res) + "\n")
            print(f"{label:40s} {engine:5s} ppl={res['ppl']:.3f}", flush=True)
    print("\n| variant | engine | perplexity | tokens |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['engine']} | {r['ppl']:.3f} | {r['tokens']} |")


if __name__ == "__main__":
    main()
