"""The accuracy tooling: the transformers fake-quant simulation (vllm_fouroversix.simulate)
and tools/eval_ppl.py, including its cross-check of the vLLM serving path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tiny_models
from vllm_fouroversix import nvfp4, simulate
from vllm_fouroversix.convert import convert_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("acc")
    # vLLM's CPU attention needs head_dim >= 32.
    src = tiny_models.qwen2_qkv_bias(d / "src", hidden_size=128, head_dim=32)
    ckpt = d / "ckpt"
    convert_checkpoint(src, ckpt, device="cpu", progress=False)
    return src, ckpt


def _text_file(tmp: Path) -> Path:
    from assets import corpus_text

    f = tmp / "text.txt"
    f.write_text(corpus_text("alice29.txt")[:6000])
    return f


def test_checkpoint_model_uses_stored_tensors_exactly(tiny) -> None:
    """Weight-only simulation of a checkpoint == a plain model whose linears hold the
    decoded stored weights (an independent oracle built from the safetensors)."""
    from transformers import AutoModelForCausalLM

    src, ckpt = tiny
    sim = simulate.load_checkpoint_model(ckpt, dtype=torch.float32, act_mode="none")
    plain = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    stored = {}
    for f in ckpt.glob("*.safetensors"):
        stored.update(load_file(str(f)))
    n = 0
    for name, mod in plain.named_modules():
        if isinstance(mod, torch.nn.Linear) and f"{name}.weight_scale" in stored:
            t = nvfp4.NVFP4Tensor(stored[f"{name}.weight"], stored[f"{name}.weight_scale"],
                                  stored[f"{name}.weight_scale_2"])
            mod.weight.data = nvfp4.dequantize(t, torch.float32)
            n += 1
    assert n >= 14  # 7 linears a layer, 2 layers
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = sim(ids).logits, plain(ids).logits
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    # With activation quantization on, the logits move (the simulation is not a no-op).
    sim_q = simulate.load_checkpoint_model(ckpt, dtype=torch.float32)
    with torch.no_grad():
        assert not torch.allclose(sim_q(ids).logits, a, rtol=1e-3, atol=1e-3)


def test_quantize_model_replaces_linears() -> None:
    lin = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    qs = simulate.quantize_model(lin, weight_rule="static_6", act_mode="tensor", ignore=("2",))
    assert list(qs) == ["0"] and isinstance(lin[0], simulate.FakeQuantLinear)
    assert isinstance(lin[2], torch.nn.Linear)  # ignored
    x = torch.randn(5, 64)
    want = nvfp4.reference_linear(x, qs["0"], lin[0].bias, act_rule="mse", per_row=False)
    assert torch.equal(lin[0](x), want)


def _eval(model: Path, text: Path, *extra: str) -> dict:
    cmd = [sys.executable, str(ROOT / "tools" / "eval_ppl.py"), str(model), "--text", str(text),
           "--window", "64", "--max-windows", "4", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def test_eval_ppl_hf_modes(tiny, tmp_path) -> None:
    src, ckpt = tiny
    text = _text_file(tmp_path)
    bf16 = _eval(src, text, "--engine", "hf")
    sim = _eval(src, text, "--engine", "hf", "--simulate", "mse")
    stored = _eval(ckpt, text, "--engine", "hf")
    assert bf16["tokens"] == sim["tokens"] == stored["tokens"] == 4 * 63
    for r in (bf16, sim, stored):
        assert 1.0 < r["ppl"] < 1e4
    # Quantization changes the numbers; simulated (per-layer amax) and stored
    # (fused-group amax) weights are close but not the same model.
    assert bf16["ppl"] != sim["ppl"]
    assert abs(sim["ppl"] - stored["ppl"]) / stored["ppl"] < 0.05


@pytest.mark.vllm
@pytest.mark.slow
def test_eval_ppl_vllm_agrees_with_hf_simulation(tiny, tmp_path) -> None:
    """The serving path and the reference simulation score the same checkpoint alike."""
    src, ckpt = tiny
    text = _text_file(tmp_path)
    served = _eval(ckpt, text, "--engine", "vllm")
    sim = _eval(ckpt, text, "--engine", "hf")
    assert served["tokens"] == sim["tokens"]
    # bf16 activations between layers in both, but different kernels and op
    # order (attention, norms): close, not identical.
    assert abs(served["nll"] - sim["nll"]) < 0.005 * sim["nll"], (served, sim)
