"""Run 15g: the quantizer (HEAD, one lane a block) vs .scratch/tq_pair.py (two lanes a block, one
candidate each), side by side; per-token, packed codes; bit-exact check per_row=True."""
import sys, torch
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
from bench_gemm import _bench_graph
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels.triton_quantize import quantize_triton
from tq_pair import quantize_pair
g = torch.Generator().manual_seed(0)
big = torch.randn(4096, 4096, generator=g).bfloat16().cuda()
dst = torch.empty_like(big)
t_copy = _bench_graph(lambda: dst.copy_(big), 200)
print(f"copy [4096,4096] {t_copy*1e3:.1f} us")
for shape in ((4096, 4096), (1, 4096), (16, 4096), (256, 4096), (4096, 2048)):
    x = (torch.randn(*shape, generator=g) * torch.exp(torch.randn(1, shape[1], generator=g))).bfloat16().cuda()
    nbytes = x.numel() * 2 + x.numel() // 2 + x.numel() // 16 + shape[0] * 4
    for rule in ("mse", "abs_max"):
        r = nvfp4.quantize(x.cpu(), rule, per_row=True)
        d, s, gs = quantize_pair(x, rule)
        ok = torch.equal(d.cpu(), r.data) and torch.equal(s.view(torch.uint8).cpu(), r.scales.view(torch.uint8)) \
            and torch.equal(gs.cpu(), r.global_scale.float().reshape(-1))
        q = quantize_triton(x, rule)
        ok0 = torch.equal(q.data.cpu(), r.data) and torch.equal(q.scales.view(torch.uint8).cpu(), r.scales.view(torch.uint8))
        row = [f"{shape} {rule}"]
        for name, fn in (("one-lane", lambda: quantize_triton(x, rule)), ("pair", lambda: quantize_pair(x, rule))) * 2:
            t = _bench_graph(fn, 200)
            bw = nbytes / (t * 1e-3) / (2 * big.numel() * 2 / (t_copy * 1e-3))
            row.append(f"{name} {t*1e3:.1f} us ({100*bw:.0f}%)")
        row.append(f"exact one-lane {ok0} pair {ok}")
        print(" | ".join(row), flush=True)
