# 40a (prepared in session 39, not run): split-K over CTAs for the wgmma kernel at M = 16-128 (run40a_exp40a.py).
# Run on a clean tree of main; leaves the patch applied (git checkout vllm_fouroversix/ afterwards).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git apply benchmarks/hopper_raw/run40a_wgmma_splitk.patch
BUDGET=400 timeout 480 python3 benchmarks/hopper_raw/run40a_exp40a.py 2>&1 | tee $OUT/run40a.txt | tail -80
