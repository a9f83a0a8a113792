"""Shared pytest set-up: marker skips and paths.

- ``gpu``: needs a CUDA GPU; skipped cleanly without one (CI has none).
- ``vllm``: needs vLLM importable; skipped without it (the GPU machine has none).
- ``slow``: real-model or server tests; run by default, deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))  # tools/assets.py and friends

HAS_CUDA = torch.cuda.is_available()
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_vllm = pytest.mark.skip(reason="needs vLLM")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
        if "vllm" in item.keywords and not HAS_VLLM:
            item.add_marker(skip_vllm)
