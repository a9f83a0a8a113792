"""fouroversix-convert (issue #4): bit-exactness against nvfp4, the checkpoint format
of SPEC section 4, safety and every error path. Tiny random models; one real model
(SmolLM2-135M-Instruct, marked slow)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import tiny_models
from vllm_fouroversix import nvfp4
from vllm_fouroversix.convert import ConvertError, convert_checkpoint, verify_checkpoint
from vllm_fouroversix.convert import cli
from vllm_fouroversix.convert.groups import matches

CPU = dict(device="cpu", progress=False)


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: tiny_models.build(name, root / name) for name in tiny_models.BUILDERS}


def read_all(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def dir_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def expected_groups(prefixes: list[str]) -> list[list[str]]:
    """Fused groups written independently of the converter's table: q/k/v, gate/up, w1/w3."""
    fams = [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3")]
    groups = []
    parents = sorted({p.rpartition(".")[0] for p in prefixes})
    for parent in parents:
        for fam in fams:
            g = [f"{parent}.{leaf}" for leaf in fam if f"{parent}.{leaf}" in prefixes]
            if len(g) > 1:
                groups.append(g)
    return groups


def check_against_nvfp4(src: Path, out: Path, rule: str = "mse") -> list[str]:
    """Every tensor of ``out`` against nvfp4 applied to ``src`` with the group amax, bit for bit."""
    a, b = read_all(src), read_all(out)
    quantized = sorted(k[: -len(".weight_scale")] for k in b if k.endswith(".weight_scale"))
    assert quantized, "nothing was quantized"
    amax = {p: a[p + ".weight"].abs().max().float() for p in quantized}
    for g in expected_groups(quantized):
        m = torch.stack([amax[p] for p in g]).max()
        for p in g:
            amax[p] = m
        s2 = {b[p + ".weight_scale_2"].item() for p in g}
        assert len(s2) == 1, f"group {g} has different weight_scale_2 {s2}"
    for p in quantized:
        q = nvfp4.quantize(a[p + ".weight"], rule, amax=amax[p])
        assert same_bits(b[p + ".weight"], q.data), p
        assert same_bits(b[p + ".weight_scale"], q.scales), p
        assert same_bits(b[p + ".weight_scale_2"], q.global_scale.float().reshape(())), p
    qnames = {f"{p}.{s}" for p in quantized for s in ("weight", "weight_scale", "weight_scale_2", "input_scale")}
    for k, t in a.items():
        if k not in qnames:
            assert k in b, f"{k} was dropped"
            assert same_bits(b[k], t), f"{k} changed"
    extra = set(b) - set(a) - qnames
    assert not extra, extra
    return quantized


# ---------------------------------------------------------------- conversions


@pytest.mark.parametrize("name", ["llama_tied", "qwen2_qkv_bias", "qwen3_moe", "mixtral"])
def test_bit_exact_against_nvfp4(models, tmp_path, name):
    out = tmp_path / "out"
    s = convert_checkpoint(models[name], out, **CPU)
    quantized = check_against_nvfp4(models[name], out)
    assert sorted(s.quantized) == quantized
    assert verify_checkpoint(out) == []
    cfg = json.loads((out / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc["quant_method"] == "fouroversix" and qc["format"] == "nvfp4" and qc["format_version"] == 1
    assert qc["weight_scale_rule"] == "mse" and qc["activation_global_scale"] == "token"
    assert qc["modules_to_not_convert"][0] == "lm_head"
    src_cfg = json.loads((models[name] / "config.json").read_text())
    assert {k: v for k, v in cfg.items() if k != "quantization_config"} == src_cfg
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / f).read_bytes() == (models[name] / f).read_bytes(), f
    assert 0 < s.mean_weight_error < 0.2 and 0 < s.fraction_mapped_to_4 < 1
    assert s.bytes_after < s.bytes_before


def test_c_quantizer_and_torch_fallback_write_the_same_checkpoint(models, tmp_path, monkeypatch):
    """On CPU the converter uses the C quantizer when it builds; without it
    (no compiler, VLLM_FOUROVERSIX_CPU_KERNEL=0) nvfp4 does the work. Same bytes,
    same summary statistics."""
    import vllm_fouroversix.convert.core as core

    assert core.cpu_quantize.available(), core.cpu_quantize.unavailable_reason()
    fast = convert_checkpoint(models["qwen3_moe"], tmp_path / "c", **CPU)
    monkeypatch.setattr(core.cpu_quantize, "available", lambda: False)
    slow = convert_checkpoint(models["qwen3_moe"], tmp_path / "torch", **CPU)
    a, b = read_all(tmp_path / "c"), read_all(tmp_path / "torch")
    assert a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    assert fast.weight_errors.keys() == slow.weight_errors.keys()
    for k, e in slow.weight_errors.items():
        assert fast.weight_errors[k] == pytest.approx(e, rel=1e-4), k
    assert (fast.blocks_nonzero, fast.blocks_mapped_to_4) == (slow.blocks_nonzero, slow.blocks_mapped_to_4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_fp16_fp32_inputs(tmp_path, dtype):
    src = tiny_models.llama_tied(tmp_path / "m", dtype=dtype)
    out = tmp_path / "out"
    convert_checkpoint(src, out, **CPU)
    check_against_nvfp4(src, out)
    assert read_all(out)["model.norm.weight"].dtype == dtype


def test_tied_embeddings_stay_tied(models, tmp_path):
    out = tmp_path / "out"
    convert_checkpoint(models["llama_tied"], out, **CPU)
    b = read_all(out)
    assert "lm_head.weight" not in b
    assert b["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True


def test_qkv_bias_and_groups(models, tmp_path):
    out = tmp_path / "out"
    s = convert_checkpoint(models["qwen2_qkv_bias"], out, **CPU)
    a, b = read_all(models["qwen2_qkv_bias"]), read_all(out)
    for proj in ("q_proj", "k_proj", "v_proj"):
        k = f"model.layers.1.self_attn.{proj}.bias"
        assert same_bits(b[k], a[k])
    assert s.groups == 4  # qkv and gate/up, 2 layers
    assert s.kept == {"lm_head": "ignored (lm_head)"}
    assert b["lm_head.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("name,router", [("qwen3_moe", "mlp.gate"), ("mixtral", "block_sparse_moe.gate")])
def test_moe_experts(models, tmp_path, name, router):
    out = tmp_path / "out"
    s = convert_checkpoint(models[name], out, **CPU)
    b = read_all(out)
    # 2 layers x (q,k,v,o + 4 experts x 3)
    assert len(s.quantized) == 2 * (4 + 12)
    assert s.groups == 2 * (1 + 4)
    r = f"model.layers.0.{router}"
    assert r in s.kept and b[r + ".weight"].dtype == torch.bfloat16
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert r in qc["modules_to_not_convert"]
    up = "up_proj" if name == "qwen3_moe" else "w3"
    gate = "gate_proj" if name == "qwen3_moe" else "w1"
    base = f"model.layers.1.{router.rpartition('.')[0]}.experts.2"
    assert b[f"{base}.{gate}.weight_scale_2"].item() == b[f"{base}.{up}.weight_scale_2"].item()


def test_k_not_multiple_of_16_kept_with_warning(tmp_path):
    src = tiny_models.llama_tied(tmp_path / "odd", intermediate_size=72)
    out = tmp_path / "out"
    s = convert_checkpoint(src, out, **CPU)
    assert s.kept["model.layers.0.mlp.down_proj"] == "K=72 is not a multiple of 16"
    assert any("model.layers.0.mlp.down_proj" in w and "K=72" in w for w in s.warnings)
    b = read_all(out)
    assert b["model.layers.0.mlp.down_proj.weight"].dtype == torch.bfloat16
    assert b["model.layers.0.mlp.up_proj.weight"].dtype == torch.uint8  # K = hidden = 64
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert "model.layers.1.mlp.down_proj" in qc["modules_to_not_convert"]
    check_against_nvfp4(src, out)
    assert verify_checkpoint(out) == []


def test_ignore_keeps_whole_fused_group(models, tmp_path):
    out = tmp_path / "out"
    s = convert_checkpoint(models["llama_tied"], out, ignore=["layers.0.self_attn.q_proj", "*.o_proj"], **CPU)
    b = read_all(out)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert b[f"model.layers.0.self_attn.{proj}.weight"].dtype == torch.bfloat16, proj
    assert b["model.layers.1.self_attn.q_proj.weight"].dtype == torch.uint8
    assert b["model.layers.1.self_attn.o_proj.weight"].dtype == torch.bfloat16
    assert s.kept["model.layers.0.self_attn.k_proj"].startswith("fused with model.layers.0.self_attn.q_proj")
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    for p in ("model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.o_proj", "model.layers.0.self_attn.v_proj"):
        assert matches(p, qc["modules_to_not_convert"]), p
    assert not matches("model.layers.1.self_attn.q_proj", qc["modules_to_not_convert"])
    check_against_nvfp4(models["llama_tied"], out)
    assert verify_checkpoint(out) == []


def test_sharded_output_matches_single_file(models, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    convert_checkpoint(models["qwen3_moe"], one, **CPU)
    s = convert_checkpoint(models["qwen3_moe"], many, max_shard_size="16KB", **CPU)
    assert len(s.shards) > 3
    index = json.loads((many / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(s.shards)
    assert index["metadata"]["total_size"] == s.bytes_after
    for f in s.shards:
        with safe_open(many / f, "pt") as h:
            ts = [h.get_tensor(k) for k in h.keys()]
        data = sum(t.numel() * t.element_size() for t in ts)
        assert data <= 16_000 or len(ts) == 1, f  # a tensor larger than a shard gets its own
    a, b = read_all(one), read_all(many)
    assert a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    assert verify_checkpoint(many) == []


def test_weight_rules(models, tmp_path):
    for rule in ("static_6", "abs_max"):
        out = tmp_path / rule
        s = convert_checkpoint(models["qwen2_qkv_bias"], out, weight_rule=rule, activation_rule="static_6", **CPU)
        check_against_nvfp4(models["qwen2_qkv_bias"], out, rule=rule)
        qc = json.loads((out / "config.json").read_text())["quantization_config"]
        assert qc["weight_scale_rule"] == rule and qc["activation_scale_rule"] == "static_6"
        assert (s.fraction_mapped_to_4 == 0) == (rule == "static_6")


def test_tensor_mode_recorded(models, tmp_path):
    out = tmp_path / "out"
    convert_checkpoint(models["llama_tied"], out, activation_global_scale="tensor", **CPU)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["activation_global_scale"] == "tensor"
    assert not any(k.endswith("input_scale") for k in read_all(out))


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory) -> Path:
    from assets import corpus_text

    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text(corpus_text("alice29.txt")[:20000])
    return p


@pytest.mark.parametrize("name", ["llama_tied", "qwen3_moe"])
def test_static_input_scale(models, tmp_path, calib_file, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vllm_fouroversix.convert.calibrate import _windows

    out = tmp_path / "out"
    convert_checkpoint(
        models[name], out, activation_global_scale="static", calibration_file=calib_file,
        calibration_samples=3, calibration_seq_len=32, **CPU,
    )
    assert verify_checkpoint(out) == []
    b = read_all(out)
    prefixes = [k[: -len(".weight_scale")] for k in b if k.endswith(".weight_scale")]
    for p in prefixes:
        v = b[p + ".input_scale"]
        assert v.dtype == torch.float32 and v.shape == () and math.isfinite(v.item()) and v.item() > 0
    for g in expected_groups(prefixes):
        assert len({b[p + ".input_scale"].item() for p in g}) == 1, g
    # Independent check on dense layers: forward pre-hooks, same windows, amax / (M*S).
    model = AutoModelForCausalLM.from_pretrained(models[name], dtype="auto")
    tok = AutoTokenizer.from_pretrained(models[name])
    seen: dict[str, float] = {}
    hooks = []
    for mod_name in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.o_proj"):
        def hook(_m, args, mod_name=mod_name):
            seen[mod_name] = max(seen.get(mod_name, 0.0), float(args[0].abs().max()))
        hooks.append(model.get_submodule(mod_name).register_forward_pre_hook(hook))
    with torch.no_grad():
        for ids in _windows(tok, calib_file.read_text(), 3, 32):
            model(input_ids=torch.tensor([ids]), use_cache=False)
    ms = nvfp4.rule_constants("mse").MS
    for mod_name, a in seen.items():
        got = b[mod_name + ".input_scale"].item()
        assert got == pytest.approx(a / ms, rel=1e-6), mod_name


def test_streaming_holds_few_tensors(models, tmp_path, monkeypatch):
    """Loaded input tensors are released as they are written: the live set stays a small
    window of units, never the model."""
    import weakref

    import vllm_fouroversix.convert.core as core

    live = {"bytes": 0, "peak": 0}
    real = core._load

    def tracking(*a, **k):
        t = real(*a, **k)
        n = t.numel() * t.element_size()
        live["bytes"] += n
        live["peak"] = max(live["peak"], live["bytes"])
        weakref.finalize(t, lambda: live.__setitem__("bytes", live["bytes"] - n))
        return t

    monkeypatch.setattr(core, "_load", tracking)
    monkeypatch.setattr(core, "_cpu_workers", lambda: 2)  # the window does not depend on the machine
    src = models["qwen3_moe"]
    s = convert_checkpoint(src, tmp_path / "out", **CPU)
    biggest = max(t.numel() * t.element_size() for t in read_all(src).values())
    window = 2 * 2 + 1
    assert live["peak"] <= window * biggest < s.bytes_before, (live, s.bytes_before)
    assert live["peak"] < s.bytes_before / 3, (live, s.bytes_before)

    # A byte budget smaller than any unit: one unit in flight plus the one being loaded.
    from vllm_fouroversix.convert.plan import make_plan
    from vllm_fouroversix.convert.source import open_source

    source = open_source(src)
    plan = make_plan(source, ignore=(), static_inputs=False)
    unit_bytes = [sum(source.tensors[n].nbytes for n in u.names) if u.kind == "copy"
                  else sum(plan.quantized[n].weight.nbytes for n in u.names) for u in plan.units]
    live["peak"] = 0
    monkeypatch.setattr(core, "_INFLIGHT_BYTES", 1)
    convert_checkpoint(src, tmp_path / "out2", **CPU)
    two_largest = sum(sorted(unit_bytes)[-2:])
    assert live["peak"] <= two_largest < s.bytes_before / 3, (live, unit_bytes)


def test_device_auto_and_errors():
    from vllm_fouroversix.convert.core import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConvertError, match="--device"):
        resolve_device("nonsense")


@pytest.mark.gpu
def test_gpu_output_identical_to_cpu(models, tmp_path):
    for name in ("qwen2_qkv_bias", "qwen3_moe"):
        cpu, gpu = tmp_path / f"{name}-cpu", tmp_path / f"{name}-gpu"
        convert_checkpoint(models[name], cpu, device="cpu", progress=False)
        convert_checkpoint(models[name], gpu, device="cuda", progress=False)
        a, b = read_all(cpu), read_all(gpu)
        assert a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a), name


def test_dry_run_writes_nothing(models, tmp_path):
    out = tmp_path / "out"
    before = dir_digest(models["mixtral"])
    s = convert_checkpoint(models["mixtral"], out, dry_run=True, **CPU)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert s.dry_run and len(s.quantized) == 32 and s.bytes_after > 0
    assert "would convert" in s.format()
    assert dir_digest(models["mixtral"]) == before


def test_input_never_modified_and_force(models, tmp_path):
    src = models["qwen2_qkv_bias"]
    before = dir_digest(src)
    out = tmp_path / "out"
    convert_checkpoint(src, out, **CPU)
    with pytest.raises(ConvertError, match="not empty.*--force"):
        convert_checkpoint(src, out, **CPU)
    (out / "stale.txt").write_text("old")
    convert_checkpoint(src, out, force=True, **CPU)
    assert not (out / "stale.txt").exists() and verify_checkpoint(out) == []
    assert dir_digest(src) == before
    with pytest.raises(ConvertError, match="overlaps INPUT"):
        convert_checkpoint(src, src, force=True, **CPU)
    with pytest.raises(ConvertError, match="overlaps INPUT"):
        convert_checkpoint(src, src / "sub", force=True, **CPU)
    assert dir_digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left


def test_interrupt_leaves_no_output(models, tmp_path, monkeypatch):
    import vllm_fouroversix.convert.core as core

    calls = {"n": 0}

    def flaky(real):
        def f(*a, **k):
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt
            return real(*a, **k)

        return f

    # Whichever quantizer the converter uses (the C one on CPU when built).
    monkeypatch.setattr(core.nvfp4, "quantize", flaky(nvfp4.quantize))
    monkeypatch.setattr(core.cpu_quantize, "quantize_cpu", flaky(core.cpu_quantize.quantize_cpu))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(models["llama_tied"], out, **CPU)
    assert list(tmp_path.iterdir()) == []


def test_hf_cache_model_id(models, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(models["llama_tied"], snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = convert_checkpoint("tiny-org/tiny-llama", tmp_path / "out", **CPU)
    assert len(s.quantized) == 14
    with pytest.raises(ConvertError, match="local Hugging Face cache"):
        convert_checkpoint("tiny-org/absent", tmp_path / "out2", **CPU)


# ---------------------------------------------------------------- CLI and errors


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [
        ("--weight-rule", "default: mse"), ("--activation-rule", "default: mse"),
        ("--activation-global-scale", "default: token"), ("--ignore", "lm_head"),
        ("--device", "default: auto"), ("--max-shard-size", "default: 5GB"), ("--force", "default"),
        ("--dry-run", "default"), ("--calibration-file", "default"), ("--calibration-samples", "default: 16"),
        ("--calibration-seq-len", "default: 256"), ("--verify", "default"), ("--debug", "default"),
    ]:
        assert flag in text and default in text, flag
    assert "verify CKPT" in text


def test_cli_convert_and_verify(models, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, models["llama_tied"], out, "--device", "cpu", "--quiet", "--verify")
    assert code == 0
    code, stdout, _ = run_cli(capsys, "verify", out)
    assert code == 0 and "OK" in stdout
    code, stdout, err = run_cli(capsys, models["llama_tied"], tmp_path / "dry", "--dry-run", "--device", "cpu")
    assert code == 0 and "layers quantized: 14" in stdout and not (tmp_path / "dry").exists()


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("converting")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_error_missing_input(capsys, tmp_path):
    code, _, err = run_cli(capsys, tmp_path / "nope", tmp_path / "out")
    _one_line_error(code, err, "nope", "does not exist")


def test_error_no_config(models, capsys, tmp_path):
    src = _copy_model(models["llama_tied"], tmp_path / "m")
    (src / "config.json").unlink()
    code, _, err = run_cli(capsys, src, tmp_path / "out")
    _one_line_error(code, err, "no config.json")


def test_error_pickle_only(models, capsys, tmp_path):
    src = _copy_model(models["llama_tied"], tmp_path / "m")
    (src / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(2)}, src / "pytorch_model.bin")
    code, _, err = run_cli(capsys, src, tmp_path / "out")
    _one_line_error(code, err, "pickle", "pytorch_model.bin")


def test_error_no_safetensors(models, capsys, tmp_path):
    src = _copy_model(models["llama_tied"], tmp_path / "m")
    (src / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, src, tmp_path / "out")
    _one_line_error(code, err, "no *.safetensors")


def test_error_already_quantized(models, capsys, tmp_path):
    out = tmp_path / "q"
    convert_checkpoint(models["llama_tied"], out, **CPU)
    code, _, err = run_cli(capsys, out, tmp_path / "out2")
    _one_line_error(code, err, "already quantized", "fouroversix")
    # Also when only the tensors tell (config.json without quantization_config).
    cfg = json.loads((out / "config.json").read_text())
    del cfg["quantization_config"]
    (out / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(capsys, out, tmp_path / "out3")
    _one_line_error(code, err, "already quantized", "weight_scale")


def _rewrite_tensor(src: Path, name: str, fn) -> None:
    t = read_all(src)
    t[name] = fn(t[name])
    save_file(t, src / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("name", ["model.layers.1.mlp.up_proj.weight", "model.norm.weight"])
def test_error_nan_names_tensor(models, capsys, tmp_path, name):
    src = _copy_model(models["llama_tied"], tmp_path / "m")

    def poison(t):
        t = t.clone()
        t.view(-1)[3] = float("nan") if "up" in name else float("inf")
        return t

    _rewrite_tensor(src, name, poison)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, src, out, "--device", "cpu", "--quiet")
    _one_line_error(code, err, name, "NaN or Inf")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no partial directory left


@pytest.mark.parametrize("dtype,label", [(torch.float64, "F64"), (torch.float8_e4m3fn, "F8_E4M3")])
def test_error_unsupported_dtype(models, capsys, tmp_path, dtype, label):
    src = _copy_model(models["llama_tied"], tmp_path / "m")
    _rewrite_tensor(src, "model.layers.0.mlp.down_proj.weight", lambda t: t.float().to(dtype))
    code, _, err = run_cli(capsys, src, tmp_path / "out")
    _one_line_error(code, err, "model.layers.0.mlp.down_proj.weight", label, "unsupported dtype")


def test_error_architecture_not_instantiable(models, capsys, tmp_path):
    src = _copy_model(models["llama_tied"], tmp_path / "m")
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "no_such_model"
    cfg["architectures"] = ["NoSuchModelForCausalLM"]
    (src / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(capsys, src, tmp_path / "out")
    _one_line_error(code, err, "NoSuchModelForCausalLM")


def test_error_flags(models, capsys, tmp_path):
    src = models["llama_tied"]
    code, _, err = run_cli(capsys, src, tmp_path / "o", "--activation-global-scale", "static")
    _one_line_error(code, err, "--calibration-file")
    code, _, err = run_cli(capsys, src, tmp_path / "o", "--max-shard-size", "lots")
    _one_line_error(code, err, "--max-shard-size")
    code, _, err = run_cli(capsys, src, tmp_path / "o", "--device", "cuda:7" if not torch.cuda.is_available() else "tpu")
    _one_line_error(code, err, "--device")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, _, err = run_cli(capsys, src, tmp_path / "full")
    _one_line_error(code, err, "--force")
    with pytest.raises(SystemExit):
        cli.main([str(src), str(tmp_path / "o"), "--weight-rule", "bogus"])


def test_debug_shows_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, tmp_path / "nope", tmp_path / "out", "--debug")
    assert code == 2 and "Traceback" in err


# ---------------------------------------------------------------- verify


def test_verify_finds_problems(models, tmp_path, capsys):
    out = tmp_path / "out"
    convert_checkpoint(models["llama_tied"], out, **CPU)
    t = read_all(out)
    t["model.layers.0.self_attn.k_proj.weight_scale_2"] = t["model.layers.0.self_attn.k_proj.weight_scale_2"] * 2
    t["model.layers.1.mlp.down_proj.weight_scale"] = t["model.layers.1.mlp.down_proj.weight_scale"][:, :2].contiguous()
    del t["model.layers.1.self_attn.o_proj.weight_scale_2"]
    t["model.layers.0.mlp.down_proj.weight_scale_2"] = torch.tensor(float("nan"))
    save_file(t, out / "model.safetensors", metadata={"format": "pt"})
    problems = verify_checkpoint(out)
    text = "\n".join(problems)
    assert "fused group model.layers.0.self_attn.qkv_proj: weight_scale_2 differ" in text
    assert "model.layers.1.mlp.down_proj.weight_scale must be float8_e4m3fn" in text
    assert "model.layers.1.self_attn.o_proj has no weight_scale_2" in text
    assert "model.layers.0.mlp.down_proj.weight_scale_2 = nan is not a finite positive scale" in text
    code, _, err = run_cli(capsys, "verify", out)
    assert code == 1 and "problem" in err and "weight_scale_2 differ" in err
    code, _, err = run_cli(capsys, "verify", models["llama_tied"])
    assert code == 1 and "no quantization_config" in err


def test_verify_static_and_index(models, tmp_path, calib_file):
    out = tmp_path / "out"
    convert_checkpoint(models["llama_tied"], out, max_shard_size="20KB", activation_global_scale="static",
                       calibration_file=calib_file, calibration_samples=2, calibration_seq_len=16, **CPU)
    assert verify_checkpoint(out) == []
    index_path = out / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = "model.layers.0.self_attn.q_proj.input_scale"
    del index["weight_map"][name]
    index_path.write_text(json.dumps(index))
    assert any(name in p and "missing from" in p for p in verify_checkpoint(out))


# ---------------------------------------------------------------- the real small model


@pytest.mark.slow
def test_real_model_smollm2(tmp_path):
    from assets import smollm2_bf16_dir

    src = smollm2_bf16_dir()
    out = tmp_path / "smollm2-4o6"
    s = convert_checkpoint(src, out, **CPU)
    assert s.architecture == "LlamaForCausalLM"
    assert len(s.quantized) == 30 * 7 and s.groups == 60 and s.kept == {}
    assert 0.05 < s.mean_weight_error < 0.15
    assert verify_checkpoint(out) == []
    a, b = {}, {}
    names = [f"model.layers.7.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]
    with safe_open(src / "model.safetensors", "pt") as h:
        for n in names:
            a[n] = h.get_tensor(n + ".weight")
        emb = h.get_tensor("model.embed_tokens.weight")
    with safe_open(out / "model.safetensors", "pt") as h:
        for n in names:
            b[n] = {k: h.get_tensor(f"{n}.{k}") for k in ("weight", "weight_scale", "weight_scale_2")}
        assert same_bits(h.get_tensor("model.embed_tokens.weight"), emb)
        assert "lm_head.weight" not in h.keys()
    amax = torch.stack([a[n].abs().max().float() for n in names]).max()
    for n in names:
        q = nvfp4.quantize(a[n], "mse", amax=amax)
        assert same_bits(b[n]["weight"], q.data) and same_bits(b[n]["weight_scale"], q.scales)
        assert b[n]["weight_scale_2"].item() == q.global_scale.item()
    assert (out / "chat_template.jinja").exists() and (out / "tokenizer.json").exists()
