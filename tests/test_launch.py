"""kernels.launch: when the fast launch path is on, and what counts as a launch hook.

The fast path itself (a cached kernel launched through Triton's C launcher, bit for bit the
same outputs as Triton's own launch, on the current stream and in CUDA graphs) needs a GPU:
``tests/test_triton.py::test_fast_launch_gpu``. Without one, every launch goes through
Triton's interpreter, and these check the switch that decides.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # As test_triton.py: kernels.device reads it at import, and test_triton's interpreted
    # kernels, collected after this file, need it set first.
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")

from vllm_fouroversix.kernels import launch  # noqa: E402
from vllm_fouroversix.kernels.device import INTERPRET  # noqa: E402


@pytest.mark.parametrize(
    "env, version, want",
    [
        ("0", "3.6.0", False),
        ("off", "3.6.0", False),
        ("auto", "3.6.0", True),
        (None, "3.6.1", True),  # unset: auto
        ("auto", "3.7.0", False),  # not checked with this Triton's internals
        ("auto", "3.60.0", False),
        ("1", "3.7.0", True),  # forced on
    ],
)
def test_env_switch(monkeypatch, env, version, want):
    if launch._spec is None:
        pytest.skip("this Triton has no native_specialize_impl: the fast path is always off")
    if env is None:
        monkeypatch.delenv("VLLM_FOUROVERSIX_FAST_LAUNCH", raising=False)
    else:
        monkeypatch.setenv("VLLM_FOUROVERSIX_FAST_LAUNCH", env)
    monkeypatch.setattr(launch.triton, "__version__", version)
    assert launch._enabled_from_env() is want


def test_hooked():
    from triton.knobs import HookChain

    chain = HookChain()
    assert not launch._hooked(None)
    assert not launch._hooked(chain)  # Triton 3.6's default: an empty chain
    chain.add(lambda *a: None)
    assert launch._hooked(chain)
    assert launch._hooked(lambda *a: None)  # a plain hook (older Triton)


@pytest.mark.skipif(not INTERPRET, reason="only where kernels run under TRITON_INTERPRET (no GPU)")
def test_interpreter_launches_through_triton():
    # Under the interpreter (CI) every kernel runs through Triton: the fast path is off, and a
    # FastKernel of an interpreted function has no signature to key on.
    from vllm_fouroversix.kernels import triton_quantize as tq

    assert not launch.fast_launch_enabled()
    assert tq._QUANTIZE._names == ()
    x = torch.randn(2, 32)
    q = tq.quantize_triton(x, "mse")  # launched through FastKernel -> Triton's interpreter
    from vllm_fouroversix import nvfp4

    assert torch.equal(q.data, nvfp4.quantize(x, "mse", per_row=True).data)
