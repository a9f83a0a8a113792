# Run 41a (session 41's one machine start, batched): the final tree's wgmma/PDL GPU tests and the paths/backend
# tests (as 40d), then 40e (K split over CTAs at M = 136-256, run40e.py), then the table at M = 64.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 200 python3 -m pytest -v -p no:cacheprovider tests/test_triton.py -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run41a_tests_a.txt | tail -4
timeout 60 python3 -m pytest -v -p no:cacheprovider tests -m gpu \
  -k "(pdl or prefill_gemm or gemm_paths or fast_launch or backend) and not w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run41a_tests_b.txt | tail -4
BUDGET=140 timeout 190 python3 benchmarks/hopper_raw/run40e.py 2>&1 | tee $OUT/run41a_40e.txt | tail -30
timeout 120 python3 tools/bench_gemm.py --rotate --no-ref --rep 25 --ms 64 --out $OUT/run41a_bench 2>&1 | tail -40
