"""What to quantize: walk the model's architecture (instantiated on the meta device).

A checkpoint tensor ``P.weight`` is quantized when transformers loads it into
an ``nn.Linear`` weight, or into one expert's slice of a fused MoE experts
parameter (transformers 5 keeps experts as 3-D parameters and converts the
per-expert checkpoint tensors on load; we ask its own conversion mapping which
checkpoint key lands where, so no name guessing). Everything else is copied bit
for bit. The plan also fixes the exact output tensor list (names, dtypes,
shapes) before any data is read, which lets the writer stream every shard.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch

from vllm_fouroversix import nvfp4
from vllm_fouroversix.checkpoint import INPUT_SCALE, WEIGHT, WEIGHT_SCALE, WEIGHT_SCALE_2
from vllm_fouroversix.convert.errors import ConvertError
from vllm_fouroversix.convert.groups import DEFAULT_IGNORE, group_id, matches, member_rank
from vllm_fouroversix.convert.source import Source, TensorInfo


@dataclass(frozen=True)
class OutSpec:
    """One output tensor, known before any data is read."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * self.dtype.itemsize


@dataclass
class Linear:
    """A linear weight of the checkpoint (checkpoint naming: ``prefix + ".weight"``)."""

    prefix: str
    weight: TensorInfo
    module: str  # the transformers module or 3-D parameter it loads into
    expert: int | None = None  # expert index when ``module`` is a fused experts parameter


@dataclass
class Unit:
    """One step of the conversion: copy a tensor, or quantize a fused group (or one linear)."""

    kind: str  # "copy" or "quant"
    names: list[str]  # copy: [tensor name]; quant: linear prefixes, one shared amax
    outputs: list[OutSpec]


@dataclass
class Plan:
    source: Source
    architecture: str
    static_inputs: bool
    quantized: dict[str, Linear] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # linear prefix -> why it stays high precision
    groups: dict[str, list[str]] = field(default_factory=dict)  # fused group id -> prefixes (>= 2)
    units: list[Unit] = field(default_factory=list)
    modules_to_not_convert: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> list[OutSpec]:
        return [o for u in self.units for o in u.outputs]


