"""The per-block 4/6 quantizer of SPEC section 2, written once for two executors.

``quantize_block`` is plain Python over 16 values with every primitive taken
from an ``ops`` object:

- :class:`TorchOps` runs it on torch tensors (each "value" is a tensor over many
  blocks). The tests check it bit for bit against ``vllm_fouroversix.nvfp4``.
- ``cutlass_kernels.quantize.DslOps`` runs the same source inside the CuTe DSL
  kernel, where each value is a ``cutlass.Float32`` and the primitives are
  hardware instructions (``cvt.rn.satfinite.e4m3x2.f32``,
  ``cvt.rn.satfinite.e2m1x2.f32``).

So the kernel's operation order is, by construction, the order tested here; what
the CPU cannot test is only that each DSL primitive does what its PTX
instruction is documented to do.

Operation order (FP32 throughout):

    row:    enc = (M*S) / amax;  dec = 1 / enc;  (amax == 0: enc = 0)
    block:  bmax = max|x_i|
            s_hp = (bmax / M) * enc;  map-to-4 candidate: s_hp = s_hp * 1.5
            s = e4m3(s_hp)                                  RNE, saturating at 448
            y_i = |x_i| * (1 / (dec * float(s)))  (0 when s == 0)
            q_i = e2m1(y_i)                                 RNE, saturating at 6
            deq_i = ((q_i * float(s)) * amax) / 1536
            err = sum_i (deq_i - |x_i|)^2 | sum_i |deq_i - |x_i|| | max_i |...|
                  (sums in the order sum_{j<8} (t_j + t_{j+8}), left to right)
            map-to-4 wins only if err4 < err6 (strict)
            code_i = q_i | 8 if x_i < 0 and s != 0

The error sums use the fixed order of ``nvfp4.block_sum``:
``sum_{j<8} (t[j] + t[j+8])`` left to right (docs/NUMERICS.md), so near ties
resolve exactly as in ``nvfp4.quantize``.
"""

from __future__ import annotations

from vllm_fouroversix import nvfp4

BLOCK = nvfp4.BLOCK_SIZE
ERR_KINDS = {"mse": "sse", "mae": "sae", "abs_max": "max"}


def row_constants(amax, MS: float, ops):
    """(enc, dec) of one row (or tensor): SPEC section 2, amax == 0 gives enc = 0."""
    zero = amax == 0.0
    safe = ops.where(zero, ops.const(1.0, amax), amax)
    enc = ops.const(MS, amax) / safe
    dec = ops.const(1.0, amax) / enc
    enc = ops.where(zero, ops.const(0.0, amax), enc)
    return enc, dec


def _candidate(a, bmax, M: float, enc, dec, expand: bool, ops):
    s_hp = (bmax / M) * enc
    if expand:
        s_hp = s_hp * 1.5
    s_byte, s = ops.e4m3(s_hp)
    nonzero = s != 0.0
    inv = ops.where(nonzero, ops.const(1.0, s) / (dec * s), ops.const(0.0, s))
    codes = ops.e2m1_codes([ai * inv for ai in a])
    return codes, s_byte, s


def _error(a, codes, s, amax, kind: str, ops):
    terms = []
    for ai, q in zip(a, codes):
        deq = ((ops.e2m1_value(q) * s) * amax) / 1536.0
        d = deq - ai
        # Squares are rounded before the adds: no FMA contraction.
        terms.append(ops.mul_rn(d, d) if kind == "sse" else ops.abs(d))
    if kind == "max":
        err = terms[0]
        for t in terms[1:]:
            err = ops.max(err, t)
        return err
    # The SPEC's fixed sum order (nvfp4.block_sum, docs/NUMERICS.md):
    # sum_{j<8} (t[j] + t[j+8]), left to right.
    err = terms[0] + terms[8]
    for j in range(1, 8):
        err = err + (terms[j] + terms[j + 8])
    return err


def quantize_block(xs, amax, enc, dec, rule: str, ops):
    """One block of 16 values -> (16 codes with sign, scale byte).

    ``xs``: 16 FP32 values; ``amax``/``enc``/``dec``: the row's constants;
    ``rule``: a ``nvfp4.ScaleRule`` name.
    """
    r = nvfp4.ScaleRule(rule)
    M = nvfp4.rule_constants(r).M
    a = [ops.abs(x) for x in xs]
    bmax = a[0]
    for ai in a[1:]:
        bmax = ops.max(bmax, ai)
    codes, s_byte, s = _candidate(a, bmax, M, enc, dec, False, ops)
    if r.is_fouroversix:
        codes4, s_byte4, s4 = _candidate(a, bmax, M, enc, dec, True, ops)
        kind = ERR_KINDS[r.value]
        err6 = _error(a, codes, s, amax, kind, ops)
        err4 = _error(a, codes4, s4, amax, kind, ops)
        pick4 = err4 < err6  # ties go to map-to-6
        codes = [ops.where(pick4, c4, c6) for c4, c6 in zip(codes4, codes)]
        s_byte = ops.where(pick4, s_byte4, s_byte)
    has_scale = s_byte != 0
    out = []
    for x, c in zip(xs, codes):
        neg = ops.logical_and(x < 0.0, has_scale)
        out.append(ops.where(neg, c + 8, c))
    return out, s_byte


class TorchOps:
    """The primitives on torch tensors (reference semantics from ``nvfp4``)."""

    import torch as _torch

    @staticmethod
    def const(v, like):
        return TorchOps._torch.full_like(like, v, dtype=TorchOps._torch.float32)

    @staticmethod
    def where(c, a, b):
        return TorchOps._torch.where(c, a, b)

    @staticmethod
    def abs(x):
        return x.abs()

    @staticmethod
    def max(a, b):
        return TorchOps._torch.maximum(a, b)

    @staticmethod
    def logical_and(a, b):
        return a & b

    @staticmethod
    def mul_rn(a, b):
        return a * b

    @staticmethod
    def e4m3(s_hp):
        s = s_hp.clamp(max=448.0).to(TorchOps._torch.float8_e4m3fn)
        return s.view(TorchOps._torch.uint8).long(), s.float()

    @staticmethod
    def e2m1_codes(ys):
        return [nvfp4._e2m1_code_magnitude(y) for y in ys]

    @staticmethod
    def e2m1_value(code):
        return nvfp4.decode_e2m1(code)
