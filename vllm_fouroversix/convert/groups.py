"""Fused groups and ignore patterns, shared by the planner and ``verify``.

vLLM fuses some sibling linears into one GEMM (its ``packed_modules_mapping``):
q/k/v -> ``qkv_proj``, gate/up -> ``gate_up_proj``, and per-expert w1/w3 (or
gate_proj/up_proj) -> ``w13`` in its FusedMoE. A fused GEMM has one weight
global scale, so SPEC section 4 quantizes each group with one shared amax. This
module only knows names; *which* modules are linears comes from the model's
architecture (see ``plan.py``). Deliberately import-light (no torch).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

#: fused name -> member leaf names, following vLLM's ``packed_modules_mapping``
#: conventions (dense and per-expert MoE: an expert is a module ``...experts.E``
#: whose children are the members, so the same table serves both).
FUSED_GROUPS: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
    "w13": ("w1", "w3"),  # Mixtral experts; InternLM2-style dense MLPs use the same names
    "fused_qkv_a_proj": ("q_a_proj", "kv_a_proj_with_mqa"),  # DeepSeek MLA
}

_LEAF_TO_FUSED = {leaf: fused for fused, leaves in FUSED_GROUPS.items() for leaf in leaves}

#: Always kept in high precision (SPEC section 4 default).
DEFAULT_IGNORE: tuple[str, ...] = ("lm_head",)


def group_id(prefix: str) -> str | None:
    """The fused group of linear ``prefix`` ("a.b.q_proj" -> "a.b.qkv_proj"), or None."""
    parent, _, leaf = prefix.rpartition(".")
    fused = _LEAF_TO_FUSED.get(leaf)
    if fused is None:
        return None
    return f"{parent}.{fused}" if parent else fused


def member_rank(prefix: str) -> int:
    """Position of ``prefix``'s leaf inside its fused group (q=0, k=1, v=2; gate=0, up=1)."""
    fused = _LEAF_TO_FUSED.get(prefix.rpartition(".")[2])
    return FUSED_GROUPS[fused].index(prefix.rpartition(".")[2]) if fused else 0


def matches(name: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that selects module ``name``, or None.

    A pattern selects a module when it equals the full dotted name, equals a
    dotted suffix of it ("mlp.down_proj" selects "model.layers.3.mlp.down_proj",
    "lm_head" selects "lm_head"), or is a shell glob matching the full name
    ("model.layers.0.*", "*.experts.*"). vLLM-side code should use this same
    function so both sides agree on ``modules_to_not_convert``.
    """
    for pat in patterns:
        if name == pat or name.endswith("." + pat):
            return pat
        if any(ch in pat for ch in "*?[") and fnmatch.fnmatchcase(name, pat):
            return pat
    return None
