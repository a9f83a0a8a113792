"""Launching compiled Triton (and Gluon) kernels without Triton's per-call Python.

``kernel[grid](*args, **kw)`` runs Triton's ``JITFunction.run`` on every call: it binds
the arguments to the signature, specializes each one, formats the options into a cache
key string, looks the compiled kernel up, checks the globals the kernel read, and then
calls the C launcher. Outside CUDA graphs (``--enforce-eager``, batches above the
captured sizes, large prefill chunks) that Python is a large part of a linear's host
time, which at small M is many times the kernels' GPU time (docs/hopper.md, "Host time a
call"). :class:`FastKernel` keeps, for each specialization of the arguments, the compiled
kernel's C launcher and calls it directly:

- the key is the current device, Triton's own specialization of every positional argument
  (``native_specialize_impl``: dtype and 16-byte alignment of a tensor; type, 16-divisibility
  and ``== 1`` of an integer; a tensor descriptor's block and layout) and the keyword
  arguments (constexprs and launch options), so a hit launches exactly the kernel Triton
  itself would pick;
- a miss, a profiler's launch hook, the interpreter, a grid function, or an argument that
  cannot be keyed (a runtime argument passed by keyword, an unhashable constexpr) go
  through Triton's normal launch;
- on by default for the Triton versions it was checked with (``_VERIFIED_TRITON``);
  ``VLLM_FOUROVERSIX_FAST_LAUNCH=0`` turns it off, ``=1`` on for any Triton.

What it skips: Triton's check that the module globals a kernel read at compile time are
unchanged (this package's kernels read constants only) and its async-compile futures.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from vllm_fouroversix.kernels.device import INTERPRET

__all__ = ["FastKernel", "fast_launch_enabled"]

# The launcher call below follows Triton's internals (CompiledKernel.run's C launcher and its
# argument order), checked on these versions; others launch through Triton unless forced on.
_VERIFIED_TRITON = ("3.6",)
# Keys kept a kernel; past this the kernel launches through Triton (no unbounded growth
# with, e.g., many distinct shapes whose integers specialize differently).
_MAX_ENTRIES = 1024

try:
    import triton
    from triton import knobs as _knobs
    from triton._C.libtriton import native_specialize_impl as _spec
    from triton.backends.compiler import BaseBackend as _Backend
except Exception:  # noqa: BLE001 - an older/newer Triton: launch through Triton only
    _spec = None


def _enabled_from_env() -> bool:
    """``VLLM_FOUROVERSIX_FAST_LAUNCH``: 0 off, 1 on, unset/auto on for the verified Triton versions."""
    v = os.environ.get("VLLM_FOUROVERSIX_FAST_LAUNCH", "auto").strip().lower()
    if v in ("0", "false", "off", "no"):
        return False
    if _spec is None:
        return False
    if v in ("1", "true", "on", "yes"):
        return True
    return any(triton.__version__.startswith(t + ".") or triton.__version__ == t for t in _VERIFIED_TRITON)


_ENABLED = _enabled_from_env()


def _hooked(hook: Any) -> bool:
    """A launch hook is set: Triton 3.6 keeps an empty ``HookChain`` by default (no hook)."""
    return hook is not None and bool(getattr(hook, "calls", True))


def fast_launch_enabled() -> bool:
    """Whether :class:`FastKernel` launches cached kernels directly in this process."""
    return _ENABLED and not INTERPRET


class FastKernel:
    """A ``@triton.jit`` / ``@gluon.jit`` function launched as ``FastKernel(fn)[grid](...)``,
    with the same arguments as ``fn[grid](...)``: runtime arguments positional, constexprs
    and launch options (``num_warps``, ``launch_pdl``, ...) by keyword."""

    __slots__ = ("fn", "_cache", "_names", "_defaults", "_constexpr", "_full")

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self._cache: dict = {}
        self._full = False
        params = getattr(fn, "params", None)
        if params is None:  # an interpreted function: no fast path
            self._names = ()
            self._defaults = {}
            self._constexpr = frozenset()
            return
        self._names = tuple(p.name for p in params)
        self._defaults = {p.name: p._param.default for p in params}
        self._constexpr = frozenset(p.name for p in params if p.is_constexpr)

    def __getitem__(self, grid: tuple) -> Callable[..., None]:
        return lambda *args, **kwargs: self.launch(grid, args, kwargs)

    def launch(self, grid: tuple, args: tuple, kwargs: dict) -> None:
        if not _ENABLED or INTERPRET or not self._names or callable(grid):
            self.fn[grid](*args, **kwargs)
            return
        if _hooked(_knobs.runtime.launch_enter_hook) or _hooked(_knobs.runtime.launch_exit_hook):
            self.fn[grid](*args, **kwargs)  # a profiler wants Triton's launch metadata
            return
        dev = torch.cuda.current_device()
        try:
            key = (dev, tuple([_spec(_Backend, a, False, True, True) for a in args]), tuple(kwargs.items()))
            entry = self._cache.get(key)
        except (TypeError, ValueError, OverflowError):  # an argument Triton cannot specialize, or an
            self.fn[grid](*args, **kwargs)  # unhashable keyword value: Triton's launch (and its error)
            return
        if entry is None:
            kernel = self.fn[grid](*args, **kwargs)
            self._remember(key, kernel, args, kwargs)
            return
        launch, head, tail = entry
        n = len(grid)
        launch(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1,
               torch._C._cuda_getCurrentRawStream(dev), *head, *args, *tail)

    def _remember(self, key: tuple, kernel: Any, args: tuple, kwargs: dict) -> None:
        """After Triton launched ``kernel`` for ``key``: keep its launcher and the values of the
        parameters after the positional ones (constexprs and defaults, the same on every hit)."""
        if self._full or kernel is None or hasattr(kernel, "result"):
            return
        names = self._names[len(args):]
        if any(k in self._names and k not in self._constexpr for k in kwargs):
            return  # a runtime argument by keyword would be frozen into the tail: never cache it
        if len(self._cache) >= _MAX_ENTRIES:
            self._full = True
            return
        tail = tuple(kwargs[n] if n in kwargs else self._defaults[n] for n in names)
        run = kernel.run  # Triton's CudaLauncher (the kernel's handles are loaded: it just ran)
        if getattr(run, "global_scratch_size", 1) or getattr(run, "profile_scratch_size", 1):
            # scratch memory is allocated a launch by the launcher's Python: keep it
            head = (kernel.function, kernel.packed_metadata, None, None, None)
            self._cache[key] = (run, head, tail)
        else:
            # its C entry point, past the Python that would pass no scratch: (function,
            # cooperative grid, PDL, global and profile scratch, metadata, launch metadata, hooks)
            head = (kernel.function, run.launch_cooperative_grid, run.launch_pdl, None, None,
                    kernel.packed_metadata, None, None, None)
            self._cache[key] = (run.launch, head, tail)
