"""Pieces of the vLLM method that run without a vLLM engine.

- ``torch.ops.fouroversix.linear`` (``vllm_fouroversix/vllm/ops.py``, no vLLM
  import): schema and fake implementation pass ``torch.library.opcheck``, it
  traces under ``torch.compile(fullgraph=True)``, and it computes
  ``nvfp4.reference_linear`` bit for bit. These run on the GPU machine too
  (``gpu`` tests, no vLLM there).
- The reference backend's fast decode path equals ``nvfp4.reference_linear``
  in every activation mode, and survives degenerate activations.
- With vLLM importable: ``register()`` is idempotent and cheap, and the config
  class validates ``quantization_config`` (unknown ``format_version``, block
  size, rules), detects the method from ``config.json``, and keeps fused
  layers' ``modules_to_not_convert`` consistent.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.reference import ReferenceBackend
from vllm_fouroversix.vllm import ops


def _case(device: str, mode: str, rule: str = "mse", per_row_global: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(5, 3, 64, generator=g) * 2).to(torch.bfloat16).to(device)
    w = torch.randn(48, 64, generator=g)
    t = nvfp4.quantize(w, "mse")
    if per_row_global:
        t.global_scale = torch.linspace(0.5, 2.0, 48).reshape(48, 1) * t.global_scale
    t = nvfp4.NVFP4Tensor(t.data.to(device), t.scales.to(device), t.global_scale.to(device))
    bias = torch.randn(48, generator=g).to(torch.bfloat16).to(device)
    amax = torch.tensor(4.0, device=device) if mode == "static" else None
    ref = nvfp4.reference_linear(
        x, t, bias, act_rule=rule, per_row=mode == "token", act_quant=mode != "none", act_amax=amax
    )
    return x, QuantizedWeight.from_nvfp4(t), bias, ActivationQuant(rule, mode), amax, ref


def _op(x, w, bias, act, amax):
    return torch.ops.fouroversix.linear(
        x, w.data, w.scales, w.global_scale, bias, amax, w.n, w.k, w.scales_swizzled,
        act.rule.value, act.mode, "reference",
    )


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["token", "tensor", "static", "none"])
def test_op_equals_reference_linear(device, mode):
    ops.register_op()
    for per_row_global in (False, True):
        x, w, bias, act, amax, ref = _case(device, mode, per_row_global=per_row_global)
        out = _op(x, w, bias, act, amax)
        assert out.shape == (5, 3, 48) and out.dtype == x.dtype
        assert torch.equal(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_op_opcheck(device):
    ops.register_op()
    x, w, bias, act, amax, _ = _case(device, "token")
    args = (x, w.data, w.scales, w.global_scale, bias, amax, w.n, w.k, False, "mse", "token", "reference")
    # test_schema is left out: its SchemaCheckMode multiplies every input, which
    # float8_e4m3fn tensors do not support on CPU. The schema says the op mutates
    # nothing; check that directly.
    before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(
        torch.ops.fouroversix.linear.default, args,
        test_utils=("test_faketensor", "test_aot_dispatch_static", "test_aot_dispatch_dynamic"),
    )
    for a, b in zip(args, before):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a.view(torch.uint8) if a.dtype == torch.float8_e4m3fn else a,
                               b.view(torch.uint8) if b.dtype == torch.float8_e4m3fn else b)


def test_op_traces_with_torch_compile_fullgraph():
    ops.register_op()
    x, w, bias, act, amax, ref = _case("cpu", "token")

    def f(x, data, scales, g, bias):
        h = torch.nn.functional.silu(x)  # glue Inductor compiles around the opaque op
        return _op(h, QuantizedWeight(data, scales, g, w.n, w.k), bias, act, None) * 2

    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    got = compiled(x, w.data, w.scales, w.global_scale, bias)
    want = f(x, w.data, w.scales, w.global_scale, bias)
    assert torch.equal(got, want)
    # a second token count reuses the dynamic graph
    x2 = x[:2]
    assert torch.equal(compiled(x2, w.data, w.scales, w.global_scale, bias),
                       f(x2, w.data, w.scales, w.global_scale, bias))


def test_op_passes_backend_private_state():
    """QuantizedWeight.extra travels to the backend by the weight's address."""
    seen = []

    class Spy(ReferenceBackend):
        name = "spy"

        def linear(self, x, w, bias, act, input_amax=None):
            seen.append(w.extra)
            return super().linear(x, w, bias, act, input_amax)

    ops.register_op()
    ops.backend_instance("spy", Spy())
    x, w, bias, act, amax, ref = _case("cpu", "token")
    w.extra = {"layout": "test"}
    ops.register_weight(w)
    out = torch.ops.fouroversix.linear(x, w.data, w.scales, w.global_scale, bias, None, w.n, w.k,
                                       False, "mse", "token", "spy")
    assert seen == [{"layout": "test"}] and torch.equal(out, ref)


