# Run 40 (b, c): the GPU tests of the wgmma kernel and PDL (K split over CTAs added), then 40b.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log -1 --format=%h
timeout 330 python3 -m pytest -v -p no:cacheprovider tests/test_triton.py -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 \
  | tee $OUT/run40c_tests.txt | tail -8
BUDGET=200 timeout 250 python3 benchmarks/hopper_raw/run40b.py 2>&1 | tee $OUT/run40b.txt | tail -60
