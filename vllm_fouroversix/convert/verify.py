"""``fouroversix-convert verify CKPT``: check a checkpoint against SPEC section 4.

Returns a list of problems (empty when the checkpoint conforms). Reads headers
for names, dtypes and shapes, and loads only the scale tensors (1/8 of the
weight bytes at most) to check they are finite and positive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.checkpoint import (
    INPUT_SCALE,
    WEIGHT,
    WEIGHT_SCALE,
    WEIGHT_SCALE_2,
    CheckpointError,
    FourOverSixConfig,
)
from vllm_fouroversix.convert.groups import DEFAULT_IGNORE, group_id, matches
from vllm_fouroversix.convert.source import INDEX_NAME, ST_DTYPES, SUPPORTED_FLOATS

_E4M3_NAN = 0x7F  # e4m3fn: S.1111.111 is NaN, there is no Inf


def verify_checkpoint(path: str | os.PathLike) -> list[str]:
    """Problems of the checkpoint at ``path`` against SPEC section 4 ([] when none)."""
    from safetensors import safe_open

    root = Path(path)
    problems: list[str] = []
    if not root.is_dir():
        return [f"{root} is not a directory"]
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        return [f"{root} has no config.json"]
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as e:
        return [f"config.json is not valid JSON: {e}"]
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        return ["config.json has no quantization_config"]
    try:
        qcfg = FourOverSixConfig.from_dict(qc)
        if qc.get("quant_method") != "fouroversix":
            problems.append(f"quantization_config.quant_method is {qc.get('quant_method')!r}, not 'fouroversix'")
    except (CheckpointError, TypeError) as e:
        return [f"quantization_config: {e}"]
    static = qcfg.activation_global_scale == "static"
    not_convert = list(qcfg.modules_to_not_convert)
    if not all(isinstance(p, str) for p in not_convert):
        problems.append("quantization_config.modules_to_not_convert holds a non-string")
        not_convert = [p for p in not_convert if isinstance(p, str)]
    for d in DEFAULT_IGNORE:
        if d not in not_convert:
            problems.append(f"quantization_config.modules_to_not_convert lacks {d!r}")

    # Files and the index.
    index = root / INDEX_NAME
    files: dict[str, list[str]] = {}
    weight_map: dict[str, str] | None = None
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            return problems + [f"{INDEX_NAME} is not a valid index: {e}"]
        shard_files = sorted(set(weight_map.values()))
    else:
        shard_files = sorted(p.name for p in root.glob("*.safetensors"))
        if len(shard_files) > 1:
            problems.append(f"{len(shard_files)} safetensors files but no {INDEX_NAME}")
    if not shard_files:
        return problems + ["no safetensors files"]

    info: dict[str, tuple[str, torch.dtype | None, tuple[int, ...]]] = {}  # name -> (file, dtype, shape)
    for fname in shard_files:
        f = root / fname
        if not f.is_file():
            problems.append(f"{INDEX_NAME} names {fname}, which is missing")
            continue
        try:
            with safe_open(f, "pt") as h:
                names = list(h.keys())
                for n in names:
                    sl = h.get_slice(n)
                    if n in info:
                        problems.append(f"tensor {n} is in both {info[n][0]} and {fname}")
                    info[n] = (fname, ST_DTYPES.get(sl.get_dtype()), tuple(sl.get_shape()))
        except Exception as e:  # noqa: BLE001
            problems.append(f"{fname} is not a readable safetensors file: {e}")
            continue
        files[fname] = names
    if weight_map is not None:
        for n, fname in weight_map.items():
            if n not in info:
                problems.append(f"{INDEX_NAME} lists {n} in {fname}, which does not hold it")
            elif info[n][0] != fname:
                problems.append(f"{INDEX_NAME} puts {n} in {fname} but it is in {info[n][0]}")
        for n in info:
            if n not in weight_map:
                problems.append(f"tensor {n} is missing from {INDEX_NAME}")

    def load(name: str) -> torch.Tensor:
        with safe_open(root / info[name][0], "pt") as h:
            return h.get_tensor(name)

    # Every quantized linear: names, dtypes, shapes, finite positive scales.
    prefixes = sorted(n[: -len(WEIGHT_SCALE) - 1] for n in info if n.endswith("." + WEIGHT_SCALE))
    scale2: dict[str, float] = {}
    for p in prefixes:
        w, s, s2, ins = (f"{p}.{x}" for x in (WEIGHT, WEIGHT_SCALE, WEIGHT_SCALE_2, INPUT_SCALE))
        if matches(p, not_convert):
            problems.append(f"{p} is quantized but modules_to_not_convert selects it ({matches(p, not_convert)})")
        if w not in info:
            problems.append(f"{s} has no {w}")
            continue
        _, wd, wshape = info[w]
        _, sd, sshape = info[s]
        if wd != torch.uint8 or len(wshape) != 2:
            problems.append(f"{w} must be uint8 [N, K/2], is {wd} {list(wshape)}")
            continue
        n, k = wshape[0], wshape[1] * 2
        if k % nvfp4.BLOCK_SIZE:
            problems.append(f"{w}: K={k} is not a multiple of {nvfp4.BLOCK_SIZE}")
        if sd != torch.float8_e4m3fn or sshape != (n, k // nvfp4.BLOCK_SIZE):
            problems.append(f"{s} must be float8_e4m3fn {[n, k // nvfp4.BLOCK_SIZE]}, is {sd} {list(sshape)}")
            continue
        raw = load(s).view(torch.uint8)
        if bool(((raw & 0x7F) == _E4M3_NAN).any()):
            problems.append(f"{s} holds NaN block scales")
        elif bool(((raw & 0x80) != 0).any()):
            problems.append(f"{s} holds negative block scales")
        all_zero = not bool(raw.any())
        if s2 not in info:
            problems.append(f"{p} has no {WEIGHT_SCALE_2}")
        elif info[s2][1] != torch.float32 or info[s2][2] not in ((), (1,)):
            problems.append(f"{s2} must be float32 [], is {info[s2][1]} {list(info[s2][2])}")
        else:
            g = float(load(s2).reshape(()))
            scale2[p] = g
            if not (torch.isfinite(torch.tensor(g)) and (g > 0 or (g == 0 and all_zero))):
                problems.append(f"{s2} = {g} is not a finite positive scale")
        if static:
            if ins not in info:
                problems.append(f"{p} has no {INPUT_SCALE} (activation_global_scale is static)")
            elif info[ins][1] != torch.float32 or info[ins][2] not in ((), (1,)):
                problems.append(f"{ins} must be float32 [], is {info[ins][1]} {list(info[ins][2])}")
            else:
                v = float(load(ins).reshape(()))
                if not (torch.isfinite(torch.tensor(v)) and v > 0):
                    problems.append(f"{ins} = {v} is not a finite positive scale")
        elif ins in info:
            problems.append(f"{ins} present but activation_global_scale is {qcfg.activation_global_scale!r}")

    quantized = set(prefixes)
    for name, (fname, dt, shape) in info.items():
        if dt is None:
            problems.append(f"{name} in {fname} has a dtype safetensors does not map to torch")
            continue
        base, _, leaf = name.rpartition(".")
        if leaf in (WEIGHT_SCALE_2, INPUT_SCALE) and base not in quantized:
            problems.append(f"{name} belongs to no quantized linear (no {base}.{WEIGHT_SCALE})")
        if leaf == WEIGHT and base not in quantized:
            if dt == torch.uint8:
                problems.append(f"{name} is uint8 but has no {WEIGHT_SCALE}")
            elif dt.is_floating_point and dt not in SUPPORTED_FLOATS:
                problems.append(f"{name} has dtype {dt}; unquantized tensors keep bf16/fp16/fp32")

    # Fused groups: every member quantized (or none), one global scale.
    groups: dict[str, list[str]] = {}
    for name in info:
        if name.endswith("." + WEIGHT):
            p = name[: -len(WEIGHT) - 1]
            gid = group_id(p)
            if gid is not None:
                groups.setdefault(gid, []).append(p)
    for gid, ps in sorted(groups.items()):
        if len(ps) < 2:
            continue
        q = [p for p in ps if p in quantized]
        if q and len(q) != len(ps):
            problems.append(f"fused group {gid}: {q[0]} is quantized but {sorted(set(ps) - set(q))[0]} is not")
        vals = {scale2[p] for p in q if p in scale2}
        if len(vals) > 1:
            problems.append(
                f"fused group {gid}: weight_scale_2 differ ({', '.join(f'{p}={scale2[p]:.6g}' for p in sorted(q))})"
            )
    if not prefixes:
        problems.append("no quantized linear (no *.weight_scale tensor)")
    return problems