def quantized_outputs(prefix: str, n: int, k: int, static_inputs: bool) -> list[OutSpec]:
    """The SPEC section 4 tensors of one quantized linear [N, K]."""
    out = [
        OutSpec(f"{prefix}.{WEIGHT}", torch.uint8, (n, k // 2)),
        OutSpec(f"{prefix}.{WEIGHT_SCALE}", torch.float8_e4m3fn, (n, k // nvfp4.BLOCK_SIZE)),
        OutSpec(f"{prefix}.{WEIGHT_SCALE_2}", torch.float32, ()),
    ]
    if static_inputs:
        out.append(OutSpec(f"{prefix}.{INPUT_SCALE}", torch.float32, ()))
    return out


def build_meta_model(source: Source) -> torch.nn.Module:
    """Instantiate the architecture of ``config.json`` with no memory (meta device)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    archs = source.config.get("architectures") or [source.config.get("model_type", "?")]
    try:
        config = AutoConfig.from_pretrained(source.root)
    except Exception as e:  # noqa: BLE001
        raise ConvertError(
            f"transformers cannot read the config of architecture {archs[0]} in {source.root}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    candidates = []
    cls = getattr(transformers, archs[0], None) if isinstance(archs[0], str) else None
    if cls is not None and hasattr(cls, "_from_config"):
        candidates.append(cls._from_config)
    candidates += [AutoModelForCausalLM.from_config, AutoModel.from_config]
    first_err: Exception | None = None
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        for make in candidates:
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return make(config)
            except Exception as e:  # noqa: BLE001 - try the next way of building it
                first_err = first_err or e
    finally:
        transformers.logging.set_verbosity(verbosity)
    msg = str(first_err).splitlines()[0] if first_err and str(first_err) else type(first_err).__name__
    raise ConvertError(f"transformers cannot instantiate architecture {archs[0]}: {msg}")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", r"(\d+)"))


def make_plan(
    source: Source,
    *,
    ignore: tuple[str, ...] | list[str] = (),
    static_inputs: bool = False,
) -> Plan:
    """Decide, for every tensor of ``source``, whether it is quantized (and with which group)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    model = build_meta_model(source)
    arch = type(model).__name__
    plan = Plan(source=source, architecture=arch, static_inputs=static_inputs)
    patterns = list(dict.fromkeys([*DEFAULT_IGNORE, *ignore]))

    try:
        conversions = get_model_conversion_mapping(model)
    except Exception:  # noqa: BLE001 - no mapping means checkpoint names == module names
        conversions = []
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    meta_sd = model.state_dict()
    modules = dict(model.named_modules())
    linear_modules = {n for n, m in modules.items() if isinstance(m, torch.nn.Linear)}
    tied = dict(getattr(model, "all_tied_weights_keys", None) or {})
    tied_keys = set(tied) | set(tied.values())

    # 1. Which checkpoint tensors are linear weights, per the architecture.
    candidates: dict[str, Linear] = {}
    for name, t in source.tensors.items():
        if not name.endswith("." + WEIGHT) or len(t.shape) != 2:
            continue
        prefix = name[: -len(WEIGHT) - 1]
        try:
            model_key, conv_pattern = rename_source_key(
                name, renamings, converters, model.base_model_prefix, meta_sd
            )
        except Exception:  # noqa: BLE001
            model_key, conv_pattern = name, None
        mod = model_key[: -len(WEIGHT) - 1] if model_key.endswith("." + WEIGHT) else None
        if mod in linear_modules:
            lin = Linear(prefix, t, mod)
            if model_key in tied_keys:
                other = tied.get(model_key) or next(k for k, v in tied.items() if v == model_key)
                plan.kept[prefix] = f"tied to {other}"
                continue
            candidates[prefix] = lin
        elif conv_pattern is not None and getattr(meta_sd.get(model_key), "dim", lambda: 0)() == 3:
            # One expert's slice of a fused experts parameter [E, N, K]: a linear per expert.
            m = _pattern_regex(conv_pattern).search(name)
            expert = int(m.group(1)) if m and m.groups() else None
            candidates[prefix] = Linear(prefix, t, model_key, expert)
        elif mod is not None and not isinstance(modules.get(mod), torch.nn.Embedding) and mod in modules:
            # A 2-D weight of a module that is not a Linear in transformers (MoE routers):
            # kept, and listed so that a loader that builds it as a linear keeps it unquantized.
            plan.kept[prefix] = f"not an nn.Linear in transformers ({type(modules[mod]).__name__})"

    # 2. Ignore patterns and shapes.
    for prefix, lin in candidates.items():
        pat = matches(prefix, patterns) or matches(lin.module, patterns)
        if pat is not None:
            plan.kept[prefix] = f"ignored ({pat})"
        elif lin.weight.shape[1] % nvfp4.BLOCK_SIZE != 0:
            k = lin.weight.shape[1]
            plan.kept[prefix] = f"K={k} is not a multiple of {nvfp4.BLOCK_SIZE}"
            plan.warnings.append(
                f"{prefix}: K={k} is not a multiple of {nvfp4.BLOCK_SIZE}; kept in {lin.weight.dtype}"
            )

    # 3. Fused groups: all members quantized with one amax, or all kept.
    members: dict[str, list[str]] = {}
    for prefix in candidates:
        gid = group_id(prefix)
        if gid is not None:
            members.setdefault(gid, []).append(prefix)
    for gid, prefixes in members.items():
        if len(prefixes) < 2:
            continue
        kept = [p for p in prefixes if p in plan.kept]
        if kept and len(kept) < len(prefixes):
            for p in prefixes:
                if p not in plan.kept:
                    plan.kept[p] = f"fused with {kept[0]} ({plan.kept[kept[0]]})"
                    plan.warnings.append(
                        f"{p}: kept in high precision because its fused partner {kept[0]} is "
                        f"({plan.kept[kept[0]]}); vLLM fuses them into {gid.rpartition('.')[2]}"
                    )
        if not kept:
            plan.groups[gid] = sorted(prefixes, key=member_rank)  # q, k, v order like vLLM
    plan.quantized = {p: lin for p, lin in candidates.items() if p not in plan.kept}

    # 4. The ordered work list and its exact outputs.
    prefix_group = {p: gid for gid, ps in plan.groups.items() for p in ps}
    done: set[str] = set()
    for name, t in source.tensors.items():
        prefix = name[: -len(WEIGHT) - 1] if name.endswith("." + WEIGHT) else None
        if prefix is not None and prefix in plan.quantized:
            if prefix in done:
                continue
            gid = prefix_group.get(prefix)
            names = plan.groups[gid] if gid else [prefix]
            outs: list[OutSpec] = []
            for p in names:
                n, k = plan.quantized[p].weight.shape
                outs += quantized_outputs(p, n, k, static_inputs)
                done.add(p)
            plan.units.append(Unit("quant", list(names), outs))
        else:
            plan.units.append(Unit("copy", [name], [OutSpec(name, t.dtype, t.shape)]))

    extra = [p for p in plan.kept if matches(p, patterns) is None]
    plan.modules_to_not_convert = patterns + extra
    return plan
