# Run 40f (session 40's last device time; a compact 40d): the wgmma/PDL GPU tests on the final tree, then the
# issue's table (bench_gemm --rotate) at M = 64.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 150 python3 -m pytest -v -p no:cacheprovider tests/test_triton.py -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run40f_tests.txt | tail -4
timeout 110 python3 tools/bench_gemm.py --rotate --no-ref --rep 25 --ms 64 --out $OUT/run40f 2>&1 | tail -40
