"""Run 34a: the wgmma GEMM with a producer warp group decoding A into shared memory (SS) vs the
register-A kernel (RS): outputs compared bit for bit, then timed side by side with bf16 cuBLAS."""
import sys, os, time
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
import torch
import bench_gemm as bg
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import gluon_wgmma as g, triton_gemm as tg, triton_quantize as tq
from vllm_fouroversix.kernels.triton_gemm import select_config

t0 = time.time()
dev = torch.device("cuda")
be = TritonBackend()
a16, a4 = ActivationQuant("mse", "none"), ActivationQuant("mse", "token")
gen = torch.Generator(device="cuda").manual_seed(0)

def variant(ss, st=4, ast=2):
    g._SS, g._STAGES, g._A_STAGES = ss, st, ast

PART = sys.argv[1] if len(sys.argv) > 1 else 'all'
# 1. bit-for-bit SS vs RS, forced wgmma on edges too
if PART in ('bits', 'all'):
  wg = tg.GemmConfig(kind="wgmma")
  bad = 0
  for (N, K, M) in [(4096, 4096, 1024), (6144, 512, 1024), (200, 1088, 300), (384, 256, 77), (1000, 1024, 513),
                    (16384, 512, 200), (4160, 4096, 256)]:
      w = torch.randn(N, K, device="cuda", generator=gen) * 0.02
      wq = nvfp4.quantize(w, "mse", per_row=(N == 1000))
      bias = torch.randn(N, device="cuda", generator=gen).to(torch.bfloat16)
      x = torch.randn(M, K, device="cuda", generator=gen).to(torch.bfloat16)
      q = tq.quantize_triton(x, "mse", write_packed=False, dequant_dtype=torch.bfloat16)
      outs = []
      for ss in (False, True):
          variant(ss)
          o1 = tg.fp4_gemm(x, wq.data, wq.scales, wq.global_scale, bias=bias, config=wg)
          o2 = tg.fp4_gemm(q.dequant, wq.data, wq.scales, wq.global_scale, ga=q.global_scale, bias=None, config=wg)
          outs.append((o1, o2))
      same = torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
      bad += not same
      print(f"bits {N}x{K} M={M}: {'same' if same else 'DIFFERENT'}; max |diff| "
            f"{(outs[0][0].float() - outs[1][0].float()).abs().max().item():.3g}", flush=True)
  assert not tg._WGMMA_FAILED, tg._WGMMA_FAILED
  print("bit check", "PASS" if bad == 0 else f"FAIL ({bad})", f"{time.time() - t0:.0f}s", flush=True)

if PART == 'bits':
    raise SystemExit(0 if bad == 0 else 1)
# 2. timing, mirrored: bf16, RS, SS(4,2), and at M = 1024 SS(4,3), SS(5,2)
shapes = [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]
print("| N x K | M | bf16 | W4A16 RS / SS | W4A4 RS / SS | SS/RS W4A16, W4A4 | W4A16 SS(4,3) SS(5,2) / SS(4,2) | ours/bf16 W4A16 RS, SS; W4A4 RS, SS |")
print("|---|---|---|---|---|---|---|---|")
for N, K in shapes:
    w = torch.randn(N, K, device="cuda", generator=gen) * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    for M in [256, 512, 1024]:
        cfg = select_config(M, N, K, dev, cublas_prefill=False)
        if cfg.kind != "wgmma":
            continue
        x = torch.randn(M, K, device="cuda", generator=gen).to(torch.bfloat16)
        cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
        wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
        wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                      extra=dict(qw.extra)) for _ in range(cq - 1)]
        def ours(act, ss, st=4, ast=2):
            def m():
                variant(ss, st, ast)
                return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)
            return m
        ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
              ours(a16, False), ours(a16, True), ours(a4, False), ours(a4, True)]
        extra = M == 1024 and N in (4096, 28672)
        if extra:
            ms += [ours(a16, True, 4, 3), ours(a16, True, 5, 2)]
        t, _ = bg._mirrored(ms)
        tb, r16, s16, r4, s4 = t[:5]
        ex = f"{t[5] / s16:.3f} {t[6] / s16:.3f}" if extra else "-"
        print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {r16*1e3:.1f} / {s16*1e3:.1f} | {r4*1e3:.1f} / {s4*1e3:.1f} "
              f"| {s16/r16:.3f}, {s4/r4:.3f} | {ex} | {r16/tb:.3f}, {s16/tb:.3f}; {r4/tb:.3f}, {s4/tb:.3f} |", flush=True)
        variant(True)
        del wb, wqs
    del w, w_bf16, qw, wq
    torch.cuda.empty_cache()
print(f"part 2 {time.time() - t0:.0f}s", flush=True)

# 3. M = 2048 / 4096: the selected path (decode + cuBLAS / Triton prefill GEMM) vs the SS kernel forced
orig = tg.select_config
WG = tg.GemmConfig(kind="wgmma", BM=g.BM, BN=g.BN, BK=g.BK, num_warps=9, num_stages=4)
def forced(on):
    tg.select_config = (lambda M, N, K, *a, **k: WG if M >= 2048 and k.get("allow_mma", True) else orig(M, N, K, *a, **k)) if on else orig
print("| N x K | M | bf16 | W4A16 default / SS | W4A4 default / SS | ours/bf16 W4A16 default, SS; W4A4 default, SS | same path outputs equal |")
print("|---|---|---|---|---|---|---|")
variant(True)
for N, K in shapes:
    w = torch.randn(N, K, device="cuda", generator=gen) * 0.02
    wq = nvfp4.quantize(w, "mse")
    w_bf16 = w.to(torch.bfloat16)
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(wq))
    for M in [2048, 4096]:
        x = torch.randn(M, K, device="cuda", generator=gen).to(torch.bfloat16)
        forced(False); d16 = be.linear(x, qw, None, a16); d4 = be.linear(x, qw, None, a4)
        forced(True); s16 = be.linear(x, qw, None, a16); s4 = be.linear(x, qw, None, a4)
        forced(False)
        close = [(a.float() - b.float()).abs().max().item() / b.float().abs().max().item() for a, b in ((s16, d16), (s4, d4))]
        cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
        wb = [w_bf16] + [w_bf16.clone() for _ in range(cb - 1)]
        wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                      extra=dict(qw.extra)) for _ in range(cq - 1)]
        def ours(act, on):
            def m():
                forced(on)
                try:
                    return bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)
                finally:
                    forced(False)
            return m
        t, _ = bg._mirrored([lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
                             ours(a16, False), ours(a16, True), ours(a4, False), ours(a4, True)])
        tb, d16t, s16t, d4t, s4t = t
        print(f"| {N}x{K} | {M} | {tb*1e3:.1f} | {d16t*1e3:.1f} / {s16t*1e3:.1f} | {d4t*1e3:.1f} / {s4t*1e3:.1f} "
              f"| {d16t/tb:.3f}, {s16t/tb:.3f}; {d4t/tb:.3f}, {s4t/tb:.3f} | rel max diff {close[0]:.2g}, {close[1]:.2g} |", flush=True)
        del wb, wqs
    del w, w_bf16, qw, wq
    torch.cuda.empty_cache()
print(f"done {time.time() - t0:.0f}s")
