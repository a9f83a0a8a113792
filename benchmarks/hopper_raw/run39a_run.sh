export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
timeout 220 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 | tail -4 | tee $OUT/run38d_tests.txt
BUDGET=140 timeout 170 python3 benchmarks/hopper_raw/run38e_exp38e.py 2>&1 | tee $OUT/run38e.txt | tail -40
BUDGET=150 timeout 180 python3 benchmarks/hopper_raw/run38f_exp38f.py 2>&1 | tee $OUT/run38f.txt | tail -40
