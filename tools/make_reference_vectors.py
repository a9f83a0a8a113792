"""Generate tests/data/reference_vectors.safetensors from the fouroversix 1.0.5 reference.

The stored vectors let the test suite check `vllm_fouroversix.nvfp4` bit for
bit against the paper authors' PyTorch reference (`quantize_to_fp4` in
`src/fouroversix/quantize/pytorch/reference.py`, `use_blackwell_scale_layout=False`)
without installing it. Run once (needs torch and PyPI):

    .venv/bin/python tools/make_reference_vectors.py

Two outputs per case: ``sat`` with E2M1 rounding saturated at 6 (the SPEC;
the only change, see SPEC section 2) and ``raw`` from the unmodified reference,
so the test can show that they differ only where the reference overflows to 8.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "reference_vectors.safetensors"
SDIST = "fouroversix==1.0.5"
RULES = ("mse", "mae", "abs_max", "static_6", "static_4")
ROWS, K = 32, 256


def load_reference(workdir: Path):
    """Import only the reference quantizer from the sdist (its top level pulls in more)."""
    env = dict(os.environ, SKIP_CUDA_BUILD="1")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q",
         "-d", str(workdir), SDIST],
        check=True, env=env,
    )
    sdist = next(workdir.glob("fouroversix-1.0.5*"))
    with tarfile.open(sdist) as tar:
        tar.extractall(workdir, filter="data")
    src = next(workdir.glob("fouroversix-1.0.5/src/fouroversix"))
    pkg = workdir / "pkg" / "fouroversix"
    (pkg / "quantize" / "pytorch").mkdir(parents=True)
    for init in ("__init__.py", "quantize/__init__.py", "quantize/pytorch/__init__.py"):
        (pkg / init).write_text("")
    for rel in ("utils.py", "quantize/utils.py", "quantize/pytorch/reference.py"):
        shutil.copy(src / rel, pkg / rel)
    sys.path.insert(0, str(workdir / "pkg"))
    ref = importlib.import_module("fouroversix.quantize.pytorch.reference")
    utils = importlib.import_module("fouroversix.utils")
    return ref, utils.ScaleRule


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    gauss = torch.randn(ROWS, K, generator=g)
    heavy = torch.distributions.StudentT(torch.tensor(1.5)).sample((ROWS, K))
    outl = torch.randn(ROWS, K, generator=g)
    outl[3, 7] = 3e4
    outl[17, 100] = -8e3
    # Rows spanning 12 decades: per-tensor amax makes most block scales subnormal FP8.
    tiny = torch.randn(ROWS, K, generator=g) * torch.logspace(-10, 0, ROWS).unsqueeze(1)
    zrow = torch.randn(ROWS, K, generator=g)
    zrow[5] = 0
    zrow[9, :64] = 0
    grid = (torch.randint(-12, 13, (ROWS, K), generator=g).float() / 2)  # exact ties galore
    return {
        "gauss_f32": gauss,
        "heavy_f32": heavy.float(),
        "outlier_f32": outl,
        "tiny_f32": tiny,
        "zero_rows_f32": zrow,
        "ties_f32": grid,
        "gauss_bf16": (torch.randn(ROWS, K, generator=g) * 0.02).bfloat16(),
        "gauss_f16": (torch.randn(ROWS, K, generator=g) * 5).half(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ref, RSR = load_reference(Path(tmp))
        raw_e2m1 = ref.fake_quantize_to_e2m1

        def saturating(x, *, round_style=ref.RoundStyle.nearest):
            return raw_e2m1(x, round_style=round_style).clamp(-6, 6)

        def run(x: torch.Tensor, rule: str, saturate: bool, per_row: bool):
            ref.fake_quantize_to_e2m1 = saturating if saturate else raw_e2m1
            rows = [x[i : i + 1] for i in range(x.shape[0])] if per_row else [x]
            datas, scales, amaxes = [], [], []
            for r in rows:
                q, s, a = ref.quantize_to_fp4(r, scale_rule=RSR(rule), use_blackwell_scale_layout=False)
                datas.append(q)
                scales.append(s.view(torch.uint8).reshape(r.shape[0], -1))
                amaxes.append(a.reshape(1).float())
            return torch.cat(datas), torch.cat(scales), torch.cat(amaxes)

        tensors: dict[str, torch.Tensor] = {}
        for name, x in inputs().items():
            tensors[f"{name}.input"] = x.contiguous()
            for rule in RULES:
                for per_row in (False, True):
                    mode = "row" if per_row else "tensor"
                    for sat in (True, False):
                        d, s, a = run(x, rule, sat, per_row)
                        key = f"{name}.{rule}.{mode}.{'sat' if sat else 'raw'}"
                        tensors[f"{key}.data"] = d.contiguous()
                        tensors[f"{key}.scales"] = s.contiguous()
                        tensors[f"{key}.amax"] = a.contiguous()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(OUT), metadata={"source": "fouroversix 1.0.5 quantize_to_fp4", "rows": str(ROWS), "K": str(K)})
        print(f"wrote {len(tensors)} tensors to {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
