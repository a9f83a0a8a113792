"""Estimate how often the approximate 4/6 errors cannot decide (needs exact recheck); check the bound."""
import torch, sys
from vllm_fouroversix import nvfp4 as N
torch.manual_seed(0)
u = 2.0 ** -24

def f32(t):  # round fp64 -> fp32
    return t.to(torch.float32).to(torch.float64)

def approx_err(a, codes, s, am, rule):
    lut = N._lut(a.device).double()
    v = lut[codes]  # [R, nb, 16]
    sf = s.float()
    D = ((sf * am) / 1536.0)  # fp32 ops like the kernel (correctly rounded)
    D64 = D.double().unsqueeze(-1)
    d = f32(v * D64 - a.double())  # FFMA: one rounding
    if rule == "mse":
        acc = f32(d[..., 0] * d[..., 0])
        for j in range(1, 16):
            acc = f32(d[..., j] * d[..., j] + acc)
        B = 2.0 ** -16 * (D.double() ** 2 + acc)
    elif rule == "mae":
        acc = d[..., 0].abs()
        for j in range(1, 16):
            acc = f32(acc + d[..., j].abs())
        B = 2.0 ** -14 * D.double() + 2.0 ** -18 * acc
    else:
        acc = d.abs().amax(-1)
        B = 2.0 ** -18 * D.double() + 2.0 ** -21 * acc
    return acc, B, D.double()

def run(x, rule, name):
    R = x.shape[0]
    c = N.rule_constants(rule)
    xf = x.reshape(R, -1, 16).float(); a = xf.abs(); bmax = a.amax(-1)
    am = a.reshape(R, -1).amax(-1, keepdim=True)
    enc = c.MS / am; dec = 1.0 / enc
    codes6, s6 = N._candidate(a, bmax, c.M, enc, dec, expand=False)
    codes4, s4 = N._candidate(a, bmax, c.M, enc, dec, expand=True)
    r = N.ScaleRule(rule)
    e6 = N._block_error(a, codes6, s6, am, r).double(); e4 = N._block_error(a, codes4, s4, am, r).double()
    a6, B6, D6 = approx_err(a, codes6, s6, am, rule); a4, B4, D4 = approx_err(a, codes4, s4, am, rule)
    viol = ((e6 - a6).abs() > B6).sum().item() + ((e4 - a4).abs() > B4).sum().item()
    ratio = torch.maximum((e6 - a6).abs() / B6.clamp_min(1e-300), (e4 - a4).abs() / B4.clamp_min(1e-300)).max().item()
    lut = N._lut(a.device)
    v6 = lut[codes6]; v4 = lut[codes4]
    tie = (s4.float() == 1.5 * s6.float()) & (v6 == 1.5 * v4).all(-1)
    if rule == "abs_max":
        unsure = torch.zeros_like(tie)
    else:
        unsure = ~(tie | (((a6 - a4).abs() > B6 + B4) & (D6 >= 2.0 ** -40)))
    coinc = ((e6 == e4) & ~tie).double().mean().item()
    pick = ~tie & (a4 < a6)
    wrong = (pick != (e4 < e6)) & ~unsure
    if name == 'gauss' and rule == 'mse':
        idx = ((e6 == e4) & ~tie).nonzero()[:2]
        for r_, b_ in idx.tolist():
            print('x', xf[r_, b_].tolist()); print('v6', v6[r_, b_].tolist(), s6[r_, b_].float().item()); print('v4', v4[r_, b_].tolist(), s4[r_, b_].float().item()); print(e6[r_, b_].item(), e4[r_, b_].item(), am[r_].item())
    per_row = unsure.any(-1).double().mean().item()
    print(f"{name:12s} {rule:7s} blocks unsure {unsure.double().mean().item():.2e}  rows(256 blk) with any {per_row:.3%}  "
          f"bound violations {viol}  max |err|/B {ratio:.3f}  wrong-when-sure {wrong.sum().item()}  exact ties {(e6 == e4).double().mean().item():.1e} non-identical ties {coinc:.1e}")

R, K = 2048, 4096
gen = {
    "gauss": lambda: torch.randn(R, K).bfloat16(),
    "student3": lambda: (torch.distributions.StudentT(3.0).sample((R, K))).bfloat16(),
    "outlier": lambda: (torch.randn(R, K) * torch.where(torch.rand(R, K) < 0.001, 50.0, 1.0)).bfloat16(),
    "relu": lambda: torch.relu(torch.randn(R, K)).bfloat16(),
    "smallint": lambda: torch.randint(-8, 9, (R, K)).bfloat16(),
}
for name, g in gen.items():
    x = g()
    for rule in ("mse", "mae", "abs_max"):
        run(x, rule, name)
