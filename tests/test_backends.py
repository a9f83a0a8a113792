"""Backend selection and the reference backend against the fp64 oracle."""

from __future__ import annotations

import pytest
import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends import BACKEND_ENV, ActivationQuant, QuantizedWeight, get_backend, select


def test_cpu_selects_reference(monkeypatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert select("cpu").name == "reference"


def test_env_forces_and_rejects(monkeypatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "reference")
    assert select("cpu").name == "reference"
    monkeypatch.setenv(BACKEND_ENV, "nope")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        select("cpu")


@pytest.mark.parametrize("mode", ["token", "tensor", "static", "none"])
def test_reference_backend_matches_oracle(mode: str) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 128, generator=g).bfloat16()
    w = nvfp4.quantize(torch.randn(40, 128, generator=g), "mse")
    bias = torch.randn(40, generator=g).bfloat16()
    amax = torch.tensor(2.5) if mode == "static" else None
    out = get_backend("reference").linear(
        x, QuantizedWeight.from_nvfp4(w), bias, ActivationQuant("mse", mode), amax
    )
    if mode == "none":
        xd = x.double()
    else:
        xq = nvfp4.quantize(x, "mse", per_row=mode == "token", amax=amax)
        xd = nvfp4.dequantize(xq, torch.float64)
    oracle = xd @ nvfp4.dequantize(w, torch.float64).T + bias.double()
    assert ((out.double() - oracle).norm() / oracle.norm()) < 8e-3


@pytest.mark.parametrize("name", ["reference", "triton", "cutedsl"])
def test_bad_linear_inputs_are_errors(name: str) -> None:
    """Every backend checks its arguments before any work (on CPU too: the checks
    come first), with the same messages."""
    import importlib

    pytest.importorskip({"reference": "torch", "triton": "triton", "cutedsl": "cutlass"}[name])
    mod = importlib.import_module(f"vllm_fouroversix.backends.{name}")
    cls = {"reference": "ReferenceBackend", "triton": "TritonBackend", "cutedsl": "CuteDSLBackend"}[name]
    backend = getattr(mod, cls)()
    w = QuantizedWeight.from_nvfp4(nvfp4.quantize(torch.randn(16, 32)))
    x = torch.randn(2, 32).bfloat16()
    with pytest.raises(ValueError, match="input_amax"):
        backend.linear(x, w, None, ActivationQuant("mse", "static"))
    # K = 64 against a K = 32 weight (a multiple of it, so a reshape alone would not catch it).
    with pytest.raises(ValueError, match="x has K=64 but the weight has K=32"):
        backend.linear(torch.randn(2, 64).bfloat16(), w, None, ActivationQuant("mse", "token"))


def test_quantized_weight_swizzle_roundtrip() -> None:
    t = nvfp4.quantize(torch.randn(200, 96), "mse")
    w = QuantizedWeight.from_nvfp4(t)
    w.scales = nvfp4.swizzle_scales(w.scales)
    w.scales_swizzled = True
    back = w.to_nvfp4()
    assert torch.equal(back.scales.view(torch.uint8), t.scales.view(torch.uint8))
