export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
timeout 330 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or pdl or backend_vs or prefill_gemm or gemm_paths or fast_launch" 2>&1 | tail -6 | tee $OUT/run37e_tests.txt
timeout 200 python3 tools/bench_gemm.py --rotate --no-ref --rep 25 --ms 1024 2048 4096 --out $OUT 2>&1 | tail -16
