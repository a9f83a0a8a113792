"""The 4/6 NVFP4 GEMM as a PyTorch custom op: ``torch.ops.fouroversix.linear``.

vLLM compiles the model with ``torch.compile`` (Dynamo + Inductor) unless
``--enforce-eager``; the backends are Python code with host-side checks and,
on GPU, their own kernels, so the GEMM is one opaque custom op with a fake
(meta) implementation that only states the output shape. This module imports
only torch and our backends (no vLLM), so the op and its fake implementation
can be tested without vLLM (``torch.library.opcheck``, ``torch.compile``).

Schema (every argument a tensor or a primitive, so compiled graphs and their
on-disk caches stay valid across processes)::

    fouroversix::linear(Tensor x, Tensor weight, Tensor weight_scale,
                        Tensor weight_global_scale, Tensor? bias,
                        Tensor? input_amax, int n, int k, bool scales_swizzled,
                        str act_rule, str act_mode, str backend) -> Tensor

``weight``/``weight_scale``/``weight_global_scale`` are the fields of a
:class:`~vllm_fouroversix.backends.QuantizedWeight` as the backend laid it out;
backend-private state (``QuantizedWeight.extra``) is looked up by the weight
tensor's address, registered by :func:`register_weight`.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from vllm_fouroversix.backends import ActivationQuant, Backend, QuantizedWeight, get_backend

__all__ = ["OP_NAMESPACE", "register_op", "linear", "register_weight", "backend_instance"]

OP_NAMESPACE = "fouroversix"
_SCHEMA = (
    "linear(Tensor x, Tensor weight, Tensor weight_scale, Tensor weight_global_scale, "
    "Tensor? bias, Tensor? input_amax, int n, int k, bool scales_swizzled, "
    "str act_rule, str act_mode, str backend) -> Tensor"
)

_lock = threading.Lock()
_lib: torch.library.Library | None = None
_BACKENDS: dict[str, Backend] = {}
_ACTS: dict[tuple[str, str], ActivationQuant] = {}
#: backend-private ``QuantizedWeight.extra`` by ``weight.data_ptr()``.
_EXTRA: dict[int, Any] = {}


def backend_instance(name: str, instance: Backend | None = None) -> Backend:
    """The process-wide instance of backend ``name`` (``instance`` installs one)."""
    if instance is not None:
        _BACKENDS[name] = instance
        return instance
    be = _BACKENDS.get(name)
    if be is None:
        be = _BACKENDS[name] = get_backend(name)
    return be


def register_weight(w: QuantizedWeight) -> None:
    """Remember ``w.extra`` (backend-private state) for calls with ``w.data``."""
    if w.extra is not None:
        _EXTRA[w.data.data_ptr()] = w.extra


def _act(rule: str, mode: str) -> ActivationQuant:
    a = _ACTS.get((rule, mode))
    if a is None:
        a = _ACTS[(rule, mode)] = ActivationQuant(rule=rule, mode=mode)
    return a


def _linear_impl(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    input_amax: torch.Tensor | None,
    n: int,
    k: int,
    scales_swizzled: bool,
    act_rule: str,
    act_mode: str,
    backend: str,
) -> torch.Tensor:
    w = QuantizedWeight(
        data=weight,
        scales=weight_scale,
        global_scale=weight_global_scale,
        n=n,
        k=k,
        scales_swizzled=scales_swizzled,
        extra=_EXTRA.get(weight.data_ptr()) if _EXTRA else None,
    )
    out = backend_instance(backend).linear(x, w, bias, _act(act_rule, act_mode), input_amax)
    return out


def _linear_fake(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_global_scale: torch.Tensor,
    bias: torch.Tensor | None,
    input_amax: torch.Tensor | None,
    n: int,
    k: int,
    scales_swizzled: bool,
    act_rule: str,
    act_mode: str,
    backend: str,
) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], n))


def register_op() -> None:
    """Define ``torch.ops.fouroversix.linear`` once per process (idempotent).

    The implementation is registered for the CPU and CUDA dispatch keys
    directly (no ``torch.library.custom_op`` wrapper: it costs tens of
    microseconds a call), with a fake implementation for tracing.
    """
    global _lib
    if _lib is not None:
        return
    with _lock:
        if _lib is not None:
            return
        if hasattr(getattr(torch.ops, OP_NAMESPACE), "linear"):
            # Defined by another copy of this module (e.g. a reload): keep that one.
            _lib = torch.library.Library(OP_NAMESPACE, "FRAGMENT")
            return
        lib = torch.library.Library(OP_NAMESPACE, "FRAGMENT")
        lib.define(_SCHEMA)
        for key in ("CPU", "CUDA"):
            lib.impl("linear", _linear_impl, key)
        lib._register_fake("linear", _linear_fake)
        _lib = lib


def linear(
    x: torch.Tensor,
    w: QuantizedWeight,
    bias: torch.Tensor | None,
    act: ActivationQuant,
    backend: str,
    input_amax: torch.Tensor | None = None,
) -> torch.Tensor:
    """Call the op for ``w`` (registers the op on first use)."""
    register_op()
    return torch.ops.fouroversix.linear(
        x,
        w.data,
        w.scales,
        w.global_scale,
        bias,
        input_amax,
        w.n,
        w.k,
        w.scales_swizzled,
        str(act.rule.value),
        act.mode,
        backend,
    )
