#!/usr/bin/env bash
# What benchmarks/hopper.md records, in one call on the H100 (device tool, no vLLM there;
# about 6 minutes): the GPU tests, the GEMM benchmark with its correctness checks
# (rotating weights, CUDA graphs) and the quantizer benchmark. Outputs go to DIR.
#   bash tools/hopper_checks.sh DIR        (on the device: COMMIT=<sha> bash tools/hopper_checks.sh "$OUT")
# COMMIT names the code in the output headers; the device's copy of .git can be stale,
# so git rev-parse there is only the fallback.
set -uo pipefail
out="${1:?usage: tools/hopper_checks.sh DIR}"
mkdir -p "$out"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=.
rc=0
echo "# PYTHONPATH=. python3 -m pytest tests -m gpu -q -p no:cacheprovider  (commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}, $(date -u +%F))" >"$out/pytest_gpu.txt"
python3 -m pytest tests -m gpu -q -p no:cacheprovider 2>&1 | tail -40 | tee -a "$out/pytest_gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
python3 tools/bench_gemm.py --check --rotate --no-ref --rep 25 --out "$out" 2>&1 | grep -v Warning | tail -80 || rc=1
python3 tools/bench_quantize.py --device cuda --deq 2>&1 | grep -v Warning | tee "$out/bench_quantize.txt" || rc=1
exit "$rc"
