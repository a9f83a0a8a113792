"""``FourOverSixQuantConfig``: vLLM's QuantizationConfig for 4/6 NVFP4.

Two ways in:

- a checkpoint written by ``fouroversix-convert``: ``config.json`` carries the
  ``quantization_config`` of SPEC section 4 (``quant_method: "fouroversix"``);
  vLLM picks the method up from it with or without ``--quantization
  fouroversix`` and calls :meth:`from_config`, which validates it (unknown
  ``format_version``, a block size other than 16, unknown rules: a
  :class:`~vllm_fouroversix.checkpoint.CheckpointError` at start-up);
- ``--quantization fouroversix`` on an unquantized (bf16/fp16) checkpoint: vLLM
  finds no quantization config (:meth:`get_config_filenames` names none) and
  builds the config with no arguments: *online* quantization, where each linear
  layer loads its high-precision weight and quantizes it once after loading,
  exactly as the converter would (same rules, fused groups share one amax).
  ``VLLM_FOUROVERSIX_ONLINE_CONFIG`` may hold a JSON ``quantization_config``
  (e.g. ``{"weight_scale_rule": "static_6"}``) for the online rules.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from vllm.model_executor.layers.quantization.base_config import (
    QuantizationConfig,
    QuantizeMethodBase,
)

from vllm_fouroversix.checkpoint import QUANT_METHOD, CheckpointError, FourOverSixConfig
from vllm_fouroversix.nvfp4 import BLOCK_SIZE

ONLINE_CONFIG_ENV = "VLLM_FOUROVERSIX_ONLINE_CONFIG"

#: Leaf names of linears that vLLM models commonly fuse (its packed_modules_mapping);
#: used when a model did not declare its own mapping.
_DEFAULT_PACKED = {
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"],
}


def _matches(name: str, patterns: list[str]) -> str | None:
    # The converter's rule (vllm_fouroversix.convert.groups.matches), so both sides
    # agree on modules_to_not_convert: exact, dotted suffix, or shell glob.
    from vllm_fouroversix.convert.groups import matches

    return matches(name, patterns)


class FourOverSixQuantConfig(QuantizationConfig):
    """The ``fouroversix`` quantization method (SPEC section 4)."""

    def __init__(self, spec: FourOverSixConfig | None = None, *, online: bool | None = None) -> None:
        super().__init__()
        if spec is None:
            spec = _online_spec()
            online = True if online is None else online
        self.spec = spec
        self.online = bool(online)
        if self.online and spec.activation_global_scale == "static":
            raise CheckpointError(
                "fouroversix: online quantization (--quantization fouroversix on an unquantized "
                "checkpoint) cannot use activation_global_scale 'static': there is no calibrated "
                "input_scale. Convert with fouroversix-convert --activation-global-scale static."
            )
        self.modules_to_not_convert: list[str] = list(spec.modules_to_not_convert)
        # Start-up accounting, logged once every created layer is processed.
        self._created = 0
        self._processed = 0
        self._weight_bytes = 0
        self._weight_elems = 0
        self._backend_names: set[str] = set()

    # -- the QuantizationConfig contract ---------------------------------------

    @classmethod
    def get_name(cls) -> str:
        return QUANT_METHOD

    @classmethod
    def get_supported_act_dtypes(cls) -> list[torch.dtype]:
        return [torch.bfloat16, torch.float16, torch.float32]

    @classmethod
    def get_min_capability(cls) -> int:
        # The reference backend runs on any GPU vLLM supports; faster backends are
        # picked by capability at load time (vllm_fouroversix.backends.select).
        return 70

    @staticmethod
    def get_config_filenames() -> list[str]:
        # The config lives in config.json's quantization_config, which vLLM reads
        # itself; with no such entry, `--quantization fouroversix` means online.
        return []

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FourOverSixQuantConfig:
        if not isinstance(config, dict):
            raise CheckpointError(f"fouroversix: quantization_config must be a dict, got {type(config).__name__}")
        cfg = {k: v for k, v in config.items() if not k.startswith("_")}
        if "format_version" not in cfg:
            raise CheckpointError(
                "fouroversix: quantization_config has no format_version; is this checkpoint "
                "written by fouroversix-convert?"
            )
        try:
            spec = FourOverSixConfig.from_dict(cfg)
        except TypeError as e:  # a field of the wrong type
            raise CheckpointError(f"fouroversix: invalid quantization_config: {e}") from None
        except CheckpointError as e:
            raise CheckpointError(f"fouroversix: {e}") from None
        return cls(spec, online=False)

    @classmethod
    def override_quantization_method(cls, hf_quant_cfg, user_quant, hf_config=None):
        if isinstance(hf_quant_cfg, dict) and hf_quant_cfg.get("quant_method") == QUANT_METHOD:
            if user_quant not in (None, QUANT_METHOD):
                return None  # vLLM reports the mismatch
            return QUANT_METHOD
        return None

    def apply_vllm_mapper(self, hf_to_vllm_mapper) -> None:
        # Names in modules_to_not_convert are Hugging Face names; map the plain
        # (non-glob) ones to vLLM's module names as ModelOpt's config does.
        plain = [p for p in self.modules_to_not_convert if not any(c in p for c in "*?[")]
        globs = [p for p in self.modules_to_not_convert if p not in plain]
        try:
            mapped = hf_to_vllm_mapper.apply_list(plain)
        except Exception:  # noqa: BLE001 - a mapper that cannot map names leaves them as is
            mapped = plain
        self.modules_to_not_convert = list(dict.fromkeys([*plain, *mapped, *globs]))

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod

        if isinstance(layer, LinearBase):
            if self.is_excluded(prefix):
                return UnquantizedLinearMethod()
            k = int(getattr(layer, "input_size", 0))
            if k % BLOCK_SIZE != 0:
                # SPEC section 4: the converter keeps such layers in high precision.
                return UnquantizedLinearMethod()
            from vllm_fouroversix.vllm.linear import (
                FourOverSixLinearMethod,
                FourOverSixOnlineLinearMethod,
            )

            self._created += 1
            cls = FourOverSixOnlineLinearMethod if self.online else FourOverSixLinearMethod
            return cls(self, prefix)

        from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

        if isinstance(layer, ParallelLMHead) and not self.online and not self.is_excluded(prefix):
            raise CheckpointError(
                f"fouroversix: {prefix} is not in modules_to_not_convert, but the vLLM method serves "
                "the output head only in high precision; add it to modules_to_not_convert "
                "(fouroversix-convert always keeps lm_head)"
            )

        from vllm.model_executor.layers.fused_moe import RoutedExperts

        if isinstance(layer, RoutedExperts):
            if self.online or self._experts_excluded(prefix):
                return None  # vLLM's unquantized MoE method
            raise NotImplementedError(
                f"fouroversix: the MoE experts of {prefix} are quantized in this checkpoint, and the "
                "fouroversix vLLM method does not serve quantized MoE experts yet. Convert with "
                "--ignore '*.experts.*' to keep experts in high precision."
            )
        return None

    # -- helpers -------------------------------------------------------------

    def shard_names(self, prefix: str) -> list[str]:
        """Checkpoint module names behind vLLM layer ``prefix`` (one unless fused)."""
        parent, _, leaf = prefix.rpartition(".")
        mapping = self.packed_modules_mapping or _DEFAULT_PACKED
        members = mapping.get(leaf)
        if not members:
            return [prefix]
        return [f"{parent}.{m}" if parent else m for m in members]

    def is_excluded(self, prefix: str) -> bool:
        """Whether ``prefix`` (possibly a fused layer) stays in high precision."""
        if not self.modules_to_not_convert:
            return False
        names = self.shard_names(prefix)
        hits = [_matches(n, self.modules_to_not_convert) is not None for n in names]
        if prefix not in names:
            hits_fused = _matches(prefix, self.modules_to_not_convert) is not None
            if hits_fused:
                return True
        if all(hits):
            return True
        if any(hits):
            kept = [n for n, h in zip(names, hits) if h]
            raise CheckpointError(
                f"fouroversix: modules_to_not_convert keeps {kept} in high precision but not the "
                f"rest of the fused layer {prefix} ({names}); vLLM runs them as one GEMM, so they "
                "must be quantized (or kept) together"
            )
        return False

    def _experts_excluded(self, prefix: str) -> bool:
        leaves = ("gate_proj", "up_proj", "down_proj", "w1", "w2", "w3")
        names = [f"{prefix}.0.{leaf}" for leaf in leaves]
        return all(_matches(n, self.modules_to_not_convert) is not None for n in names) or (
            _matches(prefix, self.modules_to_not_convert) is not None
        )

    def layer_processed(self, backend: str, elems: int, nbytes: int) -> None:
        """Count a processed layer; log the weight memory once all are done."""
        self._processed += 1
        self._weight_elems += elems
        self._weight_bytes += nbytes
        self._backend_names.add(backend)
        if self._processed == self._created:
            from vllm_fouroversix.vllm import logger

            mib = self._weight_bytes / 2**20
            logger.info(
                "fouroversix: %d linear layers in 4/6 NVFP4 (%s, %s): %.1f MiB of weights "
                "for %.1fM parameters = %.4f bytes/weight (bf16: %.1f MiB); backend %s",
                self._processed,
                "quantized on load" if self.online else "from checkpoint",
                f"weights {self.spec.weight_scale_rule}, activations "
                f"{self.spec.activation_scale_rule}/{self.spec.activation_global_scale}",
                mib,
                self._weight_elems / 1e6,
                self._weight_bytes / max(self._weight_elems, 1),
                self._weight_elems * 2 / 2**20,
                ", ".join(sorted(self._backend_names)),
            )

    @property
    def weight_bytes(self) -> int:
        return self._weight_bytes


def _online_spec() -> FourOverSixConfig:
    raw = os.environ.get(ONLINE_CONFIG_ENV, "").strip()
    if not raw:
        return FourOverSixConfig()
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{ONLINE_CONFIG_ENV} is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{ONLINE_CONFIG_ENV} must be a JSON object")
    try:
        return FourOverSixConfig.from_dict(d)
    except TypeError as e:
        raise CheckpointError(f"{ONLINE_CONFIG_ENV}: {e}") from None
