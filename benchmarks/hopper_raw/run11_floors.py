"""Floors of the gemv2 kernel: real decode vs cheaper fake decodes (wrong values), M=1."""
import importlib.util, sys, os, re, torch, triton
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from bench_gemm import _bench_rotating, _copies
src = open("vllm_fouroversix/kernels/triton_gemm.py").read()
V1 = '"\\n".join([f"shl.b32 ${2*i}, $8, {16 - 4*i};\\nand.b32 ${2*i+1}, $8, {0xFFFF0000 >> i};" for i in range(4)])'
V2 = '"\\n".join([f"mov.b32 ${i}, $8;" for i in range(8)])'
mods = {}
os.makedirs(".scratch", exist_ok=True)
for name, repl in (("v0", None), ("v1", V1), ("v2", V2)):
    s = src
    if repl:
        s = s.replace("tl.inline_asm_elementwise(_DECODE_F32_ASM,", "tl.inline_asm_elementwise(_VAR_ASM,")
        s = s.replace("\n@triton.jit\ndef _e2m1_arith", f"\n_VAR_ASM = tl.constexpr({repl})\n\n@triton.jit\ndef _e2m1_arith", 1)
        assert s != src
    path = f".scratch/tg_{name}.py"
    open(path, "w").write(s)
    spec = importlib.util.spec_from_file_location(f"tg_{name}", path)
    m = importlib.util.module_from_spec(spec); sys.modules[f"tg_{name}"] = m; spec.loader.exec_module(m)
    mods[name] = m
from vllm_fouroversix import nvfp4
gen = torch.Generator().manual_seed(0)
for N, K in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)):
    w = (torch.randn(N, K, generator=gen) * 0.02).cuda()
    wq = nvfp4.quantize(w, "mse")
    wb = w.to(torch.bfloat16)
    cb, cq = _copies(N * K * 2), _copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    ds = [(wq.data.clone(), wq.scales.clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = torch.randn(1, K, generator=gen).cuda().to(torch.bfloat16)
    t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb)
    row = [f"{N}x{K} bf16 {t_bf*1e3:.1f}"]
    for name, m in mods.items():
        for cfg in (m.select_config(1, N, K, x.device),
                    m.GemmConfig("gemv2", BM=1, BN=16, BK=512, num_warps=4, num_stages=1),
                    m.GemmConfig("gemv2", BM=1, BN=32, BK=1024, num_warps=8, num_stages=1),
                    m.GemmConfig("gemv2", BM=1, BN=32, BK=512, num_warps=4, num_stages=2)):
            try:
                t = _bench_rotating(lambda i: (lambda: m.fp4_gemm(x, ds[i][0], ds[i][1], gw, config=cfg)), cq)
                row.append(f"{name} {cfg.short()} {t*1e3:.1f}")
            except Exception as e:
                row.append(f"{name} {cfg.short()} FAIL {type(e).__name__} {str(e)[:100]}")
    print(" | ".join(row), flush=True)
    del wbs, ds
    torch.cuda.empty_cache()
