export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1; git diff --stat
BUDGET=330 timeout 420 python3 .scratch/exp38b.py 2>&1 | tee $OUT/run38b_tbm.txt
timeout 150 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or backend_vs" 2>&1 | tail -4 | tee $OUT/run38b_tests.txt
