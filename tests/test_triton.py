"""The Hopper Triton path: quantizer bit-exactness and GEMMs vs the reference.

Without a GPU (CI) the kernels run under ``TRITON_INTERPRET=1`` on CPU tensors
with tiny shapes; the ``gpu`` tests run the compiled kernels (H100: see
benchmarks/hopper.md) and skip without CUDA.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    # Must be set before the kernel modules are imported (triton.jit reads it).
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from vllm_fouroversix import nvfp4  # noqa: E402
from vllm_fouroversix.nvfp4 import ScaleRule  # noqa: E402
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight  # noqa: E402
from vllm_fouroversix.backends.triton import TritonBackend  # noqa: E402
from vllm_fouroversix.kernels import gluon_gemm as gg  # noqa: E402
from vllm_fouroversix.kernels import gluon_wgmma as gwg  # noqa: E402
from vllm_fouroversix.kernels import triton_gemm as tg  # noqa: E402
from vllm_fouroversix.kernels import triton_prefill as tp  # noqa: E402
from vllm_fouroversix.kernels import triton_quantize as tq  # noqa: E402

RULES = ["mse", "mae", "abs_max", "static_6", "static_4"]
interpret = pytest.mark.skipif(HAS_CUDA, reason="interpreter tests run where there is no GPU (CI)")
DEV = "cuda" if HAS_CUDA else "cpu"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _acts(shape, seed, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * torch.exp(torch.randn(1, shape[-1], generator=g))
    return x.to(dtype)


def _assert_quant_equal(q, r, per_row):
    if q.data is not None:  # write_packed=False (the W4A4 operand mode) writes no codes or scales
        assert torch.equal(q.data.cpu(), r.data)
        assert torch.equal(q.scales.view(torch.uint8).cpu(), r.scales.view(torch.uint8))
    assert torch.equal(q.global_scale.cpu().reshape(-1), r.global_scale.float().reshape(-1))
    if q.dequant is not None:  # bit for bit, the sign of zero included (torch.equal has -0.0 == 0.0)
        ref = nvfp4._decode_blocks(r).to(q.dequant.dtype)
        assert torch.equal(q.dequant.cpu().view(torch.int16), ref.view(torch.int16))


# ---------------------------------------------------------------- interpreter (CPU)


@interpret
@pytest.mark.parametrize("rule", RULES)
def test_quantizer_bit_exact_interpreted(rule):
    for i, (dtype, mode) in enumerate(
        [(torch.bfloat16, "token"), (torch.float32, "token"), (torch.float16, "tensor"), (torch.bfloat16, "static")]
    ):
        x = _acts((6, 96), seed=i, dtype=dtype)
        x[0, :16] = 0  # zero block
        x[1] = 0  # zero row
        x[2, 5] = -1e-30  # negative value rounding to -0 (code 8)
        x[3, 0] = 3e4  # outlier: the row's other blocks get subnormal E4M3 scales
        amax = 20.0 if mode == "static" else None  # static amax below the max: blocks saturate
        r = nvfp4.quantize(x, rule, per_row=mode == "token", amax=amax)
        for packed in (True, False):  # codes + scales + operand, and the operand alone (W4A4 on Hopper)
            q = tq.quantize_triton(x, rule, per_row=mode == "token", amax=amax, write_packed=packed,
                                   dequant_dtype=torch.bfloat16)
            _assert_quant_equal(q, r, mode == "token")


@interpret
def test_quantizer_amax_override_interpreted():
    # A given amax replaces the computed one (tensor parallelism): per row ([R] or a scalar for
    # every row) and per tensor, in the single-pass and the chunked kernel; bit-exact with nvfp4.
    x = _acts((5, 112), seed=11)
    row_amax = x.float().abs().amax(-1) * torch.tensor([1.0, 2.0, 0.5, 1.25, 3.0])  # above and below each row's
    for rule in ("mse", "abs_max", "static_6"):
        for per_row, amax in ((True, row_amax), (True, 2.0), (False, torch.tensor(1.5))):
            q = tq.quantize_triton(x, rule, per_row=per_row, amax=amax,
                                   dequant_dtype=torch.bfloat16)
            r = nvfp4.quantize(x, rule, per_row=per_row, amax=amax)
            _assert_quant_equal(q, r, per_row)
    with pytest.raises(ValueError, match="5 rows"):
        tq.quantize_triton(x, "mse", per_row=True, amax=torch.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        tq.quantize_triton(x, "mse", per_row=False, amax=torch.ones(5))


@interpret
def test_quantizer_chunked_rows_interpreted(monkeypatch):
    # Rows longer than the single-pass limit are read in chunks (two passes).
    monkeypatch.setattr(tq, "_MAX_SINGLE_PASS_BLOCKS", 2)
    monkeypatch.setattr(tq, "_CHUNK_BLOCKS", 2)
    x = _acts((3, 112), seed=7)  # 7 blocks: 4 chunks, the last one partial
    for rule in ("mse", "static_6"):
        q = tq.quantize_triton(x, rule, per_row=True)
        _assert_quant_equal(q, nvfp4.quantize(x, rule, per_row=True), True)
        am = torch.tensor([0.5, 4.0, 1.0])  # given per-row amax, chunked kernel
        q = tq.quantize_triton(x, rule, per_row=True, amax=am)
        _assert_quant_equal(q, nvfp4.quantize(x, rule, per_row=True, amax=am), True)


@interpret
def test_quantizer_many_rows_chunked_interpreted(monkeypatch):
    # Many rows of over _SHORT_ROW_BLOCKS blocks take _MANY_ROWS_CHUNK_BLOCKS chunks (scaled down).
    monkeypatch.setattr(tq, "_SHORT_ROW_BLOCKS", 2)
    monkeypatch.setattr(tq, "_MANY_ROWS_CHUNK_BLOCKS", 2)
    monkeypatch.setattr(tq, "_MANY_ROWS_PER_SM", 0.05)  # 7 rows count as many (132 SMs off CUDA)
    x = _acts((7, 80), seed=8)  # 5 blocks a row: 3 chunks
    q = tq.quantize_triton(x, "mae", per_row=True, dequant_dtype=torch.bfloat16)
    _assert_quant_equal(q, nvfp4.quantize(x, "mae", per_row=True), True)


@interpret
def test_quantizer_split_rows_interpreted(monkeypatch):
    # Few rows: each row's chunks of blocks are parallel programs, each reading the whole row
    # for its amax (scaled down: 2-block programs, 32-value amax tiles, 4 of them a row).
    monkeypatch.setattr(tq, "_SPLIT_MIN_BLOCKS", 2)
    monkeypatch.setattr(tq, "_SHORT_ROW_BLOCKS", 2)
    monkeypatch.setattr(tq, "_SPLIT_AMAX_PER_THREAD", 1)
    x = _acts((3, 112), seed=9)  # 7 blocks a row: 3 programs a row -> chunks of 4 blocks, 2 a row
    x[1, 100] = -40.0  # the row's amax in its last chunk
    for rule in ("mse", "abs_max", "static_6"):
        for per_row, amax in ((True, None), (True, torch.tensor([0.5, 4.0, 1.0])), (False, None),
                              (False, torch.tensor(3.0))):
            q = tq.quantize_triton(x, rule, per_row=per_row, amax=amax,
                                   dequant_dtype=torch.bfloat16)
            _assert_quant_equal(q, nvfp4.quantize(x, rule, per_row=per_row, amax=amax), per_row)


# 16-value rows (one block each, its max the row's amax) whose 4/6 choice an error computed
# in another FP32 order (v * d1 in one FMA a value, summed by FMAs) gets wrong: found by a
# search over 200,000 Gaussian bf16 blocks (benchmarks/hopper.md, run 15).
_NEAR_TIE_BLOCKS = [
    [1.328125, -0.9453125, 1.0234375, 0.330078125, -0.45703125, 0.28125, 0.8828125, 0.79296875,
     3.625, 0.921875, -1.7265625, 1.6640625, -0.036376953125, -0.87890625, 0.38671875,
     0.396484375],
    [0.40234375, -1.4375, -0.076171875, 1.7265625, -1.8671875, 0.546875, -0.3125, -0.490234375,
     -0.2578125, -0.578125, 0.25390625, 0.455078125, 1.8203125, -0.1396484375, 0.296875, 0.34375],
    [-0.5, 1.4609375, -0.66015625, -1.078125, 0.59765625, 0.984375, -0.447265625, -0.51171875,
     1.609375, -1.2890625, -0.314453125, -0.345703125, 0.0595703125, 0.76953125, -0.2451171875,
     -0.68359375],
    [-0.31640625, -0.3515625, 1.203125, -0.1787109375, 0.5234375, 0.357421875, -0.228515625,
     0.953125, -0.66796875, 0.333984375, 0.39453125, 0.251953125, -0.21484375, -0.365234375,
     0.341796875, -0.376953125],
    [1.296875, 0.46484375, 0.8359375, -0.498046875, -0.515625, -1.75, -0.388671875, 0.30078125,
     -1.2578125, -1.4375, -1.25, 1.046875, 0.412109375, 0.5234375, -1.0625, -0.1396484375],
    [0.0087890625, -0.375, 0.515625, 2.125, 1.5546875, 1.640625, 0.0419921875, -0.5234375,
     -1.09375, 0.97265625, 0.62890625, -1.0859375, 0.6953125, 0.66015625, -0.546875, -0.98828125],
    [1.1484375, 0.35546875, -0.294921875, -0.6328125, 1.8671875, -0.5234375, 0.69140625,
     0.0927734375, 1.6015625, -0.026123046875, 0.61328125, -0.8125, 2.40625, 0.515625,
     0.00396728515625, 0.56640625],
    [-0.294921875, -0.63671875, 0.0556640625, -0.0059814453125, 1.03125, -0.392578125, 1.375,
     -0.796875, 0.8203125, 0.2392578125, 0.380859375, 0.81640625, 0.53125, 0.044677734375,
     -0.328125, -0.94921875],
]


def _tie_heavy_acts(rows, K, seed):
    """Small integers and halves with zero and tiny blocks: many blocks whose two 4/6
    candidates tie exactly or nearly, and blocks with subnormal E4M3 scales."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-8, 9, (rows, K), generator=g).float() * 0.5
    x[:, 16:32] = 0  # a zero block a row
    x[:, 32:48] *= 1e-6  # tiny blocks: subnormal E4M3 scales (the clamped path)
    return x.bfloat16()


