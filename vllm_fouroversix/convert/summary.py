"""The end-of-run summary returned by ``convert_checkpoint`` and printed by the CLI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


@dataclass
class ConvertSummary:
    """What a conversion did (or, with ``dry_run``, would do)."""

    input: Path
    output: Path
    architecture: str
    dry_run: bool
    weight_rule: str
    activation_rule: str
    activation_global_scale: str
    quantized: list[str] = field(default_factory=list)  # linear prefixes
    kept: dict[str, str] = field(default_factory=dict)  # linear prefix -> reason
    groups: int = 0  # fused groups sharing one amax
    tensors_in: int = 0
    tensors_out: int = 0
    bytes_before: int = 0  # tensor bytes of the input checkpoint
    bytes_after: int = 0  # tensor bytes of the output checkpoint
    weight_errors: dict[str, float] = field(default_factory=dict)  # prefix -> ||Q(W)-W||/||W||
    blocks_nonzero: int = 0
    blocks_mapped_to_4: int = 0
    shards: list[str] = field(default_factory=list)
    copied_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verify_problems: list[str] = field(default_factory=list)

    @property
    def mean_weight_error(self) -> float:
        """Mean over quantized layers of the relative Frobenius error (0.0 when none)."""
        e = self.weight_errors
        return sum(e.values()) / len(e) if e else 0.0

    @property
    def fraction_mapped_to_4(self) -> float:
        """Share of non-zero weight blocks that 4/6 scaled to 4 (0.0 for static rules)."""
        return self.blocks_mapped_to_4 / self.blocks_nonzero if self.blocks_nonzero else 0.0

    def format(self) -> str:
        """A human-readable report, a few lines long."""
        head = "would convert" if self.dry_run else "converted"
        lines = [
            f"fouroversix-convert: {head} {self.input} -> {self.output} ({self.architecture})",
            f"  rules: weights {self.weight_rule}, activations {self.activation_rule} "
            f"({self.activation_global_scale} global scale)",
            f"  layers quantized: {len(self.quantized)} ({self.groups} fused groups share one amax)",
            f"  layers kept in high precision: {len(self.kept)}",
        ]
        reasons = Counter(_reason_kind(r) for r in self.kept.values())
        for reason, n in reasons.most_common():
            example = next(p for p, r in self.kept.items() if _reason_kind(r) == reason)
            lines.append(f"    {n} x {reason} (e.g. {example})")
        ratio = self.bytes_after / self.bytes_before if self.bytes_before else 0.0
        lines.append(
            f"  tensor bytes: {human_bytes(self.bytes_before)} -> {human_bytes(self.bytes_after)} "
            f"({ratio:.1%}) in {len(self.shards)} shard(s), {self.tensors_in} -> {self.tensors_out} tensors"
        )
        if not self.dry_run:
            lines.append(
                f"  mean relative weight error: {self.mean_weight_error:.4f}; "
                f"blocks mapped to 4: {self.fraction_mapped_to_4:.1%}"
            )
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        for p in self.verify_problems:
            lines.append(f"  verify: {p}")
        lines.append(f"  time: {self.seconds:.1f} s")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    # Group "ignored (lm_head)" and "ignored (mlp.down_proj)" by their pattern; other
    # reasons name a tensor, so group them by their leading words.
    if reason.startswith("ignored"):
        return reason
    if reason.startswith("tied to"):
        return "tied weights"
    if reason.startswith("fused with"):
        return "fused with a kept layer"
    if reason.startswith("K="):
        return "K not a multiple of 16"
    return reason
