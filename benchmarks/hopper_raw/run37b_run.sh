export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 200 python3 -m pytest tests/test_triton.py -m gpu -q -p no:cacheprovider -k "wgmma_gemm_gpu or w4a4_pdl" 2>&1 | tail -5 | tee $OUT/run37c_tests.txt
timeout 360 python3 .scratch/exp37b.py 2>&1 | tee $OUT/run37b.txt | tail -40