def _check_ties(x, dev):
    for rule in ("mse", "mae", "abs_max", "static_4"):
        for per_row, amax in ((True, None), (True, 1.5), (False, None)):
            q = tq.quantize_triton(x.to(dev), rule, per_row=per_row, amax=amax,
                                   dequant_dtype=torch.bfloat16)
            _assert_quant_equal(q, nvfp4.quantize(x, rule, per_row=per_row, amax=amax), per_row)


def test_k64_order():
    # The K order of the W4A4 operand that the wgmma kernel reads directly: a permutation within each
    # 64 values, element 16c + 8w + 4ol + 2e + oh at 32w + 16oh + 8ol + 2c + e (kernels/k64_order.py).
    from vllm_fouroversix.kernels.k64_order import perm_k64_index, permute_k64, unpermute_k64

    idx = perm_k64_index(192)
    assert sorted(idx.tolist()) == list(range(192))
    assert (idx // 64 == torch.arange(192) // 64).all()  # within each 64-value chunk
    # the 16 values of block c = 1 of the second chunk go to the MMA quad's lane c: 2 values (e) at
    # k = 2c + {0, 1} of each 8-value group
    assert idx[64 + 16:64 + 32].tolist() == [66, 82, 67, 83, 74, 90, 75, 91, 98, 114, 99, 115, 106, 122, 107, 123]
    x = torch.randn(3, 192)
    y = permute_k64(x)
    assert torch.equal(y[:, idx], x) and torch.equal(unpermute_k64(y), x)
    assert not torch.equal(y, x) and torch.allclose(y.sum(-1), x.sum(-1), atol=1e-5)  # moved, none lost
    with pytest.raises(ValueError, match="K % 64"):
        perm_k64_index(96)
    with pytest.raises(ValueError, match="perm_k64"):
        tq.quantize_triton(torch.zeros(2, 96), "mse", dequant_dtype=torch.bfloat16, perm_k64=True)
    with pytest.raises(ValueError, match="perm_k64"):
        tq.quantize_triton(torch.zeros(2, 128), "mse", perm_k64=True)


@interpret
def test_quantizer_perm_k64_interpreted(monkeypatch):
    # quantize_triton(perm_k64=True) writes the same operand as the plain mode, in the K64 order, bit
    # for bit (-0.0 too), on the one-pass, chunked (scaled down) and split-row paths.
    from vllm_fouroversix.kernels.k64_order import permute_k64

    x = _acts((3, 192), seed=11)
    x[0, :40] = 0
    x[1, 3] = -0.0
    x[2, 64:80] = -1e-30  # a block of scale 0: no sign bits
    for rule in ("mse", "abs_max", "static_6"):
        a = tq.quantize_triton(x, rule, write_packed=False, dequant_dtype=torch.bfloat16)
        b = tq.quantize_triton(x, rule, write_packed=False, dequant_dtype=torch.bfloat16, perm_k64=True)
        assert torch.equal(permute_k64(a.dequant).view(torch.int16), b.dequant.view(torch.int16)), rule
        assert b.data is None and torch.equal(a.global_scale, b.global_scale)
    monkeypatch.setattr(tq, "_MAX_SINGLE_PASS_BLOCKS", 4)
    monkeypatch.setattr(tq, "_CHUNK_BLOCKS", 4)  # 12 blocks: 3 chunks
    for per_row in (True, False):
        a = tq.quantize_triton(x, "mae", per_row=per_row, dequant_dtype=torch.bfloat16)
        b = tq.quantize_triton(x, "mae", per_row=per_row, dequant_dtype=torch.bfloat16, perm_k64=True)
        assert torch.equal(permute_k64(a.dequant).view(torch.int16), b.dequant.view(torch.int16))
        assert torch.equal(a.data, b.data) and torch.equal(a.scales.view(torch.uint8), b.scales.view(torch.uint8))
    monkeypatch.setattr(tq, "_SPLIT_MIN_BLOCKS", 4)
    monkeypatch.setattr(tq, "_SHORT_ROW_BLOCKS", 2)
    a = tq.quantize_triton(x, "mse", dequant_dtype=torch.bfloat16)
    b = tq.quantize_triton(x, "mse", dequant_dtype=torch.bfloat16, perm_k64=True)
    assert torch.equal(permute_k64(a.dequant).view(torch.int16), b.dequant.view(torch.int16))


@interpret
def test_quantizer_ties_interpreted():
    # Exact and near ties between the 4/6 candidates (the choice rests on the errors' exact FP32
    # rounding), zero and tiny blocks (subnormal scales: the clamped rounding), in every amax
    # mode (a given amax below a row's max: the map-to-4 rounding is clamped too).
    x = torch.cat([_tie_heavy_acts(4, 128, seed=3), _acts((4, 128), seed=4),
                   torch.tensor(_NEAR_TIE_BLOCKS).repeat(1, 8).bfloat16()])  # 8 times a row
    _check_ties(x, "cpu")


@triton.jit
def _e4m3_kernel(x_ptr, v_ptr, b_ptr, n, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    m = o < n
    v, b = tq._e4m3_round(tl.load(x_ptr + o, mask=m, other=0.0))
    tl.store(v_ptr + o, v, mask=m)
    tl.store(b_ptr + o, b.to(tl.uint8), mask=m)


@triton.jit
def _e4m3_hw_kernel(x_ptr, v_ptr, b_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    v, b = tq._e4m3_round_hw(tl.load(x_ptr + o, mask=m, other=0.0))
    tl.store(v_ptr + o, v, mask=m)
    tl.store(b_ptr + o, b.to(tl.uint8), mask=m)


def _e4m3_inputs(n_random):
    # Every E4M3 value, the midpoints between neighbours (ties) and their FP32 neighbours, random values, 0..448.
    grid = torch.arange(0, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    mids = (grid[1:] + grid[:-1]) / 2
    rnd = torch.rand(n_random, generator=torch.Generator().manual_seed(0)) ** 4 * 448
    x = torch.cat([grid, mids, mids.nextafter(torch.tensor(0.0)), mids.nextafter(torch.tensor(1e9)), rnd])
    return x.clamp(0, 448).contiguous()


@interpret
def test_e4m3_rounding_matches_torch_interpreted():
    x = _e4m3_inputs(1500)
    v, b = torch.empty_like(x), torch.empty(x.shape, dtype=torch.uint8)
    _e4m3_kernel[(1,)](x, v, b, x.numel(), BLOCK=triton.next_power_of_2(x.numel()))
    ref = x.to(torch.float8_e4m3fn)
    assert torch.equal(b, ref.view(torch.uint8))
    assert torch.equal(v, ref.float())


@pytest.mark.gpu
def test_e4m3_hw_conversion_matches_torch_gpu():
    # The hardware conversion the quantizer uses on sm_89+ vs torch's CPU float8 cast.
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("cvt e4m3x2 needs sm_89+")
    x = _e4m3_inputs(4_000_000)
    xd = x.cuda()
    v, b = torch.empty_like(xd), torch.empty(x.shape, dtype=torch.uint8, device="cuda")
    _e4m3_hw_kernel[(triton.cdiv(x.numel(), 1024),)](xd, v, b, x.numel(), BLOCK=1024)
    ref = x.to(torch.float8_e4m3fn)
    assert torch.equal(b.cpu(), ref.view(torch.uint8))
    assert torch.equal(v.cpu(), ref.float())


@triton.jit
def _div3_kernel(x_ptr, q_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    tl.store(q_ptr + o, tq._div3(tl.load(x_ptr + o, mask=m, other=1.0)), mask=m)


def _check_div3(dev, n_sig):
    # Every n_sig-th FP32 significand in [1, 2), then scaled into other binades; vs IEEE x / 3 on CPU.
    sig = torch.arange(0, 1 << 23, n_sig, dtype=torch.int32) | 0x3F800000
    x = torch.cat([sig.view(torch.float32) * s for s in (1.0, 2.0 ** -100, 2.0 ** 60, 448.0, 0.0)])
    q = torch.empty_like(x, device=dev)
    _div3_kernel[(triton.cdiv(x.numel(), 1024),)](x.to(dev), q, x.numel(), BLOCK=1024)
    assert torch.equal(q.cpu(), x / torch.tensor(3.0))


@interpret
def test_div3_interpreted():
    _check_div3("cpu", 997)


@pytest.mark.gpu
def test_div3_gpu():
    _check_div3("cuda", 1)


@triton.jit
def _e2m1_kernel(y_ptr, v_ptr, c_ptr, p_ptr, u_ptr, n, BLOCK: tl.constexpr):
    o = tl.arange(0, BLOCK)
    m = o < n
    y = tl.load(y_ptr + o, mask=m, other=0.0)
    v = tq._e2m1_round(y)
    tl.store(v_ptr + o, v, mask=m)
    # the codes packed 8 to a word (element j in bits 4j..4j+2)
    w = tq._pack_codes(tl.reshape(v, (BLOCK // 8, 8)))
    tl.store(c_ptr + tl.arange(0, BLOCK // 8), w)
    # the dequantization inside _neg_deq_error (a = 0, d1 = 1, d3 = 1): the power of two it reads off v
    # (q / 3 for q = 1.5, 3, 6, else q)
    tl.store(p_ptr + o, -tq._neg_deq_error(v, 0.0, -1.0, -0.5), mask=m)
    tl.store(u_ptr + o, tq._e2m1_round(y, False), mask=m)  # no clamp: right below 7


def _e2m1_inputs():
    grid = torch.tensor([0.0, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12])
    mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 10.0])
    pts = torch.cat([grid, mids])
    pts = torch.cat([pts, pts.nextafter(torch.tensor(0.0)), pts.nextafter(torch.tensor(1e9))])
    rnd = torch.rand(4000, generator=torch.Generator().manual_seed(1)) * 16
    return torch.cat([pts, rnd, torch.tensor([1e-30, 3e-39, 100.0, 1e6])]).contiguous()


def _check_e2m1(dev):
    y = _e2m1_inputs().to(dev)
    block = triton.next_power_of_2(y.numel())
    v, p, u = torch.empty_like(y), torch.empty_like(y), torch.empty_like(y)
    c = torch.zeros(block // 8, dtype=torch.int32, device=dev)
    _e2m1_kernel[(1,)](y, v, c, p, u, y.numel(), BLOCK=block)
    y, v, c, p, u = y.cpu(), v.cpu(), c.cpu(), p.cpu(), u.cpu()
    ref_c = nvfp4._e2m1_code_magnitude(y.clone())
    vals = torch.tensor([0.0, 0.5, 1, 1.5, 2, 3, 4, 6])
    codes = (c.reshape(-1, 1) >> (4 * torch.arange(8, dtype=torch.int32))) & 0xF
    assert torch.equal(codes.reshape(-1)[: y.numel()].long(), ref_c)
    assert torch.equal(v, vals[ref_c])
    assert torch.equal(p, torch.tensor([0.0, 0.5, 1, 0.5, 2, 1, 4, 2])[ref_c])
    below7 = y < 7
    assert torch.equal(u[below7], v[below7])


@interpret
def test_e2m1_rounding_matches_oracle_interpreted():
    _check_e2m1("cpu")


@pytest.mark.gpu
def test_e2m1_rounding_matches_oracle_gpu():
    _check_e2m1("cuda")


def _weight(N, K, seed, rule="mse", per_row_gw=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g)
    t = nvfp4.quantize(w, rule)
    if per_row_gw:  # unequal per-output-row scales (fused shards)
        t.global_scale = t.global_scale * torch.linspace(0.5, 2, N).reshape(N, 1)
    return t


_CONFIGS = [
    tg.GemmConfig("gemv", BM=1, BN=16, BK=64),
    tg.GemmConfig("gemv", BM=2, BN=16, BK=32, split_k=3),
    tg.GemmConfig("gemv2", BM=1, BN=16, BK=64),
    tg.GemmConfig("gemv2", BM=4, BN=8, BK=32, split_k=3),
    tg.GemmConfig("tc", BM=16, BN=16, BK=64),
    tg.GemmConfig("tc", BM=16, BN=32, BK=32, split_k=2),
    tg.GemmConfig("tc", BM=32, BN=16, BK=32, group_m=2),
    tg.GemmConfig("tcT", BM=16, BN=32, BK=32, split_k=2),
    tg.GemmConfig("dq"),
]


def _check_gemm_path(cfg, N, K, M, mode, *, per_row_gw, seed, x_seed, device, pass_gw_float):
    """fp4_gemm with ``cfg`` against reference_linear: W4A16 (mode "none") or W4A4 after the
    Triton quantizer (token/tensor/static), operands on ``device``."""
    wq = _weight(N, K, seed=seed, per_row_gw=per_row_gw)
    x = _acts((M, K), seed=x_seed)
    bias = torch.randn(N).to(torch.bfloat16)
    gw = wq.global_scale.reshape(-1)
    amax = 3.0 if mode == "static" else None
    xd, data, scales, gwd, bd = (t.to(device) for t in (x, wq.data, wq.scales, gw, bias))
    if mode == "none":
        gw_float = float(gw) if pass_gw_float and gw.numel() == 1 else None
        out = tg.fp4_gemm(xd, data, scales, gwd, bias=bd, config=cfg, gw_float=gw_float)
    else:
        q = tq.quantize_triton(xd, "mse", per_row=mode == "token", amax=amax, write_packed=False,
                               dequant_dtype=torch.bfloat16)
        out = tg.fp4_gemm(q.dequant, data, scales, gwd, ga=q.global_scale, bias=bd, out_dtype=x.dtype, config=cfg)
    ref = nvfp4.reference_linear(x, wq, bias, per_row=mode == "token", act_quant=mode != "none",
                                 act_amax=amax).float()
    # Only the fp32 accumulation order differs: at most one bf16 rounding step apart.
    torch.testing.assert_close(out.float().cpu(), ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
    if cfg.split_k > 1:  # the last program of each split-K tile reset its counter for the next launch
        assert not tg._locks(xd.device).any()


@interpret
@pytest.mark.parametrize("cfg", _CONFIGS, ids=lambda c: c.short())
def test_gemm_paths_interpreted(cfg):
    N, K = 40, 80  # N not a multiple of BN, K not a multiple of BK
    for i, (M, mode, per_row_gw) in enumerate([(1, "none", False), (3, "token", True), (5, "tensor", False),
                                               (33, "static", False)]):
        if cfg.kind in ("gemv", "gemv2") and M > 4:
            continue
        _check_gemm_path(cfg, N, K, M, mode, per_row_gw=per_row_gw, seed=i, x_seed=10 + i, device="cpu",
                         pass_gw_float=True)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", _CONFIGS + [tg.GemmConfig("tc", BM=64, BN=128, BK=64, split_k=2),
                                            tg.GemmConfig("tc", BM=128, BN=128, BK=64, num_warps=8),
                                            tg.GemmConfig("tc", BM=16, BN=64, BK=256, split_k=4)],
                         ids=lambda c: c.short())
def test_gemm_paths_gpu(cfg):
    # Every explicit tile compiled, with K not a multiple of BK (masked last K tile) and N not of BN:
    # the tiles' layouts are Triton's choice and differ from the K % BK == 0 ones the shape sweeps take.
    for i, (N, K, M, mode) in enumerate([(40, 80, 3, "token"), (384, 272, 1, "none"), (384, 272, 33, "tensor"),
                                         (384, 272, 200, "token"), (96, 4112, 16, "none")]):
        if cfg.kind in ("gemv", "gemv2") and M > 4:
            continue
        _check_gemm_path(cfg, N, K, M, mode, per_row_gw=i % 2 == 1, seed=i, x_seed=20 + i, device="cuda",
                         pass_gw_float=False)


@interpret
def test_backend_linear_interpreted():
    be = TritonBackend()
    wq = _weight(24, 64, seed=3)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    x = _acts((2, 3, 64), seed=4)  # 3-D input: leading dims are kept
    bias = torch.randn(24).to(torch.bfloat16)
    for mode in ("none", "token", "tensor", "static"):
        amax = torch.tensor(2.5) if mode == "static" else None
        out = be.linear(x, qw, bias, ActivationQuant("mae", mode), input_amax=amax)
        ref = nvfp4.reference_linear(x, wq, bias, act_rule="mae", per_row=mode == "token",
                                     act_quant=mode != "none", act_amax=amax)
        assert out.shape == (2, 3, 24) and out.dtype == x.dtype
        torch.testing.assert_close(out.float(), ref.float(), rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
        # 2-D input (vLLM's flattened tokens): passed through without reshapes, the same rows
        out2 = be.linear(x.reshape(6, 64), qw, bias, ActivationQuant("mae", mode), input_amax=amax)
        assert out2.shape == (6, 24) and torch.equal(out2, out.reshape(6, 24))
    with pytest.raises(ValueError, match="static"):
        be.linear(x, qw, bias, ActivationQuant("mse", "static"))
    # The tensor-parallel amax override (token: one per row of x flattened; tensor: one).
    assert be.accepts_amax_override
    for mode, amax in (("token", x.reshape(6, 64).float().abs().amax(-1) * 1.5), ("tensor", torch.tensor(7.0))):
        out = be.linear(x, qw, bias, ActivationQuant("mse", mode), input_amax=amax)
        ref = nvfp4.reference_linear(x, wq, bias, act_rule="mse", per_row=mode == "token", act_amax=amax)
        torch.testing.assert_close(out.float(), ref.float(), rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())


def _prefill_case(M, N, K, seed, dtype=torch.bfloat16, gw_vec=False, ga_mode="row", device=DEV):
    """Operands as the W4A4 prefill path sees them: q * s values (exact in bf16), global
    scales, bias; and the fp64 oracle of (a @ w.T) * (ga * gw) + bias."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.randint(-12, 13, (M, K), generator=g) * 0.25 * 2.0 ** torch.randint(-3, 3, (M, 1), generator=g))
    w = (torch.randint(-12, 13, (N, K), generator=g) * 0.125)
    gw = torch.rand(N if gw_vec else 1, generator=g) * 0.01 + 1e-3
    ga = {"row": torch.rand(M, generator=g) + 0.5, "tensor": torch.tensor([0.75]), "none": None}[ga_mode]
    bias = torch.randn(N, generator=g)
    ref = a.double() @ w.double().T * ((ga.double()[:, None] if ga is not None else 1.0) * gw.double()) + bias.double()
    on = lambda t: None if t is None else t.to(device)  # noqa: E731
    return on(a.to(dtype)), on(w.to(dtype)), on(gw), on(ga), on(bias), ref


def _assert_prefill_close(out, ref):
    # Products and sums of these values are exact in fp32 up to order: one output rounding apart.
    torch.testing.assert_close(out.double().cpu(), ref, rtol=2 ** -7, atol=1e-6 * ref.abs().max().item())


@interpret
def test_prefill_gemm_interpreted():
    # Edges: M, N, K not multiples of the tile; per-row and per-tensor ga, none; per-channel gw; fp32 input.
    for i, (M, N, K, gw_vec, ga_mode, dtype) in enumerate([
            (37, 40, 80, False, "row", torch.bfloat16), (5, 24, 48, True, "tensor", torch.bfloat16),
            (33, 16, 32, False, "none", torch.float16), (9, 40, 80, True, "row", torch.float32)]):
        a, w, gw, ga, bias, ref = _prefill_case(M, N, K, seed=i, dtype=dtype, gw_vec=gw_vec, ga_mode=ga_mode)
        out = tp.prefill_gemm(a, w, gw, ga, bias)
        assert out.dtype == dtype and out.shape == (M, N)
        _assert_prefill_close(out, ref)
    with pytest.raises(ValueError, match="does not match"):
        tp.prefill_gemm(a, w[:, :16], gw)
    with pytest.raises(ValueError, match="out .* is not a row-major"):
        tp.prefill_gemm(a, w, gw, out=torch.empty(w.shape[0], a.shape[0], dtype=a.dtype).T)


def test_prefill_tile_choice():
    # run 13 (H100, 132 SMs): the wide tile where its tiles fill the SMs, the square one elsewhere
    assert tp.prefill_tile(4096, 4096, 132) is tp.WIDE_TILE
    assert tp.prefill_tile(256, 28672, 132) is tp.WIDE_TILE
    assert tp.prefill_tile(1024, 6144, 132) is tp.SQUARE_TILE  # 192 wide tiles: 1.45 waves
    assert tp.prefill_tile(256, 4096, 132) is tp.SQUARE_TILE


def test_select_config_by_m():
    # GEMV to M = 2, tensor-core tiles to 128, then decode + GEMM; at M 129..256 the tensor-core
    # tiles where the GEMM after decoding would not be cuBLAS (W4A4) or N is large (run 14e).
    cpu = torch.device("cpu")
    assert tg.select_config(1, 4096, 4096, cpu).kind == "gemv2"
    assert tg.select_config(16, 4096, 4096, cpu).kind == "tc"
    # split-K for the 16-row tile: _split_for below 1.5 waves; 2 for wide weights up to 3.5 waves (run 24f)
    assert tg._with_split(tg.select_config(16, 4096, 4096, cpu), 16, 4096, 4096, 132).split_k == 4
    assert tg._with_split(tg.select_config(16, 28672, 4096, cpu), 16, 28672, 4096, 132).split_k == 2
    assert tg._with_split(tg.select_config(9, 57344, 4096, cpu), 9, 57344, 4096, 132).split_k == 1
    assert tg._with_split(tg.select_config(16, 14336, 4096, cpu), 16, 14336, 4096, 132).split_k == 1
    assert tg.select_config(128, 4096, 4096, cpu).kind == "tc"
    assert tg.select_config(256, 4096, 4096, cpu).kind == "dq"
    c = tg.select_config(256, 4096, 4096, cpu, cublas_prefill=False)
    assert (c.kind, c.BM, c.BN) == ("tc", 64, 128)
    for cublas in (True, False):
        c = tg.select_config(256, 28672, 4096, cpu, cublas_prefill=cublas)
        assert (c.kind, c.BM, c.BN) == ("tc", 128, 128)
        assert tg.select_config(257, 28672, 4096, cpu, cublas_prefill=cublas).kind == "dq"


def test_host_helpers_match_triton():
    # The launch paths' host-side integer helpers (Triton's own cost microseconds a call from
    # Python) give Triton's values.
    for n in range(1, 5000):
        assert nvfp4.next_pow2(n) == triton.next_power_of_2(n), n
        assert nvfp4.ceil_div(n, 16) == triton.cdiv(n, 16), n


def test_select_config_cached_per_device_part(monkeypatch):
    # select_config caches its choice, keyed by what the device allows: a Gluon kernel that
    # becomes unusable (as after a failure) changes the choice at once.
    dev = torch.device("cpu")
    monkeypatch.setattr(tg, "_mma_usable", lambda device: True)
    assert tg.select_config(4, 4096, 4096, dev).kind == "mma"
    assert tg.select_config(4, 4096, 4096, dev) is tg.select_config(4, 4096, 4096, dev)
    monkeypatch.setattr(tg, "_mma_usable", lambda device: False)
    assert tg.select_config(4, 4096, 4096, dev).kind == "tc"


def test_mma_warps_and_selection():
    # K splits a CTA of the Gluon small-M kernel: 8 warps below N = 16384, 4 above, fewer
    # when K does not divide (each warp takes 128-value K tiles), none when K is not a
    # multiple of 512; never selected without a CUDA device (nor under the interpreter).
    assert gg.mma_warps(4096, 4096) == 8 and gg.mma_warps(4096, 14336) == 8
    assert gg.mma_warps(28672, 4096) == 4 and gg.mma_warps(4096, 1536) == 4
    assert gg.mma_warps(4096, 1040) is None
    # (warps, stages): the cp.async ring for M <= 4 below N = 16384 (4 warps, 3 stages up to
    # K = 8192, then 8 warps, 2 stages), plain loads at M > 4 or N >= 16384.
    assert gg.mma_plan(2, 4096, 4096) == (4, 3) and gg.mma_plan(4, 6144, 4096) == (4, 3)
    assert gg.mma_plan(4, 4096, 14336) == (8, 2) and gg.mma_plan(2, 4096, 1536) == (4, 3)
    assert gg.mma_plan(8, 4096, 4096) == (8, 1) and gg.mma_plan(2, 28672, 4096) == (4, 1)
    assert gg.mma_plan(2, 4096, 1040) is None
    assert not gg.available(torch.device("cpu"))
    for M in range(1, 17):
        assert tg.select_config(M, 4096, 4096, torch.device("cpu")).kind != "mma"


def test_quantizer_sign_mask_selection(monkeypatch):
    # The operand mode (W4A4 on Hopper) ORs 16-bit sign masks into its output pairs: bf16 input on
    # sm_90+ (set.lt.u32.bf16x2), f16 input anywhere, mse/mae only (other rules would lose CTAs an SM
    # to the masks' registers); the packed mode, fp32 input and the interpreter keep the sign words.
    dev = torch.device("cpu")
    monkeypatch.setattr(tq, "INTERPRET", False)
    bf, f16 = torch.bfloat16, torch.float16
    for cc, dtype, rule, packed, want in [((9, 0), bf, "mse", False, 1), ((9, 0), f16, "mae", False, 2),
                                          ((8, 0), bf, "mse", False, 0), ((8, 0), f16, "mse", False, 2),
                                          ((9, 0), torch.float32, "mse", False, 0), ((9, 0), bf, "mse", True, 0),
                                          ((9, 0), bf, "abs_max", False, 0), ((9, 0), bf, "static_6", False, 0)]:
        monkeypatch.setattr(tq, "capability", lambda d, cc=cc: cc)
        assert tq._sign_mask(ScaleRule(rule), dtype, dev, packed, True) == want, (cc, dtype, rule, packed)
    assert tq._sign_mask(ScaleRule.mse, torch.bfloat16, dev, False, False) == 0  # no operand written
    monkeypatch.setattr(tq, "INTERPRET", True)
    assert tq._sign_mask(ScaleRule.mse, torch.bfloat16, dev, False, True) == 0


def test_wgmma_selection(monkeypatch):
    # The Gluon wgmma kernel (128 < M, bf16, sm_90; beyond M = 1024 only where the prefill GEMM would
    # not be cuBLAS) is taken where its tiles of 128 weight rows and 256, 128 or 64 activation rows
    # (gluon_wgmma.tile_rows) fill the SMs (last wave >= 85% full, or one wave >= 70%), where M > 768
    # (512 without cuBLAS prefill) and its launches split into whole waves and a wave of 128-row
    # tiles, or N >= 16384; never without such a device.
    assert not gwg.available(torch.device("cpu"))
    assert tg.select_config(1024, 4096, 4096, torch.device("cpu")).kind == "dq"
    assert gwg.tiles_fill(1024, 4096, 132) == pytest.approx(128 / 132)
    assert gwg.tiles_fill(1024, 6144, 132) == pytest.approx(192 / 264)
    monkeypatch.setattr(tg, "_wgmma_usable", lambda device: True)
    dev = torch.device("cpu")  # num_sms: 132 off CUDA
    kinds = {(M, N, K): tg.select_config(M, N, K, dev).kind
             for (M, N, K) in [(1024, 4096, 4096), (1024, 4096, 14336), (1024, 28672, 4096), (256, 28672, 4096),
                               (1024, 6144, 4096), (768, 6144, 4096), (512, 6144, 4096), (512, 4096, 4096),
                               (2048, 4096, 4096), (128, 28672, 4096), (1024, 4096, 4160 - 32), (256, 4096, 4096),
                               (192, 6144, 4096), (160, 4096, 4096), (256, 1024, 4096)]}
    assert kinds == {(1024, 4096, 4096): "wgmma", (1024, 4096, 14336): "wgmma", (1024, 28672, 4096): "wgmma",
                     (256, 28672, 4096): "wgmma", (1024, 6144, 4096): "wgmma", (768, 6144, 4096): "dq",
                     (512, 6144, 4096): "wgmma", (512, 4096, 4096): "wgmma", (2048, 4096, 4096): "dq",
                     (128, 28672, 4096): "wgmma", (1024, 4096, 4128): "dq", (256, 4096, 4096): "wgmma",
                     (192, 6144, 4096): "wgmma", (160, 4096, 4096): "wgmma", (256, 1024, 4096): "dq"}
    # the activation rows a tile: the fewest waves times a tile's time (run 38b: 64 rows 0.6, 128 rows 0.8
    # of 256's)
    rows = {k: tg.select_config(*k, dev).BM for k, v in kinds.items() if v == "wgmma"}
    assert rows == {(1024, 4096, 4096): 256, (1024, 4096, 14336): 256, (1024, 28672, 4096): 256, (128, 28672, 4096): 128,
                    (256, 28672, 4096): 256, (1024, 6144, 4096): 256, (512, 6144, 4096): 256, (512, 4096, 4096): 128,
                    (256, 4096, 4096): 64, (192, 6144, 4096): 128, (160, 4096, 4096): 64}
    assert tg.select_config(256, 4096, 4096, dev).short() == "wgmma 64x128x64"
    assert [gwg.tile_rows(M, 4096, 132) for M in (160, 192, 256, 300, 384, 512, 768, 1024)] == \
        [64, 64, 64, 128, 128, 128, 256, 256]
    assert gwg.tiles(256, 4096, 64) == 128 and gwg.tiles_fill(300, 4096, 132, 128) == pytest.approx(96 / 132)
    # W4A4 (its alternative is not cuBLAS) takes 64-row tiles at M = 160 too; not where even they leave
    # most SMs idle (N = 1024: 32 tiles), where the split-K tensor-core tiles stay
    w4a4_small = {k: tg.select_config(*k, dev, cublas_prefill=False, a_k64=True) for k in
                  [(160, 4096, 4096), (256, 1024, 4096), (384, 4096, 14336), (768, 6144, 4096)]}
    assert {k: c.short().split(" s")[0] for k, c in w4a4_small.items()} == {
        (160, 4096, 4096): "wgmma 64x128x64", (256, 1024, 4096): "tc 64x128x64", (384, 4096, 14336): "wgmma 128x128x64",
        (768, 6144, 4096): "wgmma 256x128x64"}  # from M = 513 in the plan's two launches (run 39a: 78.8 vs 108.4 us)
    assert gwg.plan(768, 6144, 132) == [(0, 5632, 256), (5632, 6144, 128)]
    # two K halves a CTA in 64-row tiles: W4A16 from K = 4096, W4A4 (K64 operand) from K = 8192 (run 39a)
    assert [gwg.k_splits(t, K, p) for t, K, p in [(64, 4096, False), (64, 2048, False), (64, 4096, True),
                                                 (64, 8192, True), (128, 14336, False), (256, 4096, False)]] == \
        [2, 1, 1, 2, 1, 1]
    # 16 < M <= 128: K also split over CTAs (gluon_wgmma.split_plan, run 40a): 32-row tiles to M = 32, 64-row
    # to 64, then tile_rows'; the most splits (<= 4, >= 8 K steps each) that keep one wave; only where the
    # CTAs fill that wave >= 70% (N = 1024, 11008x4096's 86 tiles, K = 256's 4 steps: the tc tiles), and
    # W4A16 (natural order) in 32-row tiles only from 3072 values of K a CTA (run 40b); M = 16 keeps the tc
    # tiles. Two K halves a CTA by its share of K.
    small = [(16, 4096, 4096), (17, 4096, 4096), (32, 6144, 4096), (33, 4096, 14336), (64, 28672, 4096),
             (77, 4096, 4096), (128, 6144, 4096), (64, 1024, 4096), (64, 11008, 4096), (32, 4096, 256),
             (32, 4096, 14336), (17, 28672, 4096)]
    want = {(16, 4096, 4096): "tc 16x64x256 s4", (17, 4096, 4096): "wgmma 32x128x64 s4",
            (32, 6144, 4096): "wgmma 32x128x64 s2", (33, 4096, 14336): "wgmma 64x128x64 s4",
            (64, 28672, 4096): "wgmma 64x128x64", (77, 4096, 4096): "wgmma 64x128x64 s2",
            (128, 6144, 4096): "wgmma 64x128x64", (64, 1024, 4096): "tc 64x64x128 s8",
            (64, 11008, 4096): "tc 64x64x64 s2", (32, 4096, 256): "tc 32x64x256 s1",
            (32, 4096, 14336): "wgmma 32x128x64 s4", (17, 28672, 4096): "wgmma 32x128x64"}
    for a_k64 in (False, True):
        got = {k: tg.select_config(*k, dev, cublas_prefill=not a_k64, a_k64=a_k64).short() for k in small}
        w4a16 = {(17, 4096, 4096): "tc 32x64x256 s4", (32, 6144, 4096): "tc 32x64x256 s4"}  # 1024, 2048 a CTA
        assert {k: v.split(" w")[0] for k, v in got.items()} == (want if a_k64 else {**want, **w4a16}), a_k64
    assert gwg.split_plan(16, 4096, 4096, 132, True) == (32, 4) and gwg.split_plan(16, 4096, 4096, 132, False) is None
    assert gwg.split_plan(96, 28672, 4096, 132, False) == (128, 1)
    assert [gwg.k_splits(t, K, p) for t, K, p in [(32, 2048, False), (32, 1024, False), (64, 2048, False),
                                                 (64, 7168, True), (32, 4096, True), (16, 2048, False)]] == \
        [2, 1, 1, 2, 1, 2]
    monkeypatch.setattr(tg, "_WGMMA_SPLIT_K", False)  # experiments: the tc tiles again
    assert tg.select_config(64, 4096, 4096, dev).kind == "tc"
    # beyond M = 1024 only where the prefill GEMM would not be cuBLAS: W4A4 (its K64 operand) at any M,
    # W4A16 with a per-row weight scale up to M = 2048; there too where the tiles fill the waves or
    # split into whole waves
    shapes = [(2048, 4096, 4096), (1536, 4096, 4096), (4096, 6144, 4096), (8192, 4096, 14336), (1100, 128, 4096),
              (2048, 4096, 4128)]
    w4a4 = {k: tg.select_config(*k, dev, cublas_prefill=False, a_k64=True).kind for k in shapes}
    assert w4a4 == {(2048, 4096, 4096): "wgmma", (1536, 4096, 4096): "wgmma", (4096, 6144, 4096): "wgmma",
                    (8192, 4096, 14336): "wgmma", (1100, 128, 4096): "dq", (2048, 4096, 4128): "dq"}
    w4a16 = {k: tg.select_config(*k, dev, cublas_prefill=False).kind for k in shapes}
    assert w4a16 == {**w4a4, (4096, 6144, 4096): "dq", (8192, 4096, 14336): "dq"}
    assert {tg.select_config(*k, dev, a_k64=True).kind for k in shapes} == {"dq"}  # cuBLAS prefill
    assert tg.select_config(2048, 4096, 4096, dev, cublas_prefill=False, allow_mma=False, a_k64=True).kind == "dq"
    # W4A4 writes its operand in the K64 order exactly where the wgmma kernel takes the product
    w4a4.update({k: tg.select_config(*k, dev, cublas_prefill=False, a_k64=True).kind for k in kinds})
    assert {k: tg.k64_operand(*k, dev) for k in w4a4} == {k: v == "wgmma" for k, v in w4a4.items()}
    # and W4A4 lets it launch at the quantizer's start there too (run 37b: as fast as or faster than later)
    monkeypatch.setattr(tg, "pdl_supported", lambda device: True)
    assert tg.pdl_mode(4096, 4096, 4096, dev) == "early" and tg.pdl_mode(2048, 4096, 4128, dev) is None
    monkeypatch.setattr(tg, "_WGMMA_K64", False)
    assert not tg.k64_operand(1024, 4096, 4096, dev)
    # launches: one where the tiles fill the waves; else whole waves of 256-row tiles, then one
    # wave of 128-row tiles (6144 rows at M = 1024: 33 x 4 = 132 tiles, then 15 x 8 = 120)
    assert gwg.plan(1024, 4096, 132) == [(0, 4096, 256)]
    assert gwg.plan(512, 6144, 132) == [(0, 6144, 256)]  # one wave
    assert gwg.plan(256, 4096, 132) == [(0, 4096, 64)] and gwg.plan(512, 4096, 132) == [(0, 4096, 128)]
    assert gwg.plan(256, 4096, 132, 256) == [(0, 4096, 256)]  # as select_config chose
    assert gwg.plan(1024, 6144, 132) == [(0, 4224, 256), (4224, 6144, 128)]
    assert gwg.plan(1024, 14336, 132) == [(0, 12672, 256), (12672, 14336, 128)]
    # not for fp16/fp32 activations (allow_mma=False)
    assert tg.select_config(1024, 4096, 4096, dev, allow_mma=False).kind == "dq"
    # what TMA and the kernel's loads take
    x = torch.zeros(8, 4096 + 64, dtype=torch.bfloat16)
    data, sb = torch.zeros(64, 2048, dtype=torch.uint8), torch.zeros(64, 256, dtype=torch.uint8)
    assert gwg.usable(x[:, :4096], data, sb)
    assert not gwg.usable(x[:, :4096].half(), data, sb)
    assert not gwg.usable(torch.zeros(8, 4100, dtype=torch.bfloat16)[:, :4096], data, sb)  # row stride 8200 bytes
    assert not gwg.usable(x[:, 4:4100], data, sb)  # base 8 bytes off


def test_is_available_on_cuda_8_or_9_and_the_interpreter():
    from vllm_fouroversix.backends import _auto_name
    from vllm_fouroversix.kernels.device import INTERPRET

    # CPU only through the interpreter (tests), and never picked there by default.
    assert TritonBackend.is_available(torch.device("cpu")) == INTERPRET
    assert _auto_name(torch.device("cpu")) == "reference"
    if HAS_CUDA:
        major, _ = torch.cuda.get_device_capability()
        assert TritonBackend.is_available(torch.device("cuda")) == (major in (8, 9))


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("rule", RULES)
def test_quantizer_bit_exact_gpu(rule):
    from vllm_fouroversix.kernels.k64_order import permute_k64

    # K = 4096 (one block a thread), 14336 (two), 96 (one warp); fp16 too. 600 x 8192: many rows
    # of over 4096, in 128-block chunks. At most 32 rows of over 4096: each row split over parallel
    # programs (16 x 14336: 7 of 128 blocks; 3 x 20480: 10, 3 amax tiles); 2 x 4096: one a row.
    # Rows ending in a partial chunk: 528 x 4624 (289 blocks; 528 rows are 'many' on an H100) in
    # 128-block chunks (2 whole, 33 blocks), 5 x 9232 (577 blocks) over 3 programs of 256 (the last 65).
    for i, (shape, dtype) in enumerate([((512, 4096), torch.bfloat16), ((37, 14336), torch.bfloat16),
                                        ((3, 20480), torch.bfloat16), ((5, 96), torch.float16),
                                        ((600, 8192), torch.bfloat16), ((2, 4096), torch.bfloat16),
                                        ((16, 14336), torch.bfloat16), ((528, 4624), torch.bfloat16),
                                        ((5, 9232), torch.bfloat16)]):
        for mode in ("token", "tensor", "static", "token_amax"):
            x = _acts(shape, seed=i, dtype=dtype)
            x[0, :32] = 0
            x[1, 3] = -0.0
            x[1, 5] = -1e-30 if dtype == torch.bfloat16 else -1e-7
            x[-1, 32:48] = -1e-30 if dtype == torch.bfloat16 else -1e-7  # a block of scale 0: no sign bits
            amax = 0.5 * x.float().abs().max().item() if mode == "static" else None
            if mode == "token_amax":  # a given per-row amax (tensor parallelism), above each row's own
                amax = x.float().abs().amax(-1) * 1.25
            per_row = mode.startswith("token")
            r = nvfp4.quantize(x, rule, per_row=per_row, amax=amax)
            for packed in (True, False):  # with codes + scales, and the W4A4 operand alone
                q = tq.quantize_triton(x.cuda(), rule, per_row=per_row,
                                       amax=amax.cuda() if isinstance(amax, torch.Tensor) else amax,
                                       write_packed=packed, dequant_dtype=torch.bfloat16)
                _assert_quant_equal(q, r, per_row)
            if shape[1] % 64 == 0 and rule in ("mse", "abs_max"):  # the operand in the K64 order (wgmma's;
                # mse: the sign-mask output path, abs_max: the other)
                q2 = tq.quantize_triton(x.cuda(), rule, per_row=per_row,
                                        amax=amax.cuda() if isinstance(amax, torch.Tensor) else amax,
                                        write_packed=False, dequant_dtype=torch.bfloat16, perm_k64=True)
                assert torch.equal(q2.dequant.view(torch.int16), permute_k64(q.dequant).view(torch.int16)), (shape, mode)


@pytest.mark.gpu
def test_quantizer_ties_gpu():
    # As test_quantizer_ties_interpreted, at K = 4096 (one block a thread, 8 warps a row).
    x = torch.cat([_tie_heavy_acts(512, 4096, seed=5), _acts((1024, 4096), seed=6),
                   torch.tensor(_NEAR_TIE_BLOCKS).repeat(32, 256).bfloat16()])
    _check_ties(x, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 2, 3, 7, 16, 24, 48, 200, 300, 1024, 2600])
def test_backend_vs_reference_gpu(M):
    be = TritonBackend()
    N, K = 1536, 2048
    if M == 2600 and gwg.available(torch.device("cuda")):  # W4A4 beyond M = 1024: the wgmma kernel, K64 operand
        assert tg.k64_operand(M, N, K, torch.device("cuda"))
    wq = _weight(N, K, seed=M)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
        nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
    x = _acts((M, K), seed=M + 1)
    bias = torch.randn(N).to(torch.bfloat16)
    for mode in ("none", "token", "tensor"):
        out = be.linear(x.cuda(), qw, bias.cuda(), ActivationQuant("mse", mode)).float().cpu()
        ref = nvfp4.reference_linear(x, wq, bias, per_row=mode == "token", act_quant=mode != "none").float()
        torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())


@pytest.mark.gpu
@pytest.mark.parametrize("cap", [(8, 0), (8, 9)])
def test_pre_hopper_paths_gpu(cap, monkeypatch):
    """What a capability-8.x GPU runs (A100 / L40: no PDL, TMA or wgmma; no hardware E4M3
    conversion before 8.9), chosen by the package's own device checks and run on this GPU: every
    M's path against reference_linear, W4A16 and W4A4, bf16 and fp16."""
    from vllm_fouroversix.kernels import device as kd

    dev = torch.device("cuda")
    monkeypatch.setitem(kd._PROPS, torch.cuda.current_device(), (kd.num_sms(dev), cap))
    assert not kd.pdl_supported(dev) and not kd.tma_supported(dev) and not gwg.available(dev)
    assert kd.e4m3_cvt_supported(dev) == (cap >= (8, 9))
    be = TritonBackend()
    N, K = 640, 2048
    wq = _weight(N, K, seed=11)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
        nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
    kinds = set()
    for M in (1, 3, 8, 16, 300, 1100):  # gemv2, mma (cp.async ring), mma (plain loads), tc, dq, dq
        kinds.add(tg.select_config(M, N, K, dev, cublas_prefill=False).kind)
        for dtype in (torch.bfloat16, torch.float16):
            x = _acts((M, K), seed=M, dtype=dtype)
            bias = torch.randn(N).to(dtype)
            for mode in ("none", "token"):
                out = be.linear(x.cuda(), qw, bias.cuda(), ActivationQuant("mse", mode)).float().cpu()
                ref = nvfp4.reference_linear(x.float(), wq, bias.float(), per_row=mode == "token",
                                             act_quant=mode != "none").float()
                torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
    assert {"gemv2", "mma", "tc", "dq"} <= kinds and "wgmma" not in kinds, kinds
    assert not tg._MMA_FAILED, tg._MMA_FAILED  # the Gluon kernel ran, no fallback to the tiles


def _compile_triton(cc: str, args: list[str], timeout: int, env: dict | None = None,
                    expect: str = "") -> set[str]:
    """Run tools/compile_triton.py for capability ``cc``; assert it passed, that ``expect`` is in
    its summary and that every kernel it lists was built for that sm_; return the kernel names."""
    import subprocess

    tool = os.path.join(ROOT, "tools", "compile_triton.py")
    p = subprocess.run([sys.executable, tool, "--capability", cc, *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert expect in p.stdout, p.stdout[:500]
    arch = cc.replace(".", "")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("| _")]
    assert lines and all(ln.split("|")[2].strip() == arch for ln in lines), p.stdout
    return {ln.split("|")[1].strip() for ln in lines}


@pytest.mark.gpu
@pytest.mark.parametrize("cc", ["8.0", "8.6", "8.9"])
def test_kernels_compile_for_pre_hopper_gpu(cc):
    """tools/compile_triton.py: every kernel the backend launches on capability ``cc`` assembles
    for that sm_ (ptxas) and fits its shared memory (8.6 and 8.9: 99 KB a block)."""
    names = _compile_triton(cc, ["--ms", "1", "3", "16", "300", "1100", "--shapes", "640x2048", "200x1040"], 400)
    # The quantizer, the GEMV, the Gluon mma kernel, the tensor-core tiles, the dequant + prefill GEMM.
    for k in ("_quantize_kernel", "_fp4_gemv2_kernel", "_fp4_gemm_kernel", "_dequant_kernel", "_prefill_kernel"):
        assert k in names, (k, sorted(names))
    assert any("mma" in n for n in names) and not any("wgmma" in n for n in names), sorted(names)


# tools/setup_env.sh installs the Triton that CUDA vLLM brings here, apart from the venv's own.
TRITON_FOR_CUDA = os.path.join(sys.prefix, "triton-3.7.1")


@pytest.mark.skipif(HAS_CUDA, reason="with a GPU, test_kernels_compile_for_pre_hopper_gpu compiles with its Triton")
@pytest.mark.parametrize("cc", ["9.0", "8.0"])
def test_kernels_compile_without_gpu(cc):
    """tools/compile_triton.py on a machine without a GPU, with Triton 3.7.1 (CUDA torch 2.13's, so
    what vLLM 0.32+ runs the kernels with; the GPU machine has 3.6): every kernel the backend
    launches on capability ``cc`` assembles for that sm_, the Gluon kernels included (no fallback
    to the tiles: on 3.7 the mma kernel once failed to compile, see gluon_gemm), within the
    shared memory a block has, and the wgmma kernel's SASS never writes a register that an
    in-flight MMA reads."""
    if not os.path.isdir(TRITON_FOR_CUDA):
        pytest.skip(f"{TRITON_FOR_CUDA} missing: tools/setup_env.sh installs it")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([TRITON_FOR_CUDA, ROOT])
    names = _compile_triton(cc, ["--ms", "1", "3", "16", "32", "64", "200", "300", "1024", "1100", "--modes", "none",
                                 "token",
                                 "--dtypes", "bfloat16", "--shapes", "4096x4096", "200x1040"], 600, env,
                            expect="(Triton 3.7.1, no GPU;")
    want = {"_quantize_kernel", "_fp4_gemv2_kernel", "_fp4_mma_gemm_kernel", "_fp4_gemm_kernel", "_dequant_kernel"}
    want |= {"_fp4_wgmma_gemm_kernel", "_prefill_tma_kernel"} if cc == "9.0" else {"_prefill_kernel"}
    assert want <= names, (sorted(want - names), sorted(names))


def test_sass_wgmma_hazard_check():
    """compile_triton's SASS check flags a write to an in-flight HGMMA's registers, in line and
    across a loop's back edge while one MMA group stays in flight, and nothing once it is waited for."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compile_triton", os.path.join(ROOT, "tools", "compile_triton.py"))
    ct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ct)

    def sass(*ins):
        return "\n".join(f"        /*{16 * (n + 1):04x}*/                   {i} ;   /* 0x0 */" for n, i in enumerate(ins))

    mma = "HGMMA.64x256x16.F32.BF16 R24, R152, gdesc[UR12], R24, gsb0"
    assert ct.sass_wgmma_hazards(sass(mma, "LDS.128 R168, [R2]", "WARPGROUP.DEPBAR.LE gsb0, 0x0", "MOV R152, R3")) == []
    hit = ct.sass_wgmma_hazards(sass(mma, "IMAD.WIDE R154, R3, R4, R5", "WARPGROUP.DEPBAR.LE gsb0, 0x0"))
    assert len(hit) == 1 and "R154" in hit[0]
    assert len(ct.sass_wgmma_hazards(sass(mma, "FADD R100, R1, R2", "WARPGROUP.DEPBAR.LE gsb0, 0x0"))) == 1  # accumulator
    # a 64 x 128 MMA (a split plan's 128-row tiles) accumulates in 64 registers: R24..R87
    mma128 = "HGMMA.64x128x16.F32.BF16 R24, R88, gdesc[UR8], R24, gsb0"
    assert len(ct.sass_wgmma_hazards(sass(mma128, "FADD R87, R1, R2", "WARPGROUP.DEPBAR.LE gsb0, 0x0"))) == 1
    assert len(ct.sass_wgmma_hazards(sass(mma128, "IADD3 R91, R1, R2, RZ", "WARPGROUP.DEPBAR.LE gsb0, 0x0"))) == 1
    assert ct.sass_wgmma_hazards(sass(mma128, "IADD3 R107, P3, R107, 0x4, RZ", "WARPGROUP.DEPBAR.LE gsb0, 0x0")) == []
    # a 64 x 64 MMA (64-row tiles): 32 registers, R24..R55
    mma64 = "HGMMA.64x64x16.F32.BF16 R24, R60, gdesc[UR8], R24, gsb0"
    assert len(ct.sass_wgmma_hazards(sass(mma64, "FADD R55, R1, R2", "WARPGROUP.DEPBAR.LE gsb0, 0x0"))) == 1
    assert ct.sass_wgmma_hazards(sass(mma64, "FADD R56, R1, R2", "WARPGROUP.DEPBAR.LE gsb0, 0x0")) == []
    loop = ["LDS.128 R152, [R2]", mma, "WARPGROUP.DEPBAR.LE gsb0, 0x1", "@P0 BRA 0x10", "WARPGROUP.DEPBAR.LE gsb0, 0x0"]
    hit = ct.sass_wgmma_hazards(sass(*loop))
    assert len(hit) == 1 and hit[0].startswith("0x0010 LDS.128 R152"), hit
    loop[2] = "WARPGROUP.DEPBAR.LE gsb0, 0x0"
    assert ct.sass_wgmma_hazards(sass(*loop)) == []


@pytest.mark.gpu
def test_split_k_deterministic_and_graph_capturable_gpu():
    N, K = 1024, 4096
    wq = _weight(N, K, seed=0)
    data, scales, gw = wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda()
    x = _acts((4, K), seed=1).cuda()
    cfg = tg.GemmConfig("tc", BM=16, BN=32, BK=128, split_k=8)
    first = tg.fp4_gemm(x, data, scales, gw, config=cfg)
    for _ in range(3):
        assert torch.equal(tg.fp4_gemm(x, data, scales, gw, config=cfg), first)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        tg.fp4_gemm(x, data, scales, gw, config=cfg)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        out = tg.fp4_gemm(x, data, scales, gw, config=cfg)
    for _ in range(2):
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, first)


@pytest.mark.gpu
def test_gemv2_paths_gpu():
    # The layout-conversion-free GEMV: even and ragged K, N not a multiple of BN, M = 1..4 (rows past M
    # masked), split-K, bf16 and fp16 activations, an activation view with an odd row offset (copied).
    for (N, K) in [(200, 4096), (72, 1040)]:
        wq = _weight(N, K, seed=N, per_row_gw=True)
        data, scales, gw = wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda()
        bias = torch.randn(N).to(torch.bfloat16)
        for M in (1, 2, 3, 4):
            for dtype in (torch.bfloat16, torch.float16):
                x = _acts((M, K), seed=M, dtype=dtype)
                ref = nvfp4.reference_linear(x.float(), wq, bias.float(), act_quant=False).float()
                for cfg in (tg.GemmConfig("gemv2", BM=triton.next_power_of_2(M), BN=32, BK=512),
                            tg.GemmConfig("gemv2", BM=4, BN=16, BK=1024, split_k=3, num_warps=8),
                            tg.GemmConfig("gemv2", BM=1, BN=64, BK=256, split_k=2),
                            tg.GemmConfig("gemv2", BM=4, BN=16, BK=1024)):
                    out = tg.fp4_gemm(x.cuda(), data, scales, gw, bias=bias.cuda(), config=cfg).float().cpu()
                    torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
        xo = _acts((2, K + 1), seed=9)[:, 1:].cuda()  # odd storage offset: not viewable as int32
        ref = nvfp4.reference_linear(xo.cpu(), wq, None, act_quant=False).float()
        out = tg.fp4_gemm(xo, data, scales, gw, config=tg.GemmConfig("gemv2", BM=2, BN=32, BK=512)).float().cpu()
        torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())


@pytest.mark.gpu
def test_mma_gemm_gpu():
    # The Gluon small-M kernel (M 2..8, bf16): selected where available, with its cp.async ring
    # (M <= 4: 4 warps and 3 stages, 8 warps and 2 beyond K = 8192; fewer K steps than stages
    # at K = 512) or plain loads (M > 4: 8 or 4 warps); N off the 16-row grid, a per-channel
    # weight scale, bias, W4A4 per-row and per-tensor activation scales, an activation row
    # stride larger than K; the ring and plain loads give the same bits; fp16 activations and a
    # K that no warp count divides fall back to the Triton tiles with the same results.
    if not gg.available(torch.device("cuda")):
        pytest.skip("Gluon mma_v2 not available")
    dev = torch.device("cuda")
    for (N, K, mma) in [(200, 2048, True), (4096, 1536, True), (72, 512, True), (48, 9216, True), (40, 1040, False)]:
        wq = _weight(N, K, seed=N + K, per_row_gw=N == 200)
        data, scales, gw = wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda()
        bias = torch.randn(N).to(torch.bfloat16)
        for M in (2, 3, 5, 8):
            cfg = tg.select_config(M, N, K, dev)
            plan = gg.mma_plan(M, N, K)
            assert (cfg.kind, cfg.num_warps, cfg.num_stages) == ("mma", *plan) if mma else cfg.kind != "mma"
            x = _acts((M, K + 64), seed=M)[:, :K]  # row stride K + 64
            ref = nvfp4.reference_linear(x.float(), wq, bias.float(), act_quant=False).float()
            for dtype in (torch.bfloat16, torch.float16):
                out = tg.fp4_gemm(x.to(dtype).cuda(), data, scales, gw, bias=bias.cuda()).float().cpu()
                torch.testing.assert_close(out, ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
            if mma:  # the other loop (ring <-> plain loads) with the same warps: the same sums
                other = dataclasses.replace(cfg, num_stages=1 if cfg.num_stages > 1 else 3)
                if cfg.num_warps == 8 and other.num_stages == 3:
                    other = dataclasses.replace(other, num_stages=2)
                xb = x.to(torch.bfloat16).cuda()
                out = tg.fp4_gemm(xb, data, scales, gw, bias=bias.cuda())
                assert torch.equal(tg.fp4_gemm(xb, data, scales, gw, bias=bias.cuda(), config=other), out)
            for per_row in (True, False):
                q = tq.quantize_triton(x.cuda(), "mse", per_row=per_row, write_packed=False,
                                       dequant_dtype=torch.bfloat16)
                out = tg.fp4_gemm(q.dequant, data, scales, gw, ga=q.global_scale, bias=bias.cuda()).float().cpu()
                ref4 = nvfp4.reference_linear(x, wq, bias, per_row=per_row).float()
                torch.testing.assert_close(out, ref4, rtol=2 ** -7, atol=1e-3 * ref4.abs().max().item())
    assert not tg._MMA_FAILED, tg._MMA_FAILED


# GemmConfig(kind="wgmma") forced with its default BM: fp4_gemm takes gluon_wgmma.tile_rows' tiles
_WG = tg.GemmConfig(kind="wgmma")


def _case_id(case) -> str:
    N, K, M, cfg = case[:4]
    how = "selected" if cfg is None else "forced wgmma" if cfg is _WG else "forced " + cfg.short()
    return f"{N}x{K} M{M} {how}"


# (N, K, M, forced config or None, the kind select_config must take)
_WGMMA_CASES = [
    (4096, 4096, 1024, None, "wgmma"), (16384, 512, 200, None, "wgmma"),
    (6144, 512, 1024, None, "wgmma"),  # two launches (gluon_wgmma.plan), chained
    (16384, 256, 1100, None, "wgmma"),
    (4096, 512, 256, None, "wgmma"), (6144, 512, 192, None, "wgmma"),  # 64-, 128-row tiles
    # 64-row tiles in two K halves (gluon_wgmma.k_splits): natural K order from
    # K = 4096, the K64 order from 8192 (here 129 K steps: halves of 65 and 64)
    (4096, 4096, 136, None, "wgmma"),
    (1000, 8256, 77, tg.GemmConfig(kind="wgmma", BM=64), None),
    # K split over CTAs (16 < M <= 128): selected (64 rows, 4 splits; 32 rows, 4
    # splits of 3072 in two halves for W4A16); forced: 129 K steps in 33, 33, 33,
    # 30; 3 splits of 43 in 32-row tiles (two halves for W4A16); 2 splits of 7168
    # in two halves (both orders)
    (4096, 4096, 64, None, "wgmma"), (3072, 12288, 20, None, "wgmma"),
    (1000, 8256, 77, tg.GemmConfig(kind="wgmma", BM=64, split_k=4), None),
    (384, 8256, 45, tg.GemmConfig(kind="wgmma", BM=32, split_k=3), None),
    (1000, 14336, 100, tg.GemmConfig(kind="wgmma", BM=64, split_k=2), None),
    (200, 1088, 300, _WG, None), (384, 256, 77, _WG, None), (1000, 1024, 513, _WG, None),
    (200, 1088, 300, tg.GemmConfig(kind="wgmma", BM=128), None),
    (1000, 1024, 513, tg.GemmConfig(kind="wgmma", BM=256), None),
]


def _need_wgmma() -> torch.device:
    dev = torch.device("cuda")
    if not gwg.available(dev):
        pytest.skip("Gluon wgmma (sm_90) not available")
    return dev


# One case a test (not one loop): a run cut short by a timeout still reports the cases it finished
# (on a cold Triton cache the cases compile many kernel variants: minutes in all).
@pytest.mark.gpu
@pytest.mark.parametrize("N,K,M,cfg,kind", _WGMMA_CASES, ids=[_case_id(c) for c in _WGMMA_CASES])
def test_wgmma_gemm_gpu(N, K, M, cfg, kind):
    # The Gluon wgmma kernel (bf16, sm_90): selected at M = 1024 on a 4096-row weight, at
    # N >= 16384 (also beyond M = 1024: no cuBLAS prefill here, the weight scale is not given as a
    # float), at M = 1024 on 6144 rows in two launches (256- then 128-row tiles), and in tiles of 64
    # and 128 activation rows (M = 256 and 192), the 64-row tiles also in two K halves, with K split
    # over CTAs at M = 20..100 (32- and 64-row tiles); forced on
    # tile edges (M, N off the tiles, K = 17 steps of 64; the forced config's tiles: 64 rows by
    # gluon_wgmma.tile_rows, 128, 256), with a
    # per-channel weight scale, bias, W4A4 per-row and per-tensor activation scales, a row stride
    # larger than K; a row stride TMA cannot take and fp16 activations take the other paths.
    dev = _need_wgmma()
    wq = _weight(N, K, seed=N + K, per_row_gw=N in (200, 1000))
    data, scales, gw = wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda()
    bias = torch.randn(N, generator=torch.Generator().manual_seed(M)).to(torch.bfloat16)  # one case a test: its own seed
    if kind:
        assert tg.select_config(M, N, K, dev, cublas_prefill=False).kind == kind
    xs = _acts((M, K + 64), seed=M)  # row stride K + 64
    x = xs[:, :K]
    ref = nvfp4.reference_linear(x.float(), wq, bias.float(), act_quant=False).float()
    tol = dict(rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())
    out = tg.fp4_gemm(xs.cuda()[:, :K], data, scales, gw, bias=bias.cuda(), config=cfg).float().cpu()
    torch.testing.assert_close(out, ref, **tol)
    for per_row, b in ((True, bias), (False, bias), (True, None)):  # compiled variants: with and without bias
        ref4 = nvfp4.reference_linear(x, wq, b, per_row=per_row).float()
        for k64 in (False, True):  # the operand in the K64 order: the kernel's PERM decode
            q = tq.quantize_triton(x.cuda(), "mse", per_row=per_row, write_packed=False,
                                   dequant_dtype=torch.bfloat16, perm_k64=k64)
            out = tg.fp4_gemm(q.dequant, data, scales, gw, ga=q.global_scale,
                              bias=None if b is None else b.cuda(), config=cfg, a_k64=k64)
            torch.testing.assert_close(out.float().cpu(), ref4, rtol=2 ** -7, atol=1e-3 * ref4.abs().max().item())
    # a K64 operand on another path (a fallback) is put back in order first
    out = tg.fp4_gemm(q.dequant, data, scales, gw, ga=q.global_scale, config=tg.GemmConfig(kind="dq"), a_k64=True)
    torch.testing.assert_close(out.float().cpu(), ref4, rtol=2 ** -7, atol=1e-3 * ref4.abs().max().item())
    if cfg is None:  # the backend hands the wgmma kernel the K64 operand where it takes the product;
        assert tg.k64_operand(M, N, K, dev)
        # fall back: a row stride off 16 bytes, fp16
        xo = torch.empty(M, K + 4, dtype=torch.bfloat16, device=dev)[:, :K]
        xo.copy_(x)
        out = tg.fp4_gemm(xo, data, scales, gw, bias=bias.cuda()).float().cpu()
        torch.testing.assert_close(out, ref, **tol)
        out = tg.fp4_gemm(x.half().cuda(), data, scales, gw, bias=bias.cuda()).float().cpu()
        torch.testing.assert_close(out, ref, **tol)
    assert not tg._WGMMA_FAILED, tg._WGMMA_FAILED


@pytest.mark.gpu
def test_wgmma_gemm_split_without_k_steps_refused_gpu():
    # a split without K steps is refused (2 K steps in 4 splits)
    _need_wgmma()
    wq = _weight(256, 128, seed=5)
    with pytest.raises(ValueError, match="splits=4"):
        tg.fp4_gemm(_acts((64, 128), seed=1).cuda(), wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda(),
                    config=tg.GemmConfig(kind="wgmma", BM=64, split_k=4))
    assert not tg._WGMMA_FAILED, tg._WGMMA_FAILED


_PDL_CASES = [
    (4096, 4096, 1, None), (1024, 14336, 1, None), (2048, 4096, 4, None), (512, 4096, 16, None),
    (16384, 1024, 8, None), (16384, 512, 200, None), (6144, 512, 1024, None),
    (16384, 256, 1100, None), (4096, 512, 256, None), (4096, 4096, 200, None),
    (4096, 4096, 64, None), (6144, 1024, 20, None),
    (2048, 4096, 2, tg.GemmConfig("gemv2", BM=2, BN=32, BK=512, split_k=2)),
    (1024, 14336, 4, tg.GemmConfig("gemv2", BM=4, BN=16, BK=1024)),
    (200, 128, 300, _WG), (1000, 1024, 513, _WG),
]


@pytest.mark.gpu
@pytest.mark.parametrize("N,K,M,cfg", _PDL_CASES, ids=[_case_id(c) for c in _PDL_CASES])
def test_w4a4_pdl_gpu(N, K, M, cfg):
    # The quantizer lets the GEMM launch early (programmatic dependent launch); the GEMM must
    # still read this call's activations. Each call quantizes new values into a freshly
    # allocated buffer (the allocator hands back the last call's memory), so a GEMM that read
    # before the quantizer finished would see the previous call's values.
    # selected paths: gemv2 (M = 1; K > 8192: split 4), mma where Gluon is available (M = 4: its cp.async
    # ring; M = 8 at N >= 16384: plain loads), tc (M = 16, waiting at its start), wgmma on sm_90 (N >= 16384
    # at M = 200; 64-row tiles at 4096 x 512, M = 256, and in two K halves at 4096 x 4096, M = 200;
    # two launches at 6144 x 1024, the first a dependent of the quantizer, the second of the first,
    # reading the activations without waiting for it; K split over CTAs at 4096 x 4096, M = 64 and
    # 6144 x 1024, M = 20, the last CTA of a tile adding the partials);
    # explicit gemv2 tiles; forced wgmma
    # with fewer K steps than ring stages (K = 128) and on tile edges
    if cfg is _WG or (cfg is None and M > 128):
        _need_wgmma()
    wq = _weight(N, K, seed=K + M)
    data, scales, gw = wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda()
    # as TritonBackend launches them: the quantizer a dependent of the kernel before it,
    # letting the GEMM launch at its start where the GEMM reads its weight ahead
    mode = "early" if cfg is not None else tg.pdl_mode(M, N, K, torch.device("cuda"))
    for i in range(4):
        x = _acts((M, K), seed=100 * i + M).cuda()
        outs = {}
        for pdl in (True, False):  # PDL first: its buffer was last written with the previous x
            q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16,
                                   launch_dependents=pdl and mode == "early", pdl_wait=pdl and mode is not None)
            outs[pdl] = tg.fp4_gemm(q.dequant, data, scales, gw, ga=q.global_scale, config=cfg, pdl=pdl)
            del q  # free the operand now, for the next call to be handed it
        ref = nvfp4.reference_linear(x.cpu(), wq, None, per_row=True).float()
        assert torch.equal(outs[True], outs[False]), (N, K, M, i)
        torch.testing.assert_close(outs[True].float().cpu(), ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())


@pytest.mark.gpu
def test_w4a4_pdl_after_producer_gpu():
    # TritonBackend launches the quantizer as a programmatic dependent of whatever kernel comes
    # before it. Here that kernel writes x last: x is the tail of a ~64 MB elementwise output, so a
    # quantizer that read before waiting would see the values of the previous iteration. Paths:
    # GEMV (M = 1), mma or tc (M = 4), tc (M = 16), wgmma or decode + GEMM (M = 300).
    from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
    from vllm_fouroversix.backends.triton import TritonBackend

    be, plain = TritonBackend(), TritonBackend()
    plain.use_pdl = False
    act = ActivationQuant("mse", "token")
    for N, K, M in [(2048, 4096, 1), (2048, 4096, 4), (1024, 2048, 16), (1024, 1024, 300)]:
        wq = _weight(N, K, seed=N + M)
        qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
            nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
        buf = torch.empty(32 << 20, dtype=torch.bfloat16, device="cuda")
        src = torch.empty_like(buf)
        x = buf[-M * K:].view(M, K)
        for i in range(3):
            xi = _acts((M, K), seed=7 * i + M).cuda()
            src[-M * K:] = xi.reshape(-1)
            outs = []
            for b in (be, plain):
                buf.zero_()
                torch.cuda.synchronize()
                torch.mul(src, 1.0, out=buf)  # the kernel the quantizer follows
                outs.append(b.linear(x, qw, None, act))
            ref = nvfp4.reference_linear(xi.cpu(), wq, None, per_row=True).float()
            assert torch.equal(outs[0], outs[1]), (N, K, M, i)
            torch.testing.assert_close(outs[0].float().cpu(), ref, rtol=2 ** -7, atol=1e-3 * ref.abs().max().item())


@pytest.mark.gpu
def test_prefill_gemm_gpu():
    # The sm_90 TMA kernel with both tiles (M, N, K off the tile grid: TMA zero-fills, clips the
    # store), and the portable kernel where TMA cannot take the operands (a row stride that is
    # not a multiple of 16 bytes) or the dtype is fp32.
    cases = [(1000, 1000, 1040, False, "row", torch.bfloat16), (300, 2048, 4096, True, "tensor", torch.bfloat16),
             (129, 776, 512, False, "none", torch.float16), (200, 1001, 512, True, "row", torch.bfloat16),
             (150, 256, 256, False, "row", torch.float32)]
    for i, (M, N, K, gw_vec, ga_mode, dtype) in enumerate(cases):
        a, w, gw, ga, bias, ref = _prefill_case(M, N, K, seed=i, dtype=dtype, gw_vec=gw_vec, ga_mode=ga_mode)
        for tile in (None, tp.WIDE_TILE, tp.SQUARE_TILE):
            out = tp.prefill_gemm(a, w, gw, ga, bias, tile=tile)
            assert out.dtype == dtype
            _assert_prefill_close(out, ref)


@pytest.mark.gpu
def test_fast_launch_gpu():
    # kernels.launch: a cached launch runs the kernel Triton itself would pick (bit for bit the
    # same outputs as Triton's launch), on the current stream and inside CUDA graphs; an
    # activation off 16-byte alignment gets its own specialization. Shapes cover the GEMV
    # (M = 1), the tensor-core tiles (M = 16), the wgmma kernel and the W4A4 path (M = 300).
    from vllm_fouroversix.kernels import launch

    if not launch.fast_launch_enabled():
        pytest.skip("fast launch is off for this Triton")
    be = TritonBackend()
    N, K = 1024, 4096
    wq = _weight(N, K, seed=11)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(
        nvfp4.NVFP4Tensor(wq.data.cuda(), wq.scales.cuda(), wq.global_scale.cuda())))
    bias = torch.randn(N).to(torch.bfloat16).cuda()
    acts = [ActivationQuant("mse", m) for m in ("none", "token", "tensor")]

    def run_all(x):
        q = tq.quantize_triton(x, "mae", dequant_dtype=torch.bfloat16)
        outs = [q.data, q.scales.view(torch.uint8), q.global_scale, q.dequant.view(torch.int16)]
        return outs + [be.linear(x, qw, bias, a).view(torch.int16) for a in acts]

    for M in (1, 16, 300):
        base = _acts((M, K + 8), seed=M).cuda()
        for x in (base[:, :K], base.reshape(-1)[4:4 + M * K].view(M, K)):  # aligned; 8 bytes off
            launch._ENABLED = False
            try:
                ref = run_all(x)
            finally:
                launch._ENABLED = True
            for _ in range(2):  # a miss (Triton launches and the entry is kept), then a hit
                for got, want in zip(run_all(x), ref):
                    assert torch.equal(got, want), M
    specs = {k[1][0] for k in tq._QUANTIZE._cache}  # Triton's specialization of x_ptr
    assert ("*bf16", "D") in specs and ("*bf16", "") in specs, specs

    # The current stream: the input is written on a side stream behind a long sleep; a launch on
    # another stream would read it before it is written.
    x = _acts((4, K), seed=5).cuda()
    want = be.linear(x, qw, bias, acts[1])
    s = torch.cuda.Stream()
    xin = torch.zeros_like(x)
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda._sleep(50_000_000)
        xin.copy_(x)
        got = be.linear(xin, qw, bias, acts[1])
    s.synchronize()
    assert torch.equal(got, want)

    # CUDA graphs: captured on the cached path, replayed on new inputs.
    xg = torch.zeros_like(x)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        outg = be.linear(xg, qw, bias, acts[1])
    for seed in (6, 7):
        xn = _acts((4, K), seed=seed).cuda()
        xg.copy_(xn)
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(outg, be.linear(xn, qw, bias, acts[1])), seed
