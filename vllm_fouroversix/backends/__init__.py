"""Backend selection: one interface, chosen by device (no vLLM imports).

``select(device)`` returns the fastest available backend for ``device``:
``cutedsl`` on Blackwell (capability 10.x), ``triton`` on Ampere/Hopper
(8.x/9.x), ``reference`` elsewhere (CPU). ``VLLM_FOUROVERSIX_BACKEND`` forces
one by name.
"""

from __future__ import annotations

import logging
import os

import torch

from vllm_fouroversix.backends.base import ActivationQuant, Backend, QuantizedWeight

__all__ = ["ActivationQuant", "Backend", "QuantizedWeight", "select", "get_backend", "BACKEND_ENV"]

logger = logging.getLogger("vllm_fouroversix")
BACKEND_ENV = "VLLM_FOUROVERSIX_BACKEND"
_NAMES = ("reference", "triton", "cutedsl")


def get_backend(name: str) -> Backend:
    """Instantiate a backend by name (imports its kernels only when asked)."""
    if name == "reference":
        from vllm_fouroversix.backends.reference import ReferenceBackend

        return ReferenceBackend()
    if name == "triton":
        from vllm_fouroversix.backends.triton import TritonBackend

        return TritonBackend()
    if name == "cutedsl":
        from vllm_fouroversix.backends.cutedsl import CuteDSLBackend

        return CuteDSLBackend()
    raise ValueError(f"{BACKEND_ENV}={name!r} is not a backend; expected one of: {', '.join(_NAMES)}")


def _auto_name(device: torch.device) -> str:
    if device.type != "cuda":
        return "reference"
    major, _ = torch.cuda.get_device_capability(device)
    if major == 10:
        return "cutedsl"
    if major in (8, 9):
        return "triton"
    return "reference"


_logged: set[tuple[str, str]] = set()


def select(device: torch.device | str | None = None) -> Backend:
    """The backend for ``device`` (forced by ``VLLM_FOUROVERSIX_BACKEND``), logged once."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    forced = os.environ.get(BACKEND_ENV, "").strip()
    name = forced or _auto_name(device)
    backend = get_backend(name)
    if not backend.is_available(device):
        if forced:
            raise RuntimeError(f"{BACKEND_ENV}={forced} cannot run on {device}")
        logger.warning("fouroversix: backend %s unavailable on %s; using reference", name, device)
        backend = get_backend("reference")
    key = (backend.name, str(device))
    if key not in _logged:
        _logged.add(key)
        how = f"forced by {BACKEND_ENV}" if forced else "auto"
        logger.info("fouroversix: using the %s backend on %s (%s)", backend.name, device, how)
    return backend
