# Prepared in session 42 (no machine was lent that session): the GPU suite and the table with Triton 3.7.1,
# the version CUDA vLLM 0.32+ brings (CUDA torch 2.13 pins it). Every H100 number so far is Triton 3.6's; with 3.7.1
# the kernels have only been compiled (CI's test_kernels_compile_without_gpu), never run.
# Here, before the first call:  bash tools/pack_triton.sh   (-> .carry/triton-3.7.1.tar.xz, ~52 MB)
# Then one group a call, each carrying .carry (the archive is unpacked once a machine, into /tmp/t371):
#   run(command="bash benchmarks/hopper_raw/run43_triton371.sh wgmma", carry=[".carry"])
#   wgmma | paths | rest : run42_tests.sh's groups with Triton 3.7.1 ($OUT/run43_t371_tests_<group>.txt); `paths`
#                          also runs test_fast_launch_gpu with the fast launch forced on (off by default on 3.7)
#   bench                : bench_gemm --rotate at M = 1, 16, 1024 with 3.7.1, then with the machine's 3.6 (same call,
#                          same machine: compare the two runs' bf16 ratios, not their absolute times)
set -uo pipefail
export PYTHONUNBUFFERED=1
T=/tmp/t371
if [ ! -d "$T/triton-3.7.1/triton" ]; then
  python3 -c "import tarfile, sys; tarfile.open('.carry/triton-3.7.1.tar.xz').extractall('$T')" || {
    echo "run43: could not unpack .carry/triton-3.7.1.tar.xz (carry=['.carry'] in the call?)" >&2; exit 2; }
fi
T371="$T/triton-3.7.1"
PYTHONPATH="$T371" python3 -c "import triton; assert triton.__version__ == '3.7.1', triton.__version__" || exit 2
case "$1" in
  wgmma|paths|rest)
    TRITON_DIR="$T371" TAG=run43_t371 bash benchmarks/hopper_raw/run42_tests.sh "$1"
    if [ "$1" = paths ]; then
      VLLM_FOUROVERSIX_FAST_LAUNCH=1 PYTHONPATH="$T371:." timeout 120 python3 -m pytest -v -p no:cacheprovider \
        tests/test_triton.py -m gpu -k fast_launch 2>&1 | tee "$OUT/run43_t371_fast_launch.txt" | grep -E "PASSED|FAILED|SKIPPED|passed|failed"
    fi ;;
  bench)
    nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
    for v in 371 36; do
      if [ $v = 371 ]; then P="$T371:."; else P=.; fi
      mkdir -p "$OUT/t$v"
      PYTHONPATH="$P" timeout 270 python3 tools/bench_gemm.py --rotate --no-ref --rep 25 --ms 1 16 1024 --out "$OUT/t$v" \
        > "$OUT/t$v/log.txt" 2>&1
      echo "== Triton $v (rc $?)"; grep -E "^\| [0-9]+x[0-9]+ \| [0-9]+ \|" "$OUT/t$v/log.txt" | tail -24
    done ;;
  *) echo "usage: $0 wgmma|paths|rest|bench" >&2; exit 2 ;;
esac
