"""What the Triton kernels ask of the device: interpreter or GPU, SM count, optional features.

Nothing here imports vLLM.
"""

from __future__ import annotations

import os

import torch

__all__ = ["INTERPRET", "e4m3_cvt_supported", "num_sms", "pdl_launch", "pdl_supported", "tma_supported"]

#: ``TRITON_INTERPRET=1``: kernels run on CPU tensors through Triton's interpreter (CI).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

_NUM_SMS: dict[int, int] = {}


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (132, an H100's, off CUDA: tile choices only)."""
    if device.type != "cuda":
        return 132
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _NUM_SMS:
        _NUM_SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _NUM_SMS[idx]


def e4m3_cvt_supported(device: torch.device) -> bool:
    """The hardware FP32/F16 <-> E4M3 conversions (``cvt ... e4m3x2``): CUDA sm_89+ (Ada, Hopper),
    not under the interpreter."""
    return device.type == "cuda" and not INTERPRET and torch.cuda.get_device_capability(device) >= (8, 9)


def pdl_supported(device: torch.device) -> bool:
    """Programmatic dependent launch (``griddepcontrol``): CUDA sm_90+, not under the interpreter."""
    return device.type == "cuda" and not INTERPRET and torch.cuda.get_device_capability(device)[0] >= 9


def pdl_launch(on: bool, flag: str = "PDL", **extra) -> dict:
    """Launch arguments of a programmatic dependent launch where ``on`` (the caller has checked
    :func:`pdl_supported`): ``launch_pdl`` with the kernel's constexpr ``flag`` that makes it wait
    for the kernel before it (``griddepcontrol.wait``), and ``extra`` options that apply only then."""
    return {flag: True, "launch_pdl": True, **extra} if on else {}


def tma_supported(device: torch.device) -> bool:
    """Host-side TMA descriptors and wgmma: CUDA sm_90+, a Triton with ``TensorDescriptor``, no interpreter."""
    if device.type != "cuda" or INTERPRET or torch.cuda.get_device_capability(device)[0] < 9:
        return False
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401  (Triton >= 3.4)
    except ImportError:
        return False
    return True
