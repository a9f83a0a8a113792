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


def test_static_without_amax_is_an_error() -> None:
    w = QuantizedWeight.from_nvfp4(nvfp4.quantize(torch.randn(16, 32)))
    with pytest.raises(ValueError, match="input_amax"):
        get_backend("reference").linear(torch.randn(2, 32), w, None, ActivationQuant("mse", "static"))


def test_quantized_weight_swizzle_roundtrip() -> None:
    t = nvfp4.quantize(torch.randn(200, 96), "mse")
    w = QuantizedWeight.from_nvfp4(t)
    w.scales = nvfp4.swizzle_scales(w.scales)
    w.scales_swizzled = True
    back = w.to_nvfp4()
    assert torch.equal(back.scales.view(torch.uint8), t.scales.view(torch.uint8))
