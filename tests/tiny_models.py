"""Tiny, seeded, random Hugging Face models for tests (converter and vLLM method).

Every builder writes a complete model directory with ``save_pretrained`` (bf16
safetensors by default), a byte-level tokenizer (no network: built with
``tokenizers``), a chat template and a generation config, and returns the
directory. Same seed -> same bytes, so tests can compare runs.

Shapes are small (hidden 64, 2 layers) so conversion and a vLLM-CPU forward take
seconds. All K dimensions are multiples of 16 unless a test asks otherwise.

- :func:`llama_tied`: Llama with tied embeddings (``lm_head`` absent from the file).
- :func:`qwen2_qkv_bias`: Qwen2, whose q/k/v projections carry biases.
- :func:`qwen3_moe`: Qwen3-MoE (per-expert ``gate_proj``/``up_proj``/``down_proj``).
- :func:`mixtral`: Mixtral (per-expert ``w1``/``w3``/``w2`` under ``block_sparse_moe``).
- :func:`build`: any of the above by name, with config overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

VOCAB = 272  # 256 bytes + 16 specials; a multiple of 16 keeps every K quantizable
BOS, EOS, PAD = 256, 257, 258
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_COMMON: dict[str, Any] = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    bos_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
)


def _tokenizer():
    """A byte-level tokenizer: ids 0-255 are bytes, then <s>, </s>, <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_map = bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _save(model: torch.nn.Module, path: Path, dtype: torch.dtype) -> Path:
    from transformers import GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = model.to(dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, max_new_tokens=16
    )
    model.save_pretrained(path, safe_serialization=True)
    tok = _tokenizer()
    tok.save_pretrained(path)
    assert tok.convert_tokens_to_ids("</s>") == EOS, "special token ids moved"
    return path


def _make(config_cls: Callable, model_cls: Callable, seed: int, **cfg: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = config_cls(**cfg)
    model = model_cls(config)
    model.eval()
    return model


def llama_tied(path: Path, *, seed: int = 0, dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> Path:
    """Llama, 2 layers, hidden 64, tied input/output embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = {**_COMMON, "tie_word_embeddings": True, **overrides}
    return _save(_make(LlamaConfig, LlamaForCausalLM, seed, **cfg), path, dtype)


def qwen2_qkv_bias(path: Path, *, seed: int = 1, dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> Path:
    """Qwen2, 2 layers, hidden 64: q/k/v projections have biases, untied lm_head."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = {**_COMMON, "tie_word_embeddings": False, **overrides}
    cfg.pop("head_dim", None)  # Qwen2 derives it: 64 / 4 = 16
    return _save(_make(Qwen2Config, Qwen2ForCausalLM, seed, **cfg), path, dtype)


def qwen3_moe(path: Path, *, seed: int = 2, dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> Path:
    """Qwen3-MoE, 2 layers, 4 experts (top-2), expert intermediate 64."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    cfg = {
        **_COMMON,
        "tie_word_embeddings": False,
        "moe_intermediate_size": 64,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "decoder_sparse_step": 1,
        **overrides,
    }
    return _save(_make(Qwen3MoeConfig, Qwen3MoeForCausalLM, seed, **cfg), path, dtype)


def mixtral(path: Path, *, seed: int = 3, dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> Path:
    """Mixtral, 2 layers, 4 experts (top-2): checkpoint names ``experts.E.w1/w2/w3``."""
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = {
        **_COMMON,
        "tie_word_embeddings": False,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        **overrides,
    }
    return _save(_make(MixtralConfig, MixtralForCausalLM, seed, **cfg), path, dtype)


BUILDERS: dict[str, Callable[..., Path]] = {
    "llama_tied": llama_tied,
    "qwen2_qkv_bias": qwen2_qkv_bias,
    "qwen3_moe": qwen3_moe,
    "mixtral": mixtral,
}


def build(name: str, path: Path, **kwargs: Any) -> Path:
    """Build the tiny model ``name`` (a key of :data:`BUILDERS`) into ``path``."""
    return BUILDERS[name](path, **kwargs)
