"""Perplexity of a checkpoint over real English text, through vLLM or transformers.

Text: the Canterbury corpus files shipped in the brotli 1.2.1 sdist
(tools/assets.py). The text is tokenized once (no BOS added), cut into
non-overlapping windows of --window tokens (stride = window; the last partial
window is dropped), and --max-windows of them are scored. Perplexity is
exp(mean NLL) over every token of every window except each window's first,
which has no context. Both modes use exactly the same windows.

Modes:
  --engine vllm   vllm.LLM with prompt log-probabilities (the serving path).
                  A 4/6 checkpoint is auto-detected; --quantization fouroversix
                  quantizes a bf16 checkpoint on load.
  --engine hf     transformers. A 4/6 checkpoint is loaded with its stored FP4
                  tensors into fake-quant linears that run nvfp4.reference_linear
                  (vllm_fouroversix.simulate); with --simulate RULE a bf16 model is
                  quantized in memory (weight rule RULE, --act-rule/--act-mode).
                  A cross-check of the serving path, and the way to evaluate
                  variants a checkpoint does not carry (weight-only: --act-mode none).

Examples:
  .venv/bin/python tools/eval_ppl.py MODEL_DIR --engine vllm
  .venv/bin/python tools/eval_ppl.py MODEL_DIR --engine hf --simulate static_6 --act-rule static_6
Prints the result as one line "RESULT {json}" (vLLM also writes to stdout).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))


def windows(model_dir: str, text_file: str, window: int, max_windows: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from assets import corpus_dir

    path = Path(text_file) if Path(text_file).exists() else corpus_dir() / text_file
    text = path.read_text(encoding="latin-1")
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    n = min(len(ids) // window, max_windows)
    if n == 0:
        raise SystemExit(f"{path}: only {len(ids)} tokens, fewer than one window of {window}")
    return [ids[i * window : (i + 1) * window] for i in range(n)]


def nll_vllm(model_dir: str, wins: list[list[int]], args: argparse.Namespace) -> tuple[float, int]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    kw = dict(
        model=model_dir,
        dtype="bfloat16",
        enforce_eager=not args.compile,
        max_model_len=max(args.window + 16, 256),
        gpu_memory_utilization=args.gpu_memory_utilization,
        seed=0,
    )
    if args.quantization:
        kw["quantization"] = args.quantization
    llm = LLM(**kw)
    sp = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
    try:
        outs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in wins], sp, use_tqdm=True)
    finally:
        # Stop the engine-core process now rather than from garbage collection at exit.
        llm.llm_engine.engine_core.shutdown()
    total, count = 0.0, 0
    for w, o in zip(wins, outs):
        for pos in range(1, len(w)):
            lp = o.prompt_logprobs[pos][w[pos]].logprob
            total -= lp
            count += 1
    return total, count


def nll_hf(model_dir: str, wins: list[list[int]], args: argparse.Namespace) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM

    from vllm_fouroversix import simulate

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    is_ckpt = (cfg.get("quantization_config") or {}).get("quant_method") == "fouroversix"
    if is_ckpt:
        model = simulate.load_checkpoint_model(model_dir, act_mode=args.act_mode)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
        if args.simulate:
            simulate.quantize_model(
                model, weight_rule=args.simulate, act_rule=args.act_rule, act_mode=args.act_mode or "token"
            )
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for w in wins:
            ids = torch.tensor([w])
            logits = model(ids).logits.float()
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            tgt = ids[0, 1:]
            total -= float(logp.gather(1, tgt.unsqueeze(1)).sum())
            count += len(w) - 1
    return total, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model directory (bf16 or a fouroversix-convert checkpoint)")
    ap.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    ap.add_argument("--text", default="alice29.txt", help="corpus file name or a path (default alice29.txt)")
    ap.add_argument("--window", type=int, default=512, help="tokens per window = stride (default 512)")
    ap.add_argument("--max-windows", type=int, default=4, help="windows scored (default 4)")
    ap.add_argument("--quantization", default=None, help="vllm: e.g. fouroversix for online quantization")
    ap.add_argument("--compile", action="store_true", help="vllm: use default compilation (no enforce_eager)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    ap.add_argument("--simulate", default=None, help="hf on a bf16 model: weight rule to simulate")
    ap.add_argument("--act-rule", default="mse", help="hf --simulate: activation rule (default mse)")
    ap.add_argument("--act-mode", default=None, choices=("token", "tensor", "none"),
                    help="hf: activation mode (default: the checkpoint's, or token); none = weight-only")
    ap.add_argument("--label", default=None, help="a name for this row in the JSON output")
    args = ap.parse_args()

    wins = windows(args.model, args.text, args.window, args.max_windows)
    t0 = time.time()
    total, count = (nll_vllm if args.engine == "vllm" else nll_hf)(args.model, wins, args)
    res = {
        "label": args.label or Path(args.model).name,
        "engine": args.engine,
        "model": str(args.model),
        "text": args.text,
        "window": args.window,
        "windows": len(wins),
        "tokens": count,
        "nll": total / count,
        "ppl": math.exp(total / count),
        "seconds": round(time.time() - t0, 1),
        "simulate": args.simulate,
        "act_rule": args.act_rule if args.simulate else None,
        "act_mode": args.act_mode,
    }
    print("RESULT " + json.dumps(res), flush=True)
    if args.engine == "vllm":
        # vLLM 0.32's CPU build can abort while the interpreter tears down
        # ("terminate called without an active exception", exit -6) after all
        # work is done; the result is printed and the engine stopped, so leave now.
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
