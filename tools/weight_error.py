"""Per-layer weight error of plain NVFP4 vs 4/6 on a real model, with a plot.

For every nn.Linear weight of the model that a checkpoint would quantize
(not lm_head, K % 16 == 0), quantizes with each rule and reports the relative
Frobenius error ||Q(W) - W|| / ||W|| and the share of blocks 4/6 mapped to 4.
Writes a JSON file with all numbers and a PNG plot (per-layer error, NVFP4 vs 4/6).

    .venv/bin/python tools/weight_error.py [MODEL_DIR] --out benchmarks/weight_error_smollm2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

from vllm_fouroversix import nvfp4  # noqa: E402

RULES = ("static_6", "static_4", "mse", "mae", "abs_max")


def linear_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The 2-D weights of the model's nn.Linear modules, read from its safetensors."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names = [
        n for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head") and m.in_features % 16 == 0
    ]
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            for n in names:
                if f"{n}.weight" in sf.keys():
                    out[n] = sf.get_tensor(f"{n}.weight")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=None, help="bf16 model dir (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "weight_error_smollm2"), help="output path stem")
    args = ap.parse_args()
    if args.model is None:
        from assets import smollm2_bf16_dir

        model_dir = smollm2_bf16_dir()
    else:
        model_dir = Path(args.model)
    weights = linear_weights(model_dir)
    per_layer: dict[str, dict[str, float]] = {}
    sq_err = {r: 0.0 for r in RULES}
    sq_norm = 0.0
    blocks4 = {r: 0 for r in RULES}
    blocks = 0
    for name, w in weights.items():
        row = {}
        wf = w.float()
        norm2 = float(wf.pow(2).sum())
        sq_norm += norm2
        for rule in RULES:
            t = nvfp4.quantize(w, rule)
            e2 = float((nvfp4.dequantize(t) - wf).pow(2).sum())
            sq_err[rule] += e2
            row[rule] = (e2 / norm2) ** 0.5 if norm2 else 0.0
            if t.mapped_to_4 is not None:
                n4 = int(t.mapped_to_4.sum())
                blocks4[rule] += n4
                row[f"{rule}_mapped_to_4"] = n4 / t.mapped_to_4.numel()
        blocks += w.numel() // 16
        per_layer[name] = row
        print(f"{name:45s} " + " ".join(f"{r}={row[r]:.4f}" for r in RULES), flush=True)
    summary = {
        rule: {
            "relative_error": (sq_err[rule] / sq_norm) ** 0.5,
            "mean_layer_relative_error": sum(r[rule] for r in per_layer.values()) / len(per_layer),
            "share_mapped_to_4": (blocks4[rule] / blocks) if rule in ("mse", "mae", "abs_max") else None,
        }
        for rule in RULES
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"model": str(model_dir), "summary": summary, "per_layer": per_layer}, indent=1)
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_layer)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for rule, style in (("static_6", "o-"), ("mse", "s-"), ("abs_max", "^-")):
        ax.plot(range(len(names)), [per_layer[n][rule] for n in names], style, ms=2.5, lw=0.8,
                label=f"{'NVFP4 (static_6)' if rule == 'static_6' else '4/6 ' + rule}: "
                      f"{summary[rule]['relative_error']:.4f} overall")
    ax.set_xlabel("linear layer (model order: q, k, v, o, gate, up, down per block)")
    ax.set_ylabel("||Q(W) - W|| / ||W||")
    ax.set_title(f"Per-layer weight error, {model_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
