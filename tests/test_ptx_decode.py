"""The GEMM kernels' E2M1-decode and scale PTX, run on CPU by an emulator (tests/ptx_emu.py)
against nvfp4's values: the exact strings the GPU runs, every byte value in every position."""

from __future__ import annotations

import os
import random

import pytest
import torch

if not torch.cuda.is_available():
    # As test_triton.py: the kernel modules imported below must see it first (triton.jit reads it
    # at import), or test_triton's interpreted kernels, collected after this file, would not run.
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")

import ptx_emu  # noqa: E402
from vllm_fouroversix import nvfp4  # noqa: E402
from vllm_fouroversix.kernels import gluon_wgmma as gwg  # noqa: E402
from vllm_fouroversix.kernels import triton_gemm as tg  # noqa: E402

_E4M3 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().tolist()


def _words(n_random: int = 400) -> list[int]:
    rng = random.Random(0)
    words = [rng.getrandbits(32) for _ in range(n_random)]
    for pos in range(4):  # every byte value in every position
        words += [(rng.getrandbits(32) & ~(0xFF << 8 * pos)) | (b << 8 * pos) for b in range(256)]
    return words


def _code_value(code: int) -> float:
    v = nvfp4.E2M1_VALUES[code & 7]
    return -v if code & 8 else v


def _check(got_bits: int, want: float, where) -> None:
    got = ptx_emu.bf16_value(got_bits)
    # -0.0 for the negative zero code: compare the signs too
    assert got == want and str(got)[0] == str(want)[0], (where, got, want)


def _multiplier(scale_byte: int) -> int:
    """_SCALE_PTX on one scale byte: the bf16x2 (s * 2^118, s * 2^118)."""
    return ptx_emu.run(tg._SCALE_PTX, {"$1": scale_byte, "$2": 0x4040})["$0"]


def test_scale_ptx_every_e4m3():
    for b in range(127):  # 0x7F is NaN in E4M3 (never a block scale)
        m = _multiplier(b)
        for h in range(2):
            assert ptx_emu.bf16_value(m >> 16 * h) == _E4M3[b] * 2.0 ** 118, b


@pytest.mark.parametrize("variant", ["unscaled", "scaled_one", "scaled_pairs"])
def test_decode_ptx(variant):
    # Step i of the decode: bytes (0, 1) (steps 0, 2) or (2, 3) (steps 1, 3), low nibbles in
    # steps 0-1, high nibbles in steps 2-3; each bf16x2 holds the first byte's value low.
    rng = random.Random(1)
    ptx = {"unscaled": tg._DECODE_PTX, "scaled_one": tg._DECODE_SCALED_PTX,
           "scaled_pairs": tg._DECODE_SCALED_ASM.value}[variant]
    for w in _words():
        sb = [rng.randrange(127) for _ in range(4)]
        if variant == "scaled_one":
            sb = [sb[0]] * 4  # one block: one multiplier for the four bytes
        regs = ptx_emu.run(ptx, {"$4": w, **{f"${5 + j}": _multiplier(sb[j]) for j in range(4)}})
        for i in range(4):
            for h in range(2):
                byte = (i % 2) * 2 + h
                code = (w >> (8 * byte + (4 if i >= 2 else 0))) & 15
                want = _code_value(code)
                if variant != "unscaled":
                    want *= _E4M3[sb[byte]] * 2.0 ** -8
                _check(regs[f"${i}"] >> (16 * h), want, (variant, hex(w), i, h))


def test_wgmma_pair_decode_ptx():
    # $i = (low nibble, high nibble) of byte i, times byte i's multiplier: q * s * 2^-8.
    rng = random.Random(2)
    ptx = gwg._pair_decode_asm()
    for w in _words():
        sb = [rng.randrange(127) for _ in range(4)]
        regs = ptx_emu.run(ptx, {"$4": w, **{f"${5 + j}": _multiplier(sb[j]) for j in range(4)}})
        for i in range(4):
            for h in range(2):
                code = (w >> (8 * i + 4 * h)) & 15
                _check(regs[f"${i}"] >> (16 * h), _code_value(code) * _E4M3[sb[i]] * 2.0 ** -8, (hex(w), i, h))


def test_sm80_ptx_uses_only_sm80_instructions():
    """The decode and scale PTX of the kernels that run on capability 8.x (the GEMV, the tc tiles,
    the Gluon mma kernel) may use only instructions sm_80 has: ``mul.bf16x2`` needs sm_90 (found by
    tools/compile_triton.py), ``fma.bf16x2`` is sm_80's. The hardware E4M3 conversions (sm_89) are
    chosen only where ``e4m3_cvt_supported``; the wgmma kernel's decode is sm_90-only anyway."""
    sm80 = {"prmt.b32", "and.b32", "mul.lo.u32", "fma.rn.bf16x2", "shl.b32", "mov.b32"}
    for name in ("_DECODE_PTX", "_DECODE_SCALED_PTX", "_SCALE_PTX", "_DECODE_SCALED_ASM", "_DECODE_F32_ASM"):
        text = getattr(tg, name)
        text = getattr(text, "value", text)  # the *_ASM are tl.constexpr-wrapped strings
        ops = {ln.split()[0] for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "{}."}
        assert ops <= sm80, (name, ops - sm80)
