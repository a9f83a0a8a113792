"""The C CPU quantizer (vllm_fouroversix/kernels/cpu_quantize.c) against nvfp4, bit for bit.

It is built on first use with the machine's C compiler (CI has gcc); nvfp4.quantize
stays the definition, so every case compares codes, scale bytes, global scales and
map-to-4 flags with it, plus the fouroversix reference vectors of test_nvfp4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import cpu_quantize as cq

RULES = [r.value for r in nvfp4.ScaleRule]
VECTORS = Path(__file__).parent / "data" / "reference_vectors.safetensors"


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    assert cq.available(), f"the C quantizer did not build: {cq.unavailable_reason()}"


def assert_same(q: nvfp4.NVFP4Tensor, r: nvfp4.NVFP4Tensor, what: str = "") -> None:
    assert q.data.shape == r.data.shape and q.scales.shape == r.scales.shape, what
    bad = (q.data != r.data).sum().item()
    assert bad == 0, f"{what}: {bad} code bytes differ"
    bad = (q.scales.view(torch.uint8) != r.scales.view(torch.uint8)).sum().item()
    assert bad == 0, f"{what}: {bad} scale bytes differ"
    assert q.global_scale.shape == r.global_scale.shape, what
    assert torch.equal(q.global_scale, r.global_scale), f"{what}: global scales differ"
    if r.mapped_to_4 is None:
        assert q.mapped_to_4 is None, what
    else:
        assert torch.equal(q.mapped_to_4, r.mapped_to_4), f"{what}: map-to-4 choices differ"


def hard_input(rows: int, k: int, seed: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Heavy-tailed rows with per-channel scales, plus every special case in its own rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g) * torch.exp(2 * torch.randn(1, k, generator=g))
    x[0, :16] = 0  # zero block
    x[1] = 0  # zero row
    x[2, 5] = -1e-30  # negative, rounds to -0 in a block with a non-zero scale
    x[3] *= 1e-30  # tiny row: subnormal E4M3 scales per row
    x[4, :16] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2)  # E2M1 ties at scale 1
    x[5, 16:32] = 1.0  # constant block: 4/6 error tie
    return x.to(dtype)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_bit_exact_against_nvfp4(rule: str, per_row: bool, dtype: torch.dtype) -> None:
    # K = 80: 5 blocks a row, so groups of 8 blocks straddle rows and the last group is partial.
    for shape, seed in (((37, 80), 0), ((64, 256), 1)):
        x = hard_input(*shape, seed=seed, dtype=dtype)
        assert_same(cq.quantize_cpu(x, rule, per_row=per_row), nvfp4.quantize(x, rule, per_row=per_row),
                     f"{rule} per_row={per_row} {dtype} {shape}")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["tensor", "row"])
def test_fouroversix_reference_vectors(rule: str, mode: str) -> None:
    v = load_file(str(VECTORS))
    for case in sorted({k.split(".")[0] for k in v}):
        x = v[f"{case}.input"]
        key = f"{case}.{rule}.{mode}.sat"
        t = cq.quantize_cpu(x, rule, per_row=mode == "row")
        assert torch.equal(t.data, v[f"{key}.data"]), f"{key}: codes differ"
        assert torch.equal(t.scales.view(torch.uint8), v[f"{key}.scales"]), f"{key}: scales differ"


@pytest.mark.parametrize("rule", ["mse", "static_6"])
def test_amax_override_saturation_and_tiny_amax(rule: str) -> None:
    x = hard_input(16, 64, seed=2)
    m = float(x.float().abs().max())
    for amax in (m, 2 * m, m / 3, 1e-37, 0.0):  # m/3: blocks above amax saturate; 1e-37: treated as 0
        assert_same(cq.quantize_cpu(x, rule, amax=amax), nvfp4.quantize(x, rule, amax=amax), f"amax={amax}")
    rows = torch.linspace(0, 2 * m, 16)
    rows[3] = 1e-37
    assert_same(
        cq.quantize_cpu(x, rule, per_row=True, amax=rows), nvfp4.quantize(x, rule, per_row=True, amax=rows), "rows"
    )


def test_shapes_and_views() -> None:
    x = hard_input(24, 96, seed=3)
    for y in (x.reshape(2, 3, 4, 96), x[:, 32:], x.t().contiguous().t()[:, :48], x[5:6], x[:0]):
        assert_same(cq.quantize_cpu(y, "mse"), nvfp4.quantize(y, "mse"), str(tuple(y.shape)))
        assert_same(cq.quantize_cpu(y, "mae", per_row=True), nvfp4.quantize(y, "mae", per_row=True))


def test_stats_match_nvfp4() -> None:
    x = hard_input(64, 512, seed=4, dtype=torch.float32)
    for rule in ("mse", "abs_max", "static_4"):
        q, st = cq.quantize_cpu(x, rule, stats=True)
        r = nvfp4.quantize(x, rule)
        want = nvfp4.weight_error(x, r)
        # An fp64 oracle of the same error (independent of both float32 sums).
        deq = nvfp4.dequantize(r).double()
        oracle = ((deq - x.double()).norm() / x.double().norm()).item()
        assert st.relative_error == pytest.approx(oracle, rel=1e-5)
        assert st.relative_error == pytest.approx(want, rel=1e-4)
        nz = r.scales.view(torch.uint8) != 0
        assert st.blocks_nonzero == int(nz.sum())
        mapped = 0 if r.mapped_to_4 is None else int((r.mapped_to_4 & nz).sum())
        assert st.blocks_mapped_to_4 == mapped
        assert rule.startswith("static") or 0 < mapped < st.blocks_nonzero
    _, st = cq.quantize_cpu(torch.zeros(4, 32), "mse", stats=True)
    assert st.relative_error == 0.0 and st.blocks_nonzero == 0


def test_amax_cpu() -> None:
    x = hard_input(7, 48, seed=5)
    assert cq.amax_cpu(x) == float(x.float().abs().max())
    odd = torch.randn(1001).half()  # length not a multiple of 8: the tail goes through torch
    assert cq.amax_cpu(odd) == float(odd.float().abs().max())
    assert cq.amax_cpu(torch.zeros(0)) == 0.0
    for bad in (float("nan"), float("inf"), -float("inf")):
        for pos in (3, 1000):
            y = torch.randn(1001)
            y[pos] = bad
            assert cq.amax_cpu(y) is None, (bad, pos)


def test_errors() -> None:
    x = torch.randn(4, 32)
    x[2, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cq.quantize_cpu(x, "mse")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cq.quantize_cpu(x, "static_6", amax=1.0)  # the quantize pass checks too
    with pytest.raises(ValueError, match="multiple of 16"):
        cq.quantize_cpu(torch.randn(4, 24), "mse")
    with pytest.raises(ValueError, match="amax"):
        cq.quantize_cpu(torch.randn(4, 32), "mse", amax=-1.0)
    with pytest.raises(ValueError, match="unknown scale rule|is not a valid"):
        cq.quantize_cpu(torch.randn(4, 32), "nope")
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        cq.quantize_cpu(torch.randn(4, 32).double(), "mse")


def test_build_cache_and_disable(tmp_path, monkeypatch) -> None:
    """A fresh cache dir gets one .so; VLLM_FOUROVERSIX_CPU_KERNEL=0 turns the kernel off."""
    monkeypatch.setenv("VLLM_FOUROVERSIX_CACHE", str(tmp_path))
    monkeypatch.setattr(cq, "_lib", None)
    monkeypatch.setattr(cq, "_error", None)
    assert cq.available()
    assert len(list(tmp_path.glob("cpu_quantize-*.so"))) == 1
    monkeypatch.setattr(cq, "_lib", None)
    monkeypatch.setattr(cq, "_error", None)
    monkeypatch.setenv("VLLM_FOUROVERSIX_CPU_KERNEL", "0")
    assert not cq.available() and "VLLM_FOUROVERSIX_CPU_KERNEL" in (cq.unavailable_reason() or "")
    with pytest.raises(RuntimeError, match="not available"):
        cq.quantize_cpu(torch.randn(2, 16))
    monkeypatch.setattr(cq, "_lib", None)
    monkeypatch.setattr(cq, "_error", None)
    monkeypatch.delenv("VLLM_FOUROVERSIX_CPU_KERNEL")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("VLLM_FOUROVERSIX_CACHE", str(tmp_path / "fresh"))
    assert not cq.available() and cq.unavailable_reason()
