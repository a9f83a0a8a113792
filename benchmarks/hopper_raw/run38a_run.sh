export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
timeout 480 python3 -m pytest tests -m gpu -q -p no:cacheprovider --durations=8 2>&1 | tail -20 | tee $OUT/run38a_gpu_suite.txt
