# Run 42b: the whole table (M = 1, 16, 64, 256, 1024, 4096; the four Llama-3-8B shapes; bf16 cuBLAS,
# W4A16, W4A4 and the reference backend) on the current tree, one call (prepared in session 42, not run yet).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 550 python3 tools/bench_gemm.py --rotate --rep 25 --ms 1 16 64 256 1024 4096 --out $OUT 2>&1 | tee $OUT/run42b_log.txt | tail -80
