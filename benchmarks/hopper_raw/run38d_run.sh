# 38d (prepared, not run in session 38): the GPU tests of run 38's change, then W4A16 at 128 < M < 192 on 4096x4096.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
git log --oneline -1
timeout 300 python3 -m pytest tests -m gpu -q -p no:cacheprovider -k "wgmma_gemm or w4a4_pdl_gpu" 2>&1 | tail -4 | tee $OUT/run38d_tests.txt
