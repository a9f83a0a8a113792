"""Run 26f: read floors of the FP4 weight bytes (N x K x 9/16) by TMA (Gluon, .scratch/gl_floor.py) against
Triton's best one-tile-a-program read (run 16a), the W4A16 GEMV and bf16 cuBLAS at M = 1, in one harness
(rotating copies, CUDA graphs). Is 3x at M = 1 within what any read of the bytes allows?"""
import sys, itertools
sys.path.insert(0, "tools"); sys.path.insert(0, ".scratch")
import torch, triton, triton.language as tl
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg
import gl_floor


@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _rd_tile(p, out, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(v, 0, _xor))


print(torch.cuda.get_device_name(), flush=True)
bf = torch.bfloat16
fo = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
summary = []
for N, K in [(4096, 4096), (6144, 4096), (4096, 14336), (28672, 4096)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    wb = [w.to(bf) for _ in range(cb)]
    del w
    bufs = [torch.randint(0, 255, (nbytes // 2048, 2048), dtype=torch.uint8, device="cuda") for _ in range(cq)]
    x = torch.randn(1, K, device="cuda").to(bf)
    res = {}
    res["bf16 cuBLAS M=1"] = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
    res["W4A16 GEMV M=1"] = _bench_rotating(lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)
    nw = nbytes // 4
    for blk, nwarp in ((2048, 4), (1024, 4), (2048, 8)):
        res[f"triton tile {blk * 4}B w{nwarp}"] = _bench_rotating(
            lambda i: (lambda: _rd_tile[(triton.cdiv(nw, blk),)](bufs[i].view(torch.int32).view(-1), fo, nw, BLOCK=blk, num_warps=nwarp)), cq)
    for (rows, cols), st, ctas, (read, wp) in itertools.product(((32, 256), (64, 256), (128, 256), (64, 128)), (2, 4, 6),
                                                                 (132, 264, 396), ((False, 1), (True, 4))):
        if rows * cols * st > (200 << 10) // max(1, ctas // 132) - 2048:
            continue
        descs = [gl_floor.make_desc(b, rows, cols) for b in bufs]
        name = f"tma {rows}x{cols} st{st} ctas{ctas} {'read w4' if read else 'w1'}"
        try:
            res[name] = _bench_rotating(lambda i: (lambda: gl_floor.launch(bufs[i], fo, rows, cols, st, ctas, read, wp, descs[i])), cq)
        except Exception as e:  # noqa: BLE001
            print("  failed", name, repr(e)[:200], flush=True)
    t_bf = res["bf16 cuBLAS M=1"]
    print(f"\n== {N}x{K}: {nbytes / 1e6:.2f} MB ({cq} copies); bf16 M=1 {t_bf * 1e3:.2f} us; 3x target {t_bf / 3 * 1e3:.2f} us", flush=True)
    for name, t in sorted(res.items(), key=lambda kv: kv[1])[:14]:
        print(f"   {t * 1e3:7.2f} us  {nbytes / t / 1e9:5.2f} TB/s  bf16/this {t_bf / t:.2f}x  {name}", flush=True)
    tt = min(v for k, v in res.items() if k.startswith("tma"))
    tr = min(v for k, v in res.items() if k.startswith("triton"))
    summary.append((N, K, t_bf, res["W4A16 GEMV M=1"], tr, tt))
    del wb, ds, bufs
    torch.cuda.empty_cache()
print("\n| N x K | bf16 M=1 (us) | W4A16 GEMV (us) | best Triton read (us) | best TMA read (us) | bf16 / best read |")
print("|---|---|---|---|---|---|")
for N, K, tb, tg_, tr, tt in summary:
    print(f"| {N}x{K} | {tb * 1e3:.2f} | {tg_ * 1e3:.2f} ({tb / tg_:.2f}x) | {tr * 1e3:.2f} | {tt * 1e3:.2f} | {tb / min(tr, tt):.2f}x |")
