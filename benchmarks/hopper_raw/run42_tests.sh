# Prepared in session 41 for the next machine start: the GPU suite one group a call, each under a timeout about
# twice its cold-cache time (a fresh machine compiles every kernel variant). Since 41 the wgmma and PDL tests are
# one test a case, so a cut-off run still lists the cases it finished.
#   bash benchmarks/hopper_raw/run42_tests.sh wgmma   # test_wgmma_gemm_gpu[*] + test_w4a4_pdl_gpu[*] (~200-300 s cold)
#   bash benchmarks/hopper_raw/run42_tests.sh paths   # PDL, prefill, paths, fast launch, backend (~60-120 s cold)
#   bash benchmarks/hopper_raw/run42_tests.sh rest    # everything else (~240-400 s cold)
# TRITON_DIR (a folder holding another Triton's `triton` package, put first on the path) and TAG (the output
# file's prefix, default run42) let run43_triton371.sh run the same groups with Triton 3.7.1.
export PYTHONUNBUFFERED=1 PYTHONPATH="${TRITON_DIR:+$TRITON_DIR:}."
case "$1" in
  wgmma) K="wgmma_gemm or w4a4_pdl_gpu" ;;
  paths) K="(pdl or prefill_gemm or gemm_paths or fast_launch or backend) and not w4a4_pdl_gpu" ;;
  rest) K="not (pdl or prefill_gemm or gemm_paths or fast_launch or backend or wgmma_gemm)" ;;
  *) echo "usage: $0 wgmma|paths|rest" >&2; exit 2 ;;
esac
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, triton.__file__)"
timeout ${TIMEOUT:-570} python3 -m pytest -v -p no:cacheprovider tests -m gpu -k "$K" 2>&1 | tee "$OUT/${TAG:-run42}_tests_$1.txt" \
  | grep -E "PASSED|FAILED|ERROR|passed|failed" | tail -60
