"""Reading the input checkpoint: resolve the directory, its config and tensor headers.

Only safetensors headers are read here (names, dtypes, shapes): nothing is
loaded, so planning a 100 GB model costs milliseconds. Pickle checkpoints are
refused, never unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vllm_fouroversix.convert.errors import ConvertError

#: safetensors dtype strings -> torch dtypes (every dtype safetensors can hold).
ST_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "U16": torch.uint16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
TORCH_TO_ST = {v: k for k, v in ST_DTYPES.items()}

#: Floating dtypes the converter accepts as input (SPEC section 2 input types).
SUPPORTED_FLOATS = (torch.bfloat16, torch.float16, torch.float32)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".h5", ".msgpack", ".onnx", *PICKLE_SUFFIXES)
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    """Header facts about one input tensor."""

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass
class Source:
    """A resolved input checkpoint."""

    root: Path
    config: dict
    files: list[Path]  # safetensors shards, in reading order
    tensors: dict[str, TensorInfo]  # in file order, then header order

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


def resolve_input(model: str | os.PathLike) -> Path:
    """A local model directory, or a model id already in the local HF cache (no network)."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p.resolve()
    if p.exists():
        raise ConvertError(f"INPUT {model} is a file; give the model directory that holds config.json")
    s = str(model)
    if s.count("/") == 1 and not s.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(s, local_files_only=True)).resolve()
        except Exception:  # noqa: BLE001 - any failure means "not in the cache"
            pass
        raise ConvertError(
            f"INPUT {model} is neither a local directory nor a model in the local Hugging Face "
            "cache (this tool never downloads)"
        )
    raise ConvertError(f"INPUT {model} does not exist")


def read_config(root: Path) -> dict:
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise ConvertError(f"INPUT {root} has no config.json (not a Hugging Face model directory)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ConvertError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConvertError(f"{cfg_path} does not hold a JSON object")
    return cfg


def _shard_files(root: Path) -> list[Path]:
    index = root / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise ConvertError(f"{index} is not a valid safetensors index: {e}") from None
        files: list[Path] = []
        for fname in weight_map.values():
            f = root / fname
            if f not in files:
                files.append(f)
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConvertError(f"{index} names {missing[0]}, which is missing from {root}")
        return files
    return sorted(root.glob("*.safetensors"))


def open_source(model: str | os.PathLike) -> Source:
    """Resolve INPUT, read config.json and every safetensors header; refuse what we cannot convert."""
    from safetensors import safe_open

    root = resolve_input(model)
    config = read_config(root)
    qc = config.get("quantization_config")
    if qc:
        method = qc.get("quant_method", "?") if isinstance(qc, dict) else "?"
        raise ConvertError(
            f"INPUT {root} is already quantized (config.json quantization_config.quant_method="
            f"{method!r}); convert the original bf16/fp16/fp32 checkpoint instead"
        )
    files = _shard_files(root)
    if not files:
        pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ConvertError(
                f"INPUT {root} has only pickle checkpoints ({pickles[0]}); this tool reads "
                "safetensors only (re-save with save_pretrained(..., safe_serialization=True))"
            )
        raise ConvertError(f"INPUT {root} has no *.safetensors files")
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        try:
            with safe_open(f, "pt") as h:
                for name in h.keys():
                    sl = h.get_slice(name)
                    st = sl.get_dtype()
                    if st not in ST_DTYPES:
                        raise ConvertError(f"{f.name}: tensor {name} has unsupported dtype {st}")
                    tensors[name] = TensorInfo(name, f, ST_DTYPES[st], tuple(sl.get_shape()))
        except ConvertError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ConvertError(f"cannot read safetensors file {f}: {e}") from None
    for name, t in tensors.items():
        if name.endswith(("weight_scale", "weight_scale_2", "input_scale", "weight_packed")):
            raise ConvertError(
                f"INPUT {root} looks already quantized (tensor {name}); convert the original checkpoint"
            )
        if t.dtype.is_floating_point and t.dtype not in SUPPORTED_FLOATS:
            raise ConvertError(
                f"tensor {name} in {t.file.name} has unsupported dtype {TORCH_TO_ST[t.dtype]}; "
                "the converter reads bf16, fp16 or fp32 checkpoints"
            )
    return Source(root=root, config=config, files=files, tensors=tensors)
