export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
BUDGET=200 timeout 260 python3 .scratch/exp39b.py 2>&1 | tee $OUT/run39b_exp.txt | tail -60
timeout 300 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or w4a4_pdl_gpu or wgmma_selection" -x 2>&1 | tail -15 | tee $OUT/run39b_tests.txt
