#!/usr/bin/env bash
# Packs the Triton that CUDA vLLM 0.32+ runs the kernels with (3.7.1: CUDA torch 2.13's pin; tools/setup_env.sh
# installs it in .venv/triton-3.7.1 for CI's compile check) so that a call of the GPU machine can carry it there.
# That machine has torch 2.11 with Triton 3.6, and a call carries at most 64 MiB, which the wheel (~690 MB
# installed) is far above. What is left out, and why the kernels are unchanged without it:
#   - libtriton.so's static symbol table (strip --strip-unneeded: 441 -> 172 MB; the dynamic symbols stay);
#   - libproton.so and cupti (Triton's profiler, which the package never imports);
#   - ptxas-blackwell (sm_100+; the GPU machine is an H100).
# Session 42 compiled every kernel specialization of tools/compile_triton.py's sm_90 sweep (40) with the packed copy
# and with the installed one, each into an empty cache: the SASS of all 40 is identical.
#
#   bash tools/pack_triton.sh            # -> .carry/triton-3.7.1.tar.xz (~52 MB, xz -9e: ~3 min on 2 cores)
#   run(command="bash benchmarks/hopper_raw/run43_triton371.sh wgmma", carry=[".carry"])   # the device tool
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/.venv/triton-3.7.1"
DEST="$ROOT/.carry/triton-3.7.1.tar.xz"
[ -d "$SRC/triton" ] || { echo "pack_triton: $SRC missing (tools/setup_env.sh installs it)" >&2; exit 1; }
command -v strip >/dev/null || { echo "pack_triton: needs binutils' strip" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP" "$DEST.part"' EXIT  # a failed run leaves no partial archive
tar -C "$(dirname "$SRC")" -cf - --exclude='triton/_C/libproton.so' --exclude='triton/backends/nvidia/lib/cupti' \
    --exclude='triton/backends/nvidia/bin/ptxas-blackwell' --exclude='__pycache__' triton-3.7.1 | tar -C "$TMP" -xf -
strip --strip-unneeded "$TMP/triton-3.7.1/triton/_C/libtriton.so"
mkdir -p "$(dirname "$DEST")"
tar -C "$TMP" -cf - triton-3.7.1 | xz -9e -T0 > "$DEST.part"
mv "$DEST.part" "$DEST"  # only a complete archive gets the name
echo "pack_triton: $DEST ($(du -h "$DEST" | cut -f1))"
