#!/usr/bin/env bash
# The test command of the README. From a fresh clone: sets up .venv (see
# tools/setup_env.sh), then runs the test suite. Extra arguments go to pytest,
# e.g. `tools/test.sh -m "not slow"` or `tools/test.sh tests/test_nvfp4.py`.
# Exit code is pytest's; "no tests collected" (5) counts as failure.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh" || { echo "[test] set-up failed" >&2; exit 1; }
cd "$ROOT"
export PYTHONUNBUFFERED=1
# vLLM on CPU sizes its KV cache from this (GiB); keep tests small.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
"$ROOT/.venv/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
