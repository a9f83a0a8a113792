"""The quantization_config schema of SPEC section 4."""

from __future__ import annotations

import json

import pytest

from vllm_fouroversix.checkpoint import CheckpointError, FourOverSixConfig
from vllm_fouroversix.nvfp4 import ScaleRule


def test_defaults_match_spec_example() -> None:
    d = FourOverSixConfig().to_dict()
    assert d["quant_method"] == "fouroversix"
    assert d["format"] == "nvfp4" and d["format_version"] == 1 and d["block_size"] == 16
    assert d["weight_scale_rule"] == "mse" and d["activation_scale_rule"] == "mse"
    assert d["activation_global_scale"] == "token"
    assert d["modules_to_not_convert"] == ["lm_head"]
    assert d["producer"]["name"] == "vllm-fouroversix"
    json.dumps(d)  # serialisable as written to config.json


def test_roundtrip_and_rules_parsed() -> None:
    d = FourOverSixConfig(weight_scale_rule="static_6", activation_global_scale="static").to_dict()
    c = FourOverSixConfig.from_dict(d)
    assert c.weight_scale_rule is ScaleRule.static_6
    assert c.activation_global_scale == "static"


@pytest.mark.parametrize(
    "patch,msg",
    [
        ({"format_version": 2}, "format_version"),
        ({"block_size": 32}, "block_size"),
        ({"weight_scale_rule": "mse2"}, "weight_scale_rule"),
        ({"activation_scale_rule": "best"}, "activation_scale_rule"),
        ({"activation_global_scale": "channel"}, "activation_global_scale"),
        ({"format": "mxfp4"}, "format"),
        ({"quant_method": "modelopt"}, "quant_method"),
    ],
)
def test_invalid_configs_name_the_field(patch: dict, msg: str) -> None:
    d = FourOverSixConfig().to_dict() | patch
    with pytest.raises(CheckpointError, match=msg):
        FourOverSixConfig.from_dict(d)
