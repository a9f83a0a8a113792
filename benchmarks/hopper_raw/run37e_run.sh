export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
timeout 240 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or pdl or backend_vs or prefill_gemm or gemm_paths or fast_launch" 2>&1 | tail -6 | tee $OUT/run37e_tests.txt
