# Run 40d: after 40b's rule (W4A16 32-row tiles from 3072 K values a CTA): GPU tests (wgmma/PDL, then the
# paths and backend tests), then the table (bench_gemm --rotate) at M = 64 and 32.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 150 python3 -m pytest -v -p no:cacheprovider tests/test_triton.py -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run40d_tests_a.txt | tail -4
timeout 60 python3 -m pytest -v -p no:cacheprovider tests -m gpu \
  -k "(pdl or prefill_gemm or gemm_paths or fast_launch or backend) and not w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run40d_tests_b.txt | tail -4
timeout 150 python3 tools/bench_gemm.py --rotate --no-ref --rep 25 --ms 64 32 --out $OUT/run40d 2>&1 | tail -60
