"""Off-device: compile .scratch/wgmma_ks2.py's kernel for sm_90 (Triton 3.6 from /tmp/t36lib). argv: TBM PERM STAGES REGS"""
import sys, os, subprocess, re
sys.path.insert(0, "/tmp/t36lib"); sys.path.insert(1, os.getcwd()); sys.path.insert(2, os.path.join(os.getcwd(), ".scratch"))
import torch
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
class Fake:
    def get_current_device(self): return 0
    def get_current_stream(self, d=None): return 0
    def get_current_target(self): return GPUTarget("cuda", 90, 32)
    def get_active_torch_device(self): return torch.device("cpu")
driver.set_active(Fake())
import wgmma_ks2 as k2
g = k2.g
TBM, PERM, ST, R = int(sys.argv[1]), bool(int(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
M, N, K = 256, 4096, 4096
a = torch.empty(M, K, dtype=torch.bfloat16); data = torch.empty(N, K // 2, dtype=torch.uint8)
sb = torch.empty(N, K // 16, dtype=torch.uint8); gw = torch.empty(1); ga = torch.empty(M); out = torch.empty(M, N, dtype=torch.bfloat16)
x_desc = g.TensorDescriptor.from_tensor(a, [TBM, 64], g._x_layout(TBM))
w_desc = g.TensorDescriptor.from_tensor(data, [64, 32], g.gl.NVMMASharedLayout.get_default_for([64, 32], g.gl.uint8))
k = k2._fp4_wgmma_ks2_kernel.warmup(x_desc, w_desc, sb, gw, ga, gw, out, M, N, K, sb.stride(0), out.stride(0), 1,
        TBM=TBM, STAGES=ST, GW_VEC=False, HAS_GA=True, HAS_BIAS=False, PDL=True, PERM=PERM, R=R, grid=(1,), num_warps=4)
cub = k.asm["cubin"]; open(f".scratch/ks2_{TBM}.cubin", "wb").write(cub)
sass = subprocess.run(["/tmp/t36lib/triton/backends/nvidia/bin/cuobjdump", "-sass", f".scratch/ks2_{TBM}.cubin"], capture_output=True, text=True).stdout
open(f".scratch/ks2_{TBM}.sass", "w").write(sass)
res = subprocess.run(["/tmp/t36lib/triton/backends/nvidia/bin/cuobjdump", "-res-usage", f".scratch/ks2_{TBM}.cubin"], capture_output=True, text=True).stdout
print(re.findall(r"REG:\d+|SHARED:\d+|LOCAL:\d+", res), "STL/LDL:", len(re.findall(r"\b(STL|LDL)\b", sass)), "HGMMA:", sorted(set(re.findall(r"HGMMA\.\w+", sass))))
print("smem", k.metadata.shared, "warps", k.metadata.num_warps)
sys.path.insert(0, "tools"); import compile_triton as ct
print("hazards", ct.wgmma_hazards(cub))
