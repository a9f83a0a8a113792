# Run 41b (the same warm machine right after 41a): the rest of the GPU suite (as 39e), under the session's last device time.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 320 python3 -m pytest -v -p no:cacheprovider tests -m gpu -k "not (pdl or prefill_gemm or gemm_paths or fast_launch or backend or wgmma_gemm)" 2>&1 | tee $OUT/run41b_tests_c.txt | tail -8
