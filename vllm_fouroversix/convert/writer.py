"""Streaming sharded safetensors writer and the atomic output directory.

The plan knows every output tensor's name, dtype and shape before any data is
read, so each shard's safetensors header is written first and tensor bytes are
appended as they are produced: memory never holds more than the tensor being
written, whatever the shard size. The file format is the public safetensors
layout (8-byte little-endian header length, JSON header padded to 8 bytes,
then the raw little-endian data in header order); tests read the result back
with ``safetensors.safe_open``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch

from vllm_fouroversix.convert.errors import ConvertError
from vllm_fouroversix.convert.plan import OutSpec
from vllm_fouroversix.convert.source import INDEX_NAME, TORCH_TO_ST

DEFAULT_MAX_SHARD_SIZE = "5GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: int | str) -> int:
    """``5GB``, ``500MB``, ``2GiB`` or a byte count -> bytes."""
    if isinstance(size, int):
        n = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        if not m or m.group(2).upper() not in _UNITS:
            raise ConvertError(f"--max-shard-size {size!r} is not a size like 5GB, 500MB or 2GiB")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise ConvertError(f"--max-shard-size must be positive, got {size!r}")
    return n


def assign_shards(specs: list[OutSpec], max_shard_size: int) -> list[list[OutSpec]]:
    """Greedy, in order: a new shard starts when the next tensor would overflow this one."""
    shards: list[list[OutSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def shard_names(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _header(specs: list[OutSpec]) -> bytes:
    hdr: dict[str, object] = {"__metadata__": {"format": "pt"}}
    off = 0
    for s in specs:
        hdr[s.name] = {"dtype": TORCH_TO_ST[s.dtype], "shape": list(s.shape), "data_offsets": [off, off + s.nbytes]}
        off += s.nbytes
    raw = json.dumps(hdr, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, like safetensors' own writer
    return len(raw).to_bytes(8, "little") + raw


class ShardedWriter:
    """Writes tensors in the planned order into shards of at most ``max_shard_size`` bytes."""

    def __init__(self, directory: Path, specs: list[OutSpec], max_shard_size: int) -> None:
        self.dir = Path(directory)
        self.shards = assign_shards(specs, max_shard_size)
        self.names = shard_names(len(self.shards))
        self._order: Iterator[tuple[int, OutSpec]] = (
            (i, s) for i, shard in enumerate(self.shards) for s in shard
        )
        self._file: BinaryIO | None = None
        self._shard = -1
        self.bytes_written = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        try:
            shard, spec = next(self._order)
        except StopIteration:
            raise RuntimeError(f"writer: unplanned tensor {name}") from None
        t = tensor.detach()
        if (spec.name, spec.dtype, tuple(spec.shape)) != (name, t.dtype, tuple(t.shape)):
            raise RuntimeError(
                f"writer: expected {spec.name} {spec.dtype} {spec.shape}, got {name} {t.dtype} {tuple(t.shape)}"
            )
        if shard != self._shard:
            self._close_file()
            self._shard = shard
            self._file = open(self.dir / self.names[shard], "wb")  # noqa: SIM115 - closed in _close_file
            self._file.write(_header(self.shards[shard]))
        if t.numel():
            data = t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
            assert self._file is not None
            self._file.write(memoryview(data))
        self.bytes_written += spec.nbytes

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> list[str]:
        """Finish: check every planned tensor came, write the index when sharded."""
        self._close_file()
        left = next(self._order, None)
        if left is not None:
            raise RuntimeError(f"writer: tensor {left[1].name} was planned but never written")
        if len(self.shards) > 1:
            index = {
                "metadata": {"total_size": sum(s.nbytes for sh in self.shards for s in sh)},
                "weight_map": {s.name: self.names[i] for i, sh in enumerate(self.shards) for s in sh},
            }
            (self.dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return list(self.names)

    def abort(self) -> None:
        self._close_file()


def check_output(output: Path, source_root: Path, *, force: bool) -> None:
    """Refuse an OUTPUT that would touch INPUT, or a non-empty one without ``force``."""
    out = output.resolve()
    src = source_root.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ConvertError(f"OUTPUT {output} overlaps INPUT {source_root}; the input is never modified")
    if out.exists() and not force:
        if out.is_file() or any(out.iterdir()):
            raise ConvertError(f"OUTPUT {output} exists and is not empty; pass --force to replace it")


@contextmanager
def atomic_output_dir(output: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``output``; rename it into place only on success.

    On any error (Ctrl-C included) the temporary directory is removed, so an
    OUTPUT that exists is always complete. An existing OUTPUT (``--force``) is
    moved aside first and deleted after the rename.
    """
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = output.parent / f".{output.name}.partial-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if output.exists() or output.is_symlink():
            old = output.parent / f".{output.name}.old-{tag}"
            os.rename(output, old)
        os.rename(tmp, output)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
