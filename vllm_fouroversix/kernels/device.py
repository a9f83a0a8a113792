"""What the Triton kernels ask of the device: interpreter or GPU, SM count, optional features.

Nothing here imports vLLM.
"""

from __future__ import annotations

import os

import torch

__all__ = ["INTERPRET", "e4m3_cvt_supported", "num_sms", "pdl_supported", "resident_programs", "tma_supported"]

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


def tma_supported(device: torch.device) -> bool:
    """Host-side TMA descriptors and wgmma: CUDA sm_90+, a Triton with ``TensorDescriptor``, no interpreter."""
    if device.type != "cuda" or INTERPRET or torch.cuda.get_device_capability(device)[0] < 9:
        return False
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401  (Triton >= 3.4)
    except ImportError:
        return False
    return True


def resident_programs(kernel, num_warps: int, device: torch.device) -> int:
    """How many programs of a compiled Triton ``kernel`` (``num_warps`` warps each) the GPU
    runs at once: its SMs times the programs an SM holds, limited by registers (allocated
    8 a thread at a time), warps, shared memory and the 32-program cap."""
    props = torch.cuda.get_device_properties(device)
    regs = max(8, -(-int(kernel.n_regs) // 8) * 8)
    by_regs = getattr(props, "regs_per_multiprocessor", 65536) // (regs * 32 * num_warps)
    by_warps = getattr(props, "max_threads_per_multi_processor", 2048) // (32 * num_warps)
    smem = int(getattr(kernel.metadata, "shared", 0) or 0)
    smem_sm = getattr(props, "shared_memory_per_multiprocessor", 233472)
    by_smem = smem_sm // (smem + 1024) if smem else 32  # 1 KB a program reserved by the driver
    return num_sms(device) * max(1, min(by_regs, by_warps, by_smem, 32))
