"""What the Triton kernels ask of the device: interpreter or GPU, SM count, optional features.

Nothing here imports vLLM.
"""

from __future__ import annotations

import os

import torch

__all__ = ["INTERPRET", "capability", "e4m3_cvt_supported", "num_sms", "pdl_launch", "pdl_supported", "tma_supported"]

#: ``TRITON_INTERPRET=1``: kernels run on CPU tensors through Triton's interpreter (CI).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Per CUDA device index: (SM count, compute capability). torch's property lookups cost
# microseconds a call, and every linear asks several times on its launch path.
_PROPS: dict[int, tuple[int, tuple[int, int]]] = {}


def _props(device: torch.device) -> tuple[int, tuple[int, int]]:
    idx = device.index if device.index is not None else torch.cuda.current_device()
    p = _PROPS.get(idx)
    if p is None:
        prop = torch.cuda.get_device_properties(idx)
        p = _PROPS[idx] = (prop.multi_processor_count, (prop.major, prop.minor))
    return p


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (132, an H100's, off CUDA: tile choices only)."""
    return _props(device)[0] if device.type == "cuda" else 132


def capability(device: torch.device) -> tuple[int, int]:
    """The compute capability of a CUDA ``device`` ((0, 0) for any other device), cached."""
    return _props(device)[1] if device.type == "cuda" else (0, 0)


def e4m3_cvt_supported(device: torch.device) -> bool:
    """The hardware FP32/F16 <-> E4M3 conversions (``cvt ... e4m3x2``): CUDA sm_89+ (Ada, Hopper),
    not under the interpreter."""
    return not INTERPRET and capability(device) >= (8, 9)


def pdl_supported(device: torch.device) -> bool:
    """Programmatic dependent launch (``griddepcontrol``): CUDA sm_90+, not under the interpreter."""
    return not INTERPRET and capability(device)[0] >= 9


def pdl_launch(on: bool, flag: str = "PDL", **extra) -> dict:
    """Launch arguments of a programmatic dependent launch where ``on`` (the caller has checked
    :func:`pdl_supported`): ``launch_pdl`` with the kernel's constexpr ``flag`` that makes it wait
    for the kernel before it (``griddepcontrol.wait``), and ``extra`` options that apply only then."""
    return {flag: True, "launch_pdl": True, **extra} if on else {}


def tma_supported(device: torch.device) -> bool:
    """Host-side TMA descriptors and wgmma: CUDA sm_90+, a Triton with ``TensorDescriptor``, no interpreter."""
    if INTERPRET or capability(device)[0] < 9:
        return False
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401  (Triton >= 3.4)
    except ImportError:
        return False
    return True
