"""Blackwell kernels, verified without a Blackwell GPU (issue #6).

- pure host logic (tiles, layout/padding/packing, the backend's weight layout,
  argument planning) against ``vllm_fouroversix.nvfp4``;
- the quantizer's block math (``quant_math``, the source the kernel traces) bit
  for bit against ``nvfp4.quantize`` through the torch executor;
- compilation for sm_100a on this CPU machine: one GEMM per shipped tile/cluster
  (all 64 shipped variants: ``tools/compile_blackwell.py``) and the quantizer,
  asserting the PTX holds the block-scaled MMA and the documented conversions;
- the ``export_to_c`` / ``load_module`` round trip.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

from cutlass_kernels import cache as kernel_cache
from cutlass_kernels import layout, quant_math, tiles
from cutlass_kernels.cache import GemmKey, QuantKey
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import QuantizedWeight

ARCH = "sm_100a"


# ---------------------------------------------------------------- host logic
def test_tile_selection():
    assert tiles.select_config(1, 4096, 4096) is tiles.DECODE
    assert tiles.select_config(128, 6144, 4096) is tiles.DECODE
    assert tiles.select_config(16, 148 * 128 + 1, 4096) is tiles.SMALL  # enough N tiles
    assert tiles.select_config(256, 4096, 4096) is tiles.SMALL
    assert tiles.select_config(1024, 4096, 4096) is tiles.PREFILL
    assert tiles.select_config(4096, 28672, 4096) is tiles.PREFILL_LARGE
    assert tiles.select_config(4096, 2048, 4096) is tiles.PREFILL
    for cfg in tiles.SHIPPED:
        assert cfg.max_active_clusters() * cfg.cluster_size <= tiles.B200_SMS
    with pytest.raises(ValueError):
        tiles.select_config(0, 8, 32)


@pytest.mark.parametrize("rows,cols", [(1, 4), (5, 7), (128, 4), (130, 9), (300, 257)])
def test_swizzled_offset_matches_swizzle_scales(rows, cols):
    raw = torch.randint(0, 255, (rows, cols), dtype=torch.uint8)
    ref = nvfp4.swizzle_scales(raw).reshape(-1)
    assert ref.numel() == layout.swizzled_scale_numel(rows, cols)
    cb = (cols + 3) // 4
    flat = torch.zeros_like(ref)
    r = torch.arange(rows).repeat_interleave(cols)
    c = torch.arange(cols).repeat(rows)
    flat[layout.swizzled_offset(r, c, cb)] = raw.reshape(-1)  # the kernel's formula, vectorized
    assert torch.equal(flat, ref)
    assert torch.equal(layout.unswizzle_flat(ref, rows, cols), raw)
    assert layout.swizzled_offset(rows - 1, cols - 1, cb) < ref.numel()  # python ints too


def test_k_padding_and_packing():
    assert [layout.padded_k(k) for k in (16, 32, 48, 4096, 14336)] == [32, 32, 64, 4096, 14336]
    with pytest.raises(ValueError):
        layout.padded_k(24)
    x = torch.randn(3, 48)
    t = nvfp4.quantize(x)
    padded = layout.pad_k_packed(t.data, 48)
    assert padded.shape == (3, 32)
    assert torch.equal(padded[:, :24], t.data) and not padded[:, 24:].any()
    # decoding the padded codes gives the same values plus zeros (codes 0)
    codes = nvfp4.unpack_codes(padded)
    assert torch.equal(codes[:, :48], nvfp4.unpack_codes(t.data)) and not codes[:, 48:].any()
    # the kernel packs 8 codes per 32-bit word, element i at bits 4i: the byte order of pack_codes
    c8 = torch.randint(0, 16, (8,), dtype=torch.uint8)
    word = sum(int(c8[i]) << (4 * i) for i in range(8))
    assert list(word.to_bytes(4, "little")) == nvfp4.pack_codes(c8).tolist()


def test_scale_column_padding_agrees_between_quantizer_and_gemm():
    # the quantizer pads K/16 to a multiple of 4; the GEMM sees K padded to 32:
    # both must agree on the number of 64-element scale column blocks
    for k in range(16, 4096, 16):
        assert -(-(k // 16) // 4) == -(-(layout.padded_k(k) // 16) // 4)


def test_backend_weight_layout():
    from vllm_fouroversix.backends.cutedsl import CuteDSLBackend, prepare_weight_tensors

    w = torch.randn(40, 80)
    qw = QuantizedWeight.from_nvfp4(nvfp4.quantize(w))
    t = prepare_weight_tensors(qw)
    assert t["data"].shape == (40, 48)
    assert torch.equal(t["data"][:, :40], qw.data)
    assert torch.equal(layout.unswizzle_flat(t["scales"], 40, 5), qw.scales.view(torch.uint8))
    assert t["global_scale"].shape == (1,) and not t["col_scale"]
    qw2 = QuantizedWeight(qw.data, qw.scales, torch.rand(40), 40, 80)
    assert prepare_weight_tensors(qw2)["col_scale"]
    assert not CuteDSLBackend.is_available(torch.device("cpu"))


def test_plan_linear():
    from cutlass_kernels.launch import plan_linear

    p = plan_linear((2, 3, 4096), torch.bfloat16, 6144, 4096, "token", "mse", False, True, ARCH)
    assert (p.m, p.n, p.k_pad) == (6, 6144, 4096)
    assert p.quant == QuantKey(ARCH, "mse", "token", "bfloat16")
    assert p.gemm.tile_mn == tiles.DECODE.tile_mn and p.gemm.row_scale and p.gemm.bias
    p = plan_linear((4096, 4112), torch.float16, 4096, 4112, "static", "mae", True, False, ARCH)
    assert p.k_pad == 4128 and p.quant.amax_mode == "given" and not p.gemm.row_scale
    assert p.gemm.col_scale and p.gemm.out_dtype == "float16"
    with pytest.raises(ValueError):
        plan_linear((1, 64), torch.bfloat16, 12, 64, "token", "mse", False, False, ARCH)
    with pytest.raises(ValueError):
        plan_linear((1, 64), torch.bfloat16, 16, 64, "none", "mse", False, False, ARCH)


# ------------------------------------------------------ quantizer block math
def _quant_math_reference(x: torch.Tensor, rule: str, per_row: bool, amax=None):
    R, K = x.shape
    xf = x.float().reshape(R, K // 16, 16)
    if amax is not None:
        am = torch.full((R, 1), float(amax))
    elif per_row:
        am = xf.abs().amax(dim=(1, 2)).reshape(R, 1)
    else:
        am = xf.abs().max().reshape(1, 1).expand(R, 1)
    am = am.expand(R, K // 16).contiguous()
    enc, dec = quant_math.row_constants(am, nvfp4.rule_constants(rule).MS, quant_math.TorchOps)
    codes, sb = quant_math.quantize_block([xf[..., i] for i in range(16)], am, enc, dec, rule,
                                          quant_math.TorchOps)
    return nvfp4.pack_codes(torch.stack(codes, -1).reshape(R, K)), sb.to(torch.uint8)


@pytest.mark.parametrize("rule", [r.value for r in nvfp4.ScaleRule])
@pytest.mark.parametrize("mode", ["token", "tensor", "static"])
def test_kernel_block_math_is_the_spec(rule, mode):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(96, 512, generator=g) * torch.rand(96, 1, generator=g) * 4
    x[0] = 0
    x[1, :16] = torch.tensor([10.0, 20, 30, 40] + [0] * 12)  # SPEC golden block
    x[2] = -(x[2].abs()) * 1e-3  # tiny negatives: -0 codes, subnormal scales
    x[3, :32] = x[3, :32] * 1e4  # blocks above a static amax saturate
    for dt in (torch.bfloat16, torch.float16):
        xd = x.to(dt)
        amax = 3.0 if mode == "static" else None
        ref = nvfp4.quantize(xd, rule, per_row=mode == "token", amax=amax)
        data, sb = _quant_math_reference(xd, rule, mode == "token", amax)
        assert torch.equal(data, ref.data), (rule, mode, dt)
        assert torch.equal(sb, ref.scales.view(torch.uint8)), (rule, mode, dt)


def test_golden_block():
    x = torch.zeros(1, 16)
    x[0, :4] = torch.tensor([10.0, 20, 30, 40])
    data, sb = _quant_math_reference(x, "mse", True)
    assert sb.item() == 0xF4 or float(torch.tensor([sb.item()], dtype=torch.uint8).view(torch.float8_e4m3fn).float()) == 384
    assert data[0, :2].tolist() == [0x42, 0x65]
    data, sb = _quant_math_reference(x, "static_6", True)
    assert data[0, :2].tolist() == [0x53, 0x76]


# --------------------------------------------------------------- compilation
@pytest.fixture(scope="module")
def dsl(tmp_path_factory):
    # --keep-ptx artifacts go to a temp dir (read at the DSL's import)
    os.environ.setdefault("CUTE_DSL_DUMP_DIR", str(tmp_path_factory.mktemp("cute_dump")))
    pytest.importorskip("cutlass")
    pytest.importorskip("cutlass.cute")
    from cutlass_kernels import cache

    return cache


BLOCK_SCALED_MMA = re.compile(r"tcgen05\.mma\.cta_group::(\d)\.kind::mxf4nvf4\.block_scale\.block16")


def _gemm_case(cfg, **kw):
    return GemmKey(ARCH, cfg.tile_mn, cfg.cluster_mn, max_active_clusters=cfg.max_active_clusters(), **kw)


# one per shipped tile/cluster, rotating through the epilogue modes and dtypes
GEMM_CASES = [
    _gemm_case(tiles.DECODE, out_dtype="bfloat16", row_scale=True, col_scale=False, bias=False),
    _gemm_case(tiles.SMALL, out_dtype="float16", row_scale=False, col_scale=True, bias=True),
    _gemm_case(tiles.PREFILL, out_dtype="bfloat16", row_scale=True, col_scale=True, bias=True),
    _gemm_case(tiles.PREFILL_LARGE, out_dtype="bfloat16", row_scale=False, col_scale=False, bias=False),
]
assert {(k.tile_mn, k.cluster_mn) for k in GEMM_CASES} == {(c.tile_mn, c.cluster_mn) for c in tiles.SHIPPED}


@pytest.mark.parametrize("key", GEMM_CASES, ids=lambda k: k.symbol)
def test_gemm_compiles_to_block_scaled_mma(dsl, key):
    fn = dsl.compile_gemm(key, keep_ptx=True)
    ptx = fn.__ptx__
    assert ptx and ".target sm_100a" in ptx
    groups = set(BLOCK_SCALED_MMA.findall(ptx))
    assert groups == {"2" if key.tile_mn[0] == 256 else "1"}
    assert "tcgen05.cp" in ptx and "tcgen05.ld" in ptx  # scales smem->TMEM, accumulator TMEM->regs
    assert "cp.async.bulk.tensor" in ptx  # TMA
    if key.bias or key.row_scale or key.col_scale:
        assert "ld.global" in ptx  # epilogue vectors


@pytest.mark.parametrize("key", [QuantKey(ARCH, "mse", "token", "bfloat16"),
                                 QuantKey(ARCH, "static_6", "given", "float16"),
                                 QuantKey(ARCH, "abs_max", "given", "bfloat16")],
                         ids=lambda k: k.symbol)
def test_quantizer_compiles(dsl, key):
    ptx = dsl.compile_quantizer(key, keep_ptx=True).__ptx__
    assert "cvt.rn.satfinite.e4m3x2.f32" in ptx
    assert "cvt.rn.satfinite.e2m1x2.f32" in ptx
    assert "div.approx" not in ptx and "div.full" not in ptx  # IEEE division only
    assert "fma.rn.f32" not in ptx  # nothing contracted: the SPEC's rounding steps stand
    if key.rule in ("mse", "mae", "abs_max"):
        assert "0f3FC00000" in ptx  # the x1.5 of the map-to-4 candidate
    if key.amax_mode == "token":
        assert "shfl.sync.bfly" in ptx  # in-kernel row amax


def test_export_round_trip(dsl, tmp_path):
    cache = dsl.KernelCache()
    qkey = QuantKey(ARCH, "mse", "token", "bfloat16")
    gkey = GEMM_CASES[0]
    cache.warmup([qkey, gkey])
    assert len(cache) == 2
    out = cache.export(tmp_path)
    for key in (qkey, gkey):
        assert (out / f"{key.symbol}.h").exists() and (out / f"{key.symbol}.o").exists()
    assert "fos_gemm" in (out / "manifest.json").read_text()
    # a fresh cache backed by the export loads instead of compiling
    aot = dsl.KernelCache(aot_dir=out)
    fn = aot.get(qkey)
    assert fn is not None and qkey not in aot.compile_seconds


@pytest.mark.slow
def test_every_shipped_variant_compiles() -> None:
    """All shipped GEMM and quantizer variants compile for sm_100a with the block-scaled
    MMA / conversions in their PTX (tools/compile_blackwell.py; about 2 minutes)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, CUTE_DSL_ARCH="sm_100a")
    p = subprocess.run(
        [sys.executable, str(root / "tools" / "compile_blackwell.py")],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    n = len(kernel_cache.all_shipped_gemm_keys("sm_100a")) + len(kernel_cache.all_quantizer_keys("sm_100a"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"{n}/{n} variants compiled" in p.stdout


@pytest.mark.parametrize("n", [64, 4096, 6144, 18944, 28672, 65536])
def test_warmup_m_reaches_every_config_the_rule_can_pick(n: int) -> None:
    """The start-up warm-up (CuteDSLBackend.warmup_layer) compiles the configuration of
    every M bucket; together they must be every configuration serving can select, so no
    kernel compiles on the serving path."""
    reachable = {tiles.select_config(m, n, 4096) for m in range(1, 9000)}
    warmed = {tiles.select_config(m, n, 4096) for m in tiles.WARMUP_M}
    assert reachable == warmed
