"""Run 28a: host time of the triton backend's linear (eager calls) vs its GPU time (CUDA graph).

Usage: python3 .scratch/exp28a.py PKG [PKG ...]   (PKG: vllm_fouroversix, or a renamed copy on sys.path)
"""
import cProfile, importlib, io, pstats, sys, time
sys.path.insert(0, ".scratch/base28")
import torch

def run(pkg: str, prof: bool) -> None:
    nv = importlib.import_module(f"{pkg}.nvfp4")
    base = importlib.import_module(f"{pkg}.backends.base")
    tb = importlib.import_module(f"{pkg}.backends.triton")
    be = tb.TritonBackend()
    gen = torch.Generator().manual_seed(0)
    a16, a4 = base.ActivationQuant("mse", "none"), base.ActivationQuant("mse", "token")
    for (N, K) in [(4096, 4096)]:
        w = torch.randn(N, K, generator=gen).cuda() * 0.02
        qw = be.prepare_weight(base.QuantizedWeight.from_nvfp4(nv.quantize(w, "mse")))
        for M in (1, 4, 16, 256):
            x = torch.randn(M, K, generator=gen).to(torch.bfloat16).cuda()
            for name, act in (("W4A16", a16), ("W4A4", a4)):
                f = lambda: be.linear(x, qw, None, act)
                for _ in range(30):
                    f()
                torch.cuda.synchronize()
                # GPU time: the same call in a CUDA graph, replayed 200 times
                s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    f()
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(20):
                        f()
                g.replay(); torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(20):
                    g.replay()
                torch.cuda.synchronize()
                gpu = (time.perf_counter() - t0) / 400 * 1e6
                # eager: host-bound where the host's time exceeds the GPU's
                best = []
                for _ in range(5):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(400):
                        f()
                    torch.cuda.synchronize()
                    best.append((time.perf_counter() - t0) / 400 * 1e6)
                best.sort()
                print(f"{pkg} {N}x{K} M={M} {name}: eager {best[0]:.1f} us/call (median {best[2]:.1f}), graph {gpu:.1f} us/call", flush=True)
            if prof and M == 1:
                for name, act in (("W4A4", a4), ("W4A16", a16)):
                    pr = cProfile.Profile()
                    pr.enable()
                    for _ in range(500):
                        be.linear(x, qw, None, act)
                    pr.disable()
                    torch.cuda.synchronize()
                    out = io.StringIO()
                    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(28)
                    print(f"--- cProfile {pkg} {name} M=1, 500 calls (tottime) ---")
                    print("\n".join(l for l in out.getvalue().splitlines() if l.strip())[:6000], flush=True)

if __name__ == "__main__":
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    import triton; print("triton", triton.__version__, flush=True)
    pkgs = sys.argv[1:] or ["vfo_base", "vllm_fouroversix"]
    for i, p in enumerate(pkgs):
        run(p, prof=True)
    for p in reversed(pkgs):  # mirrored order
        run(p, prof=False)
