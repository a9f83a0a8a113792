"""A bit-exact emulator of the few PTX instructions in the GEMM kernels' inline asm.

The E2M1 decode and the scale multiplier are PTX strings (``triton_gemm._decode_asm``,
``_SCALE_PTX``, ``gluon_wgmma._pair_decode_asm``) that only a GPU runs; this lets CI run
the very same strings on CPU, one b32 at a time, and compare them with ``nvfp4``'s values.
Supported: ``mov``/``and``/``shl``/``shr``/``prmt`` (default mode)/``lop3`` on b32,
``mul.lo.u32``, and ``fma.rn``/``mul.rn`` on bf16x2 (the products here must be exact:
anything else raises).
"""

from __future__ import annotations

import math
import struct

_M32 = 0xFFFFFFFF


def bf16_value(bits: int) -> float:
    """The float value of a bf16 bit pattern (16 bits)."""
    return struct.unpack("<f", struct.pack("<I", (bits & 0xFFFF) << 16))[0]


def _bf16_bits(x: float) -> int:
    f32 = struct.unpack("<I", struct.pack("<f", x))[0]
    if struct.unpack("<f", struct.pack("<I", f32))[0] != x or f32 & 0xFFFF:
        raise ArithmeticError(f"{x!r} is not exactly a bf16")
    return f32 >> 16


def _prmt(a: int, b: int, c: int) -> int:
    src = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        sel = (c >> (4 * i)) & 0xF
        byte = src[sel & 7]
        if sel & 8:  # sign mode: the selected byte's top bit, replicated
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def _lop3(a: int, b: int, c: int, lut: int) -> int:
    out = 0
    for bit in range(32):
        idx = (((a >> bit) & 1) << 2) | (((b >> bit) & 1) << 1) | ((c >> bit) & 1)
        out |= ((lut >> idx) & 1) << bit
    return out


def _bf16x2(a: int, b: int, c: int | None) -> int:
    out = 0
    for h in range(2):
        x, y = bf16_value(a >> (16 * h)), bf16_value(b >> (16 * h))
        r = x * y  # exact in float64 for bf16 inputs
        if c is not None:
            z = bf16_value(c >> (16 * h))
            # IEEE: x * y + z, with (+0) + (-0) = +0 and (-0) + (-0) = -0
            r = r + z if r != 0 or z != 0 else (r if math.copysign(1, r) == math.copysign(1, z) else 0.0)
        out |= _bf16_bits(r) << (16 * h)
    return out


def run(ptx: str, inputs: dict[str, int]) -> dict[str, int]:
    """Run ``ptx`` (one ``{ ... }`` block) on the b32 operands ``inputs`` ("$4": ...);
    returns every register by name ("$0", ...)."""
    regs = dict(inputs)

    def val(tok: str) -> int:
        return regs[tok] if tok in regs else int(tok, 0) & _M32

    for line in ptx.strip().splitlines():
        line = line.strip().rstrip(";")
        if not line or line in "{}" or line.startswith(".reg"):
            continue
        op, rest = line.split(None, 1)
        dst, *srcs = [t.strip() for t in rest.split(",")]
        v = [val(t) for t in srcs]
        if op == "mov.b32":
            r = v[0]
        elif op == "and.b32":
            r = v[0] & v[1]
        elif op == "shl.b32":
            r = (v[0] << v[1]) & _M32
        elif op == "shr.b32":
            r = v[0] >> v[1]
        elif op == "prmt.b32":
            r = _prmt(*v)
        elif op == "lop3.b32":
            r = _lop3(*v)
        elif op == "mul.lo.u32":
            r = (v[0] * v[1]) & _M32
        elif op == "fma.rn.bf16x2":
            r = _bf16x2(v[0], v[1], v[2])
        elif op == "mul.rn.bf16x2":
            r = _bf16x2(v[0], v[1], None)
        else:
            raise NotImplementedError(op)
        regs[dst] = r
    return regs
