# 40e (prepared in session 40, not run): K split over CTAs at 128 < M <= 256 (run40e.py), after run40d_run.sh.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
BUDGET=200 timeout 260 python3 benchmarks/hopper_raw/run40e.py 2>&1 | tee $OUT/run40e.txt | tail -30
