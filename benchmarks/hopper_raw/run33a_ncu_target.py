"""ncu target: cuBLAS bf16, the wgmma kernel (one K step a wait) and PAIR, W4A16 and W4A4, M = 1024, 4096x4096; once each, profiled."""
import sys, os
sys.path.insert(0, os.getcwd())
import torch
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import gluon_wgmma as g
be = TritonBackend(); a16 = ActivationQuant("mse", "none"); a4 = ActivationQuant("mse", "token")
N, K, M = 4096, 4096, 1024
w = torch.randn(N, K, device="cuda") * 0.02
qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
wb = w.to(torch.bfloat16); x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
def step():
    torch.matmul(x, wb.T)
    for act in (a16, a4):
        g._PAIR = False; be.linear(x, qw, None, act)
        g._PAIR = True; be.linear(x, qw, None, act)
for _ in range(3):
    step()
torch.cuda.synchronize()
torch.cuda.profiler.start()
step()
torch.cuda.synchronize()
torch.cuda.profiler.stop()
