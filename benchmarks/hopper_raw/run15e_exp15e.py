"""Run 15e: the quantizer at HEAD vs .scratch/tq_35fb.py (commit 35fb8b0), side by side, [4096, 4096] bf16."""
import importlib.util, sys, torch
sys.path.insert(0, "tools")
from bench_gemm import _bench_graph
from vllm_fouroversix import nvfp4
import vllm_fouroversix.kernels.triton_quantize as new
spec = importlib.util.spec_from_file_location("tq_old", ".scratch/tq_35fb.py"); old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
x = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0)).bfloat16().cuda()
dst = torch.empty_like(x)
t_copy = _bench_graph(lambda: dst.copy_(x), 200)
copy_bw = 2 * x.numel() * 2 / (t_copy * 1e-3)
print(f"copy {t_copy*1e3:.1f} us")
nbytes = x.numel() * 2 + x.numel() // 2 + x.numel() // 16 + 4096 * 4
for rule in ("mse", "mae", "abs_max", "static_6"):
    r = nvfp4.quantize(x.cpu(), rule)
    row = [rule]
    for name, mod in (("35fb8b0", old), ("HEAD", new), ("35fb8b0", old), ("HEAD", new)):
        q = mod.quantize_triton(x, rule)
        ok = torch.equal(q.data.cpu(), r.data) and torch.equal(q.scales.view(torch.uint8).cpu(), r.scales.view(torch.uint8))
        t = _bench_graph(lambda: mod.quantize_triton(x, rule), 200)
        row.append(f"{name} {t*1e3:.1f} us {100*nbytes/(t*1e-3)/copy_bw:.0f}% {'exact' if ok else 'NOT EXACT'}")
    print(" | ".join(row), flush=True)
for rule in ("mse", "static_6"):
    row = [rule + " operand"]
    for name, mod in (("35fb8b0", old), ("HEAD", new), ("35fb8b0", old), ("HEAD", new)):
        t = _bench_graph(lambda: mod.quantize_triton(x, rule, write_packed=False, dequant_dtype=torch.bfloat16), 200)
        row.append(f"{name} {t*1e3:.1f} us")
    print(" | ".join(row), flush=True)