def test_reference_backend_amax_override_and_degenerate_rows():
    be = ReferenceBackend()
    x, w, bias, act, _, ref = _case("cpu", "token")
    x2 = x.reshape(-1, 64)
    # A per-row amax equal to the rows' own max changes nothing.
    own = x2.abs().amax(-1).float()
    assert torch.equal(be.linear(x2, w, bias, act, own), ref.reshape(-1, 48))
    # A larger shared amax (another TP rank's columns) changes the quantization.
    # (x3: a power of two would scale every block scale exactly and change nothing)
    assert not torch.equal(be.linear(x2, w, bias, act, own * 3), ref.reshape(-1, 48))
    # Garbage rows (vLLM warm-up memory): NaN rows give NaN, subnormal rows give bias only,
    # the other rows are untouched.
    bad = x2.clone()
    bad[1, 3] = float("nan")
    bad[2] = 0
    bad[2, 5] = 1e-40
    out = be.linear(bad, w, bias, act)
    assert out[1].isnan().all() and not out[[0, 3]].isnan().any()
    assert torch.equal(out[2], bias)
    assert torch.equal(out[[0, 3, 4]], ref.reshape(-1, 48)[[0, 3, 4]])


# -- vLLM configuration (needs vLLM importable, no engine) ------------------------


@pytest.mark.vllm
def test_register_is_idempotent_and_cheap():
    code = (
        "import time, sys\n"
        "import vllm.model_executor.layers.quantization as q\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "import vllm_fouroversix\n"
        "vllm_fouroversix.register(); vllm_fouroversix.register()\n"
        "dt = time.perf_counter() - t\n"
        "new = set(sys.modules) - before\n"
        "from vllm_fouroversix.vllm import register_method\n"
        "register_method()\n"
        "assert q.QUANTIZATION_METHODS.count('fouroversix') == 1\n"
        "assert q.get_quantization_config('fouroversix').__name__ == 'FourOverSixQuantConfig'\n"
        "heavy = [m for m in new if m.startswith(('vllm.model_executor.layers.linear', 'vllm.distributed',"
        " 'vllm_fouroversix.vllm.linear', 'vllm_fouroversix.convert.core', 'triton', 'cutlass'))]\n"
        "assert not heavy, heavy\n"
        "print(dt)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert float(p.stdout.strip().splitlines()[-1]) < 0.5


def _qcfg(**over):
    from vllm_fouroversix.vllm.config import FourOverSixQuantConfig

    d = {
        "quant_method": "fouroversix", "format": "nvfp4", "format_version": 1, "block_size": 16,
        "weight_scale_rule": "mse", "activation_scale_rule": "mse", "activation_global_scale": "token",
        "modules_to_not_convert": ["lm_head"],
    }
    d.update(over)
    return FourOverSixQuantConfig.from_config(d)


@pytest.mark.vllm
@pytest.mark.parametrize(
    "over, needle",
    [
        ({"format_version": 2}, "format_version"),
        ({"block_size": 32}, "block_size"),
        ({"weight_scale_rule": "mse2"}, "weight_scale_rule"),
        ({"activation_scale_rule": "max"}, "activation_scale_rule"),
        ({"activation_global_scale": "channel"}, "activation_global_scale"),
        ({"format": "mxfp4"}, "format"),
    ],
)
def test_config_rejects_unknown_values(over, needle):
    from vllm_fouroversix.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=needle):
        _qcfg(**over)


@pytest.mark.vllm
def test_config_detection_and_contract():
    from vllm_fouroversix.vllm.config import FourOverSixQuantConfig

    c = _qcfg(activation_global_scale="tensor", weight_scale_rule="static_6")
    assert c.get_name() == "fouroversix" and not c.online
    assert c.spec.activation_global_scale == "tensor"
    assert torch.bfloat16 in c.get_supported_act_dtypes()
    assert FourOverSixQuantConfig.get_config_filenames() == []  # no file: bf16 -> online
    assert FourOverSixQuantConfig.override_quantization_method({"quant_method": "fouroversix"}, None) == "fouroversix"
    assert FourOverSixQuantConfig.override_quantization_method({"quant_method": "modelopt"}, None) is None
    online = FourOverSixQuantConfig()
    assert online.online and online.spec.activation_global_scale == "token"


@pytest.mark.vllm
def test_online_config_env(monkeypatch):
    from vllm_fouroversix.checkpoint import CheckpointError
    from vllm_fouroversix.vllm.config import ONLINE_CONFIG_ENV, FourOverSixQuantConfig

    monkeypatch.setenv(ONLINE_CONFIG_ENV, '{"weight_scale_rule": "static_6", "activation_global_scale": "tensor"}')
    c = FourOverSixQuantConfig()
    assert str(c.spec.weight_scale_rule) == "static_6" and c.spec.activation_global_scale == "tensor"
    monkeypatch.setenv(ONLINE_CONFIG_ENV, '{"activation_global_scale": "static"}')
    with pytest.raises(CheckpointError, match="static"):
        FourOverSixQuantConfig()


@pytest.mark.vllm
def test_modules_to_not_convert_on_fused_layers():
    from vllm_fouroversix.checkpoint import CheckpointError

    c = _qcfg(modules_to_not_convert=["lm_head", "model.layers.0.self_attn.q_proj",
                                      "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj",
                                      "model.layers.1.mlp.gate_proj", "*.layers.2.*"])
    c.packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    assert c.is_excluded("lm_head")
    assert c.is_excluded("model.layers.0.self_attn.qkv_proj")  # every shard kept
    assert not c.is_excluded("model.layers.0.mlp.down_proj")
    assert c.is_excluded("model.layers.2.mlp.down_proj")  # glob
    with pytest.raises(CheckpointError, match="gate_up_proj"):
        c.is_excluded("model.layers.1.mlp.gate_up_proj")  # half a fused GEMM
