"""38f (prepared in session 38, not run): the wgmma kernel with its K loop split between two pairs of MMA warp
groups inside each CTA (.scratch/wgmma_ks2.py) against run 38's selected path, 64- and 128-row tiles, W4A4 (K64
operand, PDL) and W4A16 (one weight scale), M = 136-512. Mirrored order, rotating weights, CUDA graphs; us."""
import sys, os, time
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "tools"))
sys.path.insert(0, os.path.join(os.getcwd(), ".scratch"))
import torch
import bench_gemm as bg
import wgmma_ks2 as k2
from vllm_fouroversix import nvfp4
from vllm_fouroversix.backends.base import ActivationQuant, QuantizedWeight
from vllm_fouroversix.backends.triton import TritonBackend
from vllm_fouroversix.kernels import triton_gemm as tg
from vllm_fouroversix.kernels.triton_prefill import epilogue_args
from vllm_fouroversix.kernels.triton_quantize import quantize_triton

be = TritonBackend(); a4 = ActivationQuant("mse", "token"); a16 = ActivationQuant("mse", "none")
T0 = time.time(); BUDGET = float(os.environ.get("BUDGET", "400"))
CFG = {64: (4, 96), 128: (3, 112)}  # tile rows: (ring stages a half, MMA partitions' registers)


def sb(qw):
    return qw.scales.view(torch.uint8) if qw.scales.dtype == torch.float8_e4m3fn else qw.scales


def ks2(tbm, w4a4):
    st, regs = CFG[tbm]

    def run(x, qw):
        M, N = x.shape[0], qw.data.shape[0]
        out = torch.empty(M, N, dtype=torch.bfloat16, device=x.device)
        if w4a4:
            q = quantize_triton(x, "mse", per_row=True, write_packed=False, dequant_dtype=torch.bfloat16,
                                launch_dependents=True, pdl_wait=True, perm_k64=True)
            gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, q.global_scale, None)
            return k2.fp4_wgmma_ks2_gemm(q.dequant, qw.data, sb(qw), gw, ga, bias, out, sga, ep, tbm=tbm, stages=st,
                                         pdl=True, perm=True, regs=regs)
        gw, ga, bias, sga, ep = epilogue_args(qw.global_scale, None, None)
        return k2.fp4_wgmma_ks2_gemm(x, qw.data, sb(qw), gw, ga, bias, out, sga, ep, tbm=tbm, stages=st, regs=regs)
    return run


print("| kind | N x K | M | bf16 us | selected us (path) | ks2 64 us (x sel) | ks2 128 us (x sel) | max rel diff |")
print("|---|---|---|---|---|---|---|---|")
shapes = [(4096, 4096), (6144, 4096), (4096, 14336)]
cases = [(M, N, K) for M in (256, 512, 136, 192, 384) for N, K in shapes]
for M, N, K in cases:
    if time.time() - T0 > BUDGET:
        print("budget spent"); break
    w = torch.randn(N, K, device="cuda") * 0.02
    qw = be.prepare_weight(QuantizedWeight.from_nvfp4(nvfp4.quantize(w, "mse")))
    wb = w.to(torch.bfloat16); x = bg._activations(M, K, torch.Generator().manual_seed(N + M))
    cb, cq = bg._copies(N * K * 2), bg._copies(N * K * 9 // 16)
    wbs = [wb] + [wb.clone() for _ in range(cb - 1)]
    wqs = [qw] + [QuantizedWeight(qw.data.clone(), qw.scales.clone(), qw.global_scale.clone(), N, K,
                                  extra=dict(qw.extra)) for _ in range(cq - 1)]
    for kind, act in (("w4a4", a4), ("w4a16", a16)):
        y0 = be.linear(x, qw, None, act).float()
        variants = [ks2(t, kind == "w4a4") for t in (64, 128)]
        diffs = [float((v(x, qw).float() - y0).abs().max() / y0.abs().max()) for v in variants]
        path = tg.select_config(M, N, K, x.device, cublas_prefill=kind == "w4a16", a_k64=kind == "w4a4").short()
        ms = [lambda: bg._bench_rotating(lambda i: (lambda: torch.matmul(x, wbs[i].T)), cb),
              lambda: bg._bench_rotating(lambda i: (lambda: be.linear(x, wqs[i], None, act)), cq)]
        ms += [(lambda v=v: bg._bench_rotating(lambda i: (lambda: v(x, wqs[i])), cq)) for v in variants]
        ts, _ = bg._mirrored(ms)
        cols = " | ".join(f"{t*1e3:.1f} ({t/ts[1]:.3f})" for t in ts[2:])
        print(f"| {kind} | {N}x{K} | {M} | {ts[0]*1e3:.1f} | {ts[1]*1e3:.1f} ({path}) | {cols} | {max(diffs):.1e} |",
              flush=True)
    del wbs, wqs
    torch.cuda.empty_cache()
print(f"elapsed {time.time() - T0:.0f} s")
