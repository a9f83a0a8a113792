"""Off-device: compile gluon_wgmma's kernel for sm_90 (Triton from LIB). argv: LIB TBM PERM KSPLIT [K]; env SPLITS (> 1 needs run40a_wgmma_splitk.patch)"""
import sys, os, subprocess, re, traceback
LIB = sys.argv[1]
sys.path.insert(0, LIB); sys.path.insert(1, os.getcwd())
import torch
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
class Fake:
    def get_current_device(self): return 0
    def get_current_stream(self, d=None): return 0
    def get_current_target(self): return GPUTarget("cuda", 90, 32)
    def get_active_torch_device(self): return torch.device("cpu")
driver.set_active(Fake())
from vllm_fouroversix.kernels import gluon_wgmma as g
TBM, PERM, KS = int(sys.argv[2]), bool(int(sys.argv[3])), int(sys.argv[4]); SPL = int(os.environ.get("SPLITS", "1"))
K = int(sys.argv[5]) if len(sys.argv) > 5 else 4096
M, N = 256, 4096
a = torch.empty(M, K, dtype=torch.bfloat16); data = torch.empty(N, K // 2, dtype=torch.uint8)
sb = torch.empty(N, K // 16, dtype=torch.uint8); gw = torch.empty(1); ga = torch.empty(M); out = torch.empty(M, N, dtype=torch.bfloat16)
x_desc = g.TensorDescriptor.from_tensor(a, [TBM, 64], g._x_layout(TBM))
w_desc = g.TensorDescriptor.from_tensor(data, [64, 32], g.gl.NVMMASharedLayout.get_default_for([64, 32], g.gl.uint8))
try:
    k = g._fp4_wgmma_gemm_kernel.warmup(x_desc, w_desc, sb, gw, ga, gw, out, M, N, K, sb.stride(0), out.stride(0), 1,
        TBM=TBM, STAGES=4, GW_VEC=False, HAS_GA=PERM, HAS_BIAS=False, PDL=PERM, PERM=PERM, KSPLIT=KS, grid=(1,), num_warps=4, **({"SPLITS": SPL, "part_ptr": ga, "lock_ptr": torch.empty(4, dtype=torch.int32)} if SPL > 1 else {}))
except Exception as e:
    traceback.print_exc(); sys.exit(1)
tag = f"{TBM}_{int(PERM)}_{KS}_s{SPL}"
cub = k.asm["cubin"]; open(f".scratch/wg_{tag}.cubin", "wb").write(cub)
bin_ = os.path.join(LIB, "triton/backends/nvidia/bin/cuobjdump")
sass = subprocess.run([bin_, "-sass", f".scratch/wg_{tag}.cubin"], capture_output=True, text=True).stdout
open(f".scratch/wg_{tag}.sass", "w").write(sass)
res = subprocess.run([bin_, "-res-usage", f".scratch/wg_{tag}.cubin"], capture_output=True, text=True).stdout
print(tag, re.findall(r"REG:\d+|SHARED:\d+|LOCAL:\d+", res), "STL/LDL:", len(re.findall(r"\b(STL|LDL)\b", sass)), "HGMMA:", sorted(set(re.findall(r"HGMMA\.\w+", sass))), "SASS lines", sass.count("\n"))
print("smem", k.metadata.shared, "warps", k.metadata.num_warps)
sys.path.insert(0, "tools"); import compile_triton as ct
print("hazards", ct.wgmma_hazards(cub))
