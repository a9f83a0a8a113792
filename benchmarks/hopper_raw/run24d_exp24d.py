"""Run 24d (probe): the Gluon wgmma kernel (weight decoded into wgmma's A registers, TMA ring) with
16-row activation tiles (wgmma m64n16k16) at M = 16, one CTA per 128 weight rows (no split-K), vs the
selected tc tile and bf16. W4A16."""
import sys
sys.path.insert(0, "tools")
import torch
import triton
from bench_gemm import _bench_rotating, _copies, _mirrored
from vllm_fouroversix import nvfp4
from vllm_fouroversix.kernels import triton_gemm as tg, gluon_wgmma as gw_mod
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from vllm_fouroversix.kernels.triton_prefill import epilogue_args


def wg16(a, data, sb, gw, out, tbm, stages):
    M, K = a.shape
    N = data.shape[0]
    gw_t, ga_t, bias_t, stride_ga, ep = epilogue_args(gw, None, None)
    x_desc = TensorDescriptor.from_tensor(a, [tbm, 64], gl.NVMMASharedLayout.get_default_for([tbm, 64], gl.bfloat16))
    w_desc = TensorDescriptor.from_tensor(data, [64, 32], gl.NVMMASharedLayout.get_default_for([64, 32], gl.uint8))
    gw_mod._fp4_wgmma_gemm_kernel[(triton.cdiv(N, 128), triton.cdiv(M, tbm))](
        x_desc, w_desc, sb, gw_t, ga_t, bias_t, out, M, N, K, sb.stride(0), out.stride(0), stride_ga,
        TBM=tbm, STAGES=stages, **ep, num_warps=4)
    return out


print(torch.cuda.get_device_name(), flush=True)
for N, K in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]:
    nbytes = N * K * 9 // 16
    cb, cq = _copies(N * K * 2), _copies(nbytes)
    w = torch.randn(N, K, device="cuda") * 0.02
    wq = nvfp4.quantize(w, "mse")
    wb = [w.to(torch.bfloat16) for _ in range(cb)]
    ds = [(wq.data.clone(), wq.scales.view(torch.uint8).clone()) for _ in range(cq)]
    gw = wq.global_scale.float().reshape(())
    x = torch.randn(16, K, device="cuda").to(torch.bfloat16)
    oracle = (x.double() @ nvfp4.dequantize(wq).double().T).float()
    outs = [torch.empty(16, N, device="cuda", dtype=torch.bfloat16) for _ in range(cq)]
    variants = [(16, 4), (16, 8)]
    for tbm, st in variants:
        y = wg16(x, ds[0][0], ds[0][1], gw, outs[0], tbm, st).float()
        print(f"{N}x{K} TBM={tbm} stages={st}: rel err {float((y - oracle).abs().max() / oracle.abs().max()):.2e}")
    makers = [(lambda i: (lambda: torch.matmul(x, wb[i].T)), cb),
              (lambda i: (lambda: tg.fp4_gemm(x, ds[i][0], ds[i][1], gw)), cq)]
    makers += [((lambda tbm, st: lambda i: (lambda: wg16(x, ds[i][0], ds[i][1], gw, outs[i], tbm, st)))(tbm, st), cq)
               for tbm, st in variants]
    names = ["bf16", "selected"] + [f"wgmma TBM={t} st{s} ({triton.cdiv(N, 128)} CTAs)" for t, s in variants]
    means, (a, b) = _mirrored([lambda m=m, c=c: _bench_rotating(m, c) for m, c in makers])
    for n, m, u, v in zip(names, means, a, b):
        print(f"  {n:34s} {m * 1e3:7.2f} us ({u * 1e3:.2f}, {v * 1e3:.2f})  bf16/this {means[0] / m:.2f}x", flush=True)
    del wb, ds, w
