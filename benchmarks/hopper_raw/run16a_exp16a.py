"""Run 16a (device): how fast can ANY kernel read the FP4 weight bytes of each shape?

Rotating-copies CUDA-graph harness of bench_gemm (the one the targets are measured with):
bf16 cuBLAS GEMV, our W4A16 GEMV, an empty kernel, and a sweep of read-only kernels over
N*K*9/16 bytes (codes + scales): one tile a program, or persistent grid-stride, several
tile sizes, warps and unroll factors. Prints the best read-only time a shape and the
speed-up over bf16 it would allow."""
import sys, time, itertools
sys.path.insert(0, "tools")
import torch, triton, triton.language as tl
from bench_gemm import _bench_rotating, _copies
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend

SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (14336, 4096), (1024, 4096)]
t0 = time.time()


@triton.jit
def _empty(out):
    if tl.program_id(0) < 0:
        tl.store(out, 1)


@triton.jit
def _rd_tile(p, out, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(v, 0, _xor))


@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _rd_stride(p, out, n, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0)
    npg = tl.num_programs(0)
    acc = tl.zeros((BLOCK,), tl.int32)
    for i in tl.range(pid * BLOCK, n, npg * BLOCK, loop_unroll_factor=UNROLL):
        offs = i + tl.arange(0, BLOCK)
        acc ^= tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(acc, 0, _xor))


@triton.jit
def _rd_chunk(p, out, n, CHUNK, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0)
    acc = tl.zeros((BLOCK,), tl.int32)
    start = pid * CHUNK
    for i in tl.range(start, start + CHUNK, BLOCK, loop_unroll_factor=UNROLL):
        offs = i + tl.arange(0, BLOCK)
        acc ^= tl.load(p + offs, mask=offs < n, other=0)
    tl.store(out + pid, tl.reduce(acc, 0, _xor))


be = TritonBackend()
a16 = ActivationQuant("mse", "none")
a4 = ActivationQuant("mse", "token")
sms = torch.cuda.get_device_properties(0).multi_processor_count
fo = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
print(f"{torch.cuda.get_device_name()} sms={sms} torch {torch.__version__} triton {triton.__version__}", flush=True)
summary = []
for N, K in SHAPES:
    nbytes = N * K * 9 // 16
    nw = nbytes // 4
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    qws = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K, extra=dict(qw.extra))
                  for _ in range(cq - 1)]
    bufs = [torch.randint(-2**31, 2**31 - 1, (nw,), dtype=torch.int32, device="cuda") for _ in range(cq)]
    x = torch.randn(1, K, device="cuda").to(torch.bfloat16)
    t_bf = _bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb)
    t_16 = _bench_rotating(lambda i: (lambda: be.linear(x, qws[i], None, a16)), cq)
    t_4 = _bench_rotating(lambda i: (lambda: be.linear(x, qws[i], None, a4)), cq)
    x16 = torch.randn(16, K, device="cuda").to(torch.bfloat16)
    t_bf16m = _bench_rotating(lambda i: (lambda: torch.matmul(x16, wb[i].T)), cb)
    t_16m = _bench_rotating(lambda i: (lambda: be.linear(x16, qws[i], None, a16)), cq)
    t_e132 = _bench_rotating(lambda i: (lambda: _empty[(sms,)](fo)), cq)
    t_e512 = _bench_rotating(lambda i: (lambda: _empty[(512,)](fo)), cq)
    t_tsum = _bench_rotating(lambda i: (lambda: bufs[i].sum()), cq)
    print(f"\n== {N}x{K}: {nbytes/1e6:.2f} MB fp4 ({cq} copies), bf16 M=1 {t_bf*1e3:.1f} us, ours W4A16 {t_16*1e3:.1f} "
          f"({t_bf/t_16:.2f}x), W4A4 {t_4*1e3:.1f} ({t_bf/t_4:.2f}x); M=16 bf16 {t_bf16m*1e3:.1f} ours {t_16m*1e3:.1f} "
          f"({t_bf16m/t_16m:.2f}x); empty kernel 132/512 programs {t_e132*1e3:.2f}/{t_e512*1e3:.2f} us; "
          f"torch int32 sum {t_tsum*1e3:.1f} us  [{time.time()-t0:.0f}s]", flush=True)
    res = []
    for blk, nwarp in itertools.product((512, 1024, 2048, 4096), (4, 8)):
        t = _bench_rotating(lambda i: (lambda: _rd_tile[(triton.cdiv(nw, blk),)](bufs[i], fo, nw, BLOCK=blk, num_warps=nwarp)), cq)
        res.append((t, f"tile {blk * 4}B w{nwarp} grid {triton.cdiv(nw, blk)}"))
    for mult, blk, nwarp, un in itertools.product((1, 2, 4, 8), (512, 1024, 2048), (4, 8), (1, 2, 4)):
        g = sms * mult
        if blk * g > nw:
            continue
        t = _bench_rotating(lambda i: (lambda: _rd_stride[(g,)](bufs[i], fo, nw, BLOCK=blk, UNROLL=un, num_warps=nwarp)), cq)
        res.append((t, f"stride {blk * 4}B w{nwarp} u{un} grid {g}"))
        chunk = triton.cdiv(triton.cdiv(nw, g), blk) * blk
        t = _bench_rotating(lambda i: (lambda: _rd_chunk[(triton.cdiv(nw, chunk),)](bufs[i], fo, nw, chunk, BLOCK=blk, UNROLL=un,
                                                                                        num_warps=nwarp)), cq)
        res.append((t, f"chunk {blk * 4}B w{nwarp} u{un} grid {triton.cdiv(nw, chunk)}"))
    res.sort()
    for t, name in res[:8]:
        print(f"   {t*1e3:6.2f} us  {nbytes / t / 1e9:5.2f} TB/s  bf16/this {t_bf / t:.2f}x  {name}", flush=True)
    print(f"   worst {res[-1][0]*1e3:.2f} us {res[-1][1]}; {len(res)} configs  [{time.time()-t0:.0f}s]", flush=True)
    summary.append((N, K, t_bf, t_16, t_4, res[0][0], res[0][1], t_e132))
    del wb, qws, bufs, w, wq, qw
    torch.cuda.empty_cache()

print("\n| N x K | bf16 M=1 (us) | W4A16 (us) | W4A4 (us) | best read-only (us) | bf16/read-only | empty kernel (us) | best read config |")
print("|---|---|---|---|---|---|---|---|")
for N, K, tb, t16, t4, tr, name, te in summary:
    print(f"| {N}x{K} | {tb*1e3:.1f} | {t16*1e3:.1f} | {t4*1e3:.1f} | {tr*1e3:.2f} | {tb/tr:.2f}x | {te*1e3:.2f} | {name} |")
