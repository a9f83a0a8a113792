"""Summarize `ncu -i REP --page source --print-source sass --csv` output (run 26c): per kernel, the warp
stall samples by reason and by opcode, and the N instructions with the most samples.

    python3 run26c_ncu_src.py prof.csv [kernel-name-substring] [N]
"""
import csv, collections, sys
rows = list(csv.reader(open(sys.argv[1])))
kern = None; data = collections.defaultdict(list); hdr = None
for r in rows:
    if len(r) >= 2 and r[0] == "Kernel Name":
        kern = r[1]; continue
    if r and r[0] == "Address":
        hdr = r; continue
    if hdr and kern and len(r) == len(hdr):
        data[kern].append(dict(zip(hdr, r)))
reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
def num(x):
    try: return float(x)
    except: return 0.0
for k, ins in data.items():
    if len(sys.argv) > 2 and sys.argv[2] not in k: continue
    tot = sum(num(i["Warp Stall Sampling (All Samples)"]) for i in ins)
    print(f"== {k}: {len(ins)} instr, {tot:.0f} samples")
    agg = collections.Counter()
    for i in ins:
        for r in reasons: agg[r] += num(i[r])
    print("  ", ", ".join(f"{r[6:]} {v/tot*100:.1f}%" for r, v in agg.most_common(9)))
    # by opcode
    op = collections.Counter()
    for i in ins:
        s = i["Source"].split()
        o = (s[1] if s[0].startswith("@") else s[0]).split(".")[0] if s else "?"
        op[o] += num(i["Warp Stall Sampling (All Samples)"])
    print("   by opcode:", ", ".join(f"{o} {v/tot*100:.1f}%" for o, v in op.most_common(12)))
    top = sorted(range(len(ins)), key=lambda j: -num(ins[j]["Warp Stall Sampling (All Samples)"]))[:int(sys.argv[3]) if len(sys.argv) > 3 else 15]
    for j in sorted(top):
        i = ins[j]
        rs = sorted(((num(i[r]), r[6:]) for r in reasons), reverse=True)[:2]
        print(f"   {j:5d} {num(i['Warp Stall Sampling (All Samples)'])/tot*100:5.1f}% {i['Source'].strip()[:60]:60s} {rs}")
