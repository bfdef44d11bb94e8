"""Summaries of Nsight Compute CSV output, for finding where a GPU step spends its time.

Two kinds of input, both written by `ncu ... --csv` on the GPU machine (see docs/benchmarks.md,
"CUDA backend, session 8", for the exact commands):

  kernels  FILE[.gz] [N]   `ncu --metrics gpu__time_duration.sum --csv --print-units base <java ... bench>`:
                           device time per kernel (summed over launches, top N) and per category
  sass     FILE[.gz] [N]   `ncu --section SourceCounters --section WarpStateStats -k regex:NAME
                           --launch-count 1 --page source --print-source sass --csv <java ...>`:
                           one kernel's warp-stall samples by opcode and stall reason, and the N
                           instructions with the most samples

Usage: python3 scripts/ncu_summary.py kernels mlm.csv.gz 20
"""
import collections
import csv
import gzip
import sys


def rows(path):
    """The CSV records of an ncu output file (the program's own output lines are skipped)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return list(csv.reader(line for line in f if line.startswith('"')))


def category(name):
    if "attention" in name:
        return "attention (incl. rowdot)"
    if "f32_to_bf16" in name:
        return "f32->bf16 casts"
    if "nvjet" in name or "cutlass" in name or "splitK" in name or "gemm" in name:
        return "matrix products (cuBLASLt)"
    if "layernorm" in name:
        return "layer norm fwd+bwd"
    if "column" in name:
        return "column sums (bias/LN grads)"
    if "adamw" in name:
        return "AdamW"
    if "bias_act" in name or "act_backward" in name:
        return "bias/GELU epilogues"
    return "other"


def kernels(path, top):
    recs = rows(path)
    header, data = recs[0], recs[1:]
    name, block, grid, metric, value = (header.index(c) for c in ("Kernel Name", "Block Size", "Grid Size", "Metric Name", "Metric Value"))
    data = [r for r in data if r[metric] == "gpu__time_duration.sum"]   # other metrics asked for in the same run are not times
    per_kernel, per_category = collections.defaultdict(lambda: [0, 0.0]), collections.Counter()
    total = 0.0
    for r in data:
        ns = float(r[value].replace(",", ""))
        total += ns
        key = (r[name][:64], r[block], r[grid])
        per_kernel[key][0] += 1
        per_kernel[key][1] += ns
        per_category[category(r[name])] += ns
    print(f"{total / 1e6:.2f} ms of device time in {len(data)} launches")
    for cat, ns in per_category.most_common():
        print(f"  {cat:32s} {ns / 1e6:8.2f} ms {100 * ns / total:5.1f} %")
    print("top kernels (name, block, grid): ms, share, launches")
    for (k, b, g), (n, ns) in sorted(per_kernel.items(), key=lambda e: -e[1][1])[:top]:
        print(f"  {ns / 1e6:8.3f} ms {100 * ns / total:5.1f} % {n:5d}  {k} {b} {g}")


def sass(path, top):
    recs = rows(path)
    header = next(r for r in recs if r and r[0] == "Address")
    data = [dict(zip(header, r)) for r in recs if len(r) == len(header) and r[0] != "Address"]
    samples = lambda d: int(d["Warp Stall Sampling (All Samples)"])
    executed = lambda d: int(d["Instructions Executed"])
    total, ran = sum(map(samples, data)), sum(map(executed, data))
    print(f"{len(data)} instructions, {ran} executed (warp level), {total} stall samples")
    by_op, by_op_ran = collections.Counter(), collections.Counter()
    for d in data:
        words = d["Source"].split()
        op = (words[1] if words[0].startswith("@") else words[0]).split(".")[0]
        by_op[op] += samples(d)
        by_op_ran[op] += executed(d)
    print("opcode: share of samples, share of executed instructions")
    for op, n in by_op.most_common(20):
        print(f"  {op:10s} {100 * n / total:5.1f} % {100 * by_op_ran[op] / ran:5.1f} %")
    reasons = [k for k in header if k.startswith("stall_") and "Not Issued" not in k]
    shares = {k[6:]: 100 * sum(int(d[k]) for d in data) / total for k in reasons}
    print("stall reasons (% of samples):", {k: round(v, 1) for k, v in sorted(shares.items(), key=lambda e: -e[1]) if v >= 0.5})
    print("instructions with the most samples: address, samples, executions, main reason, SASS")
    for d in sorted(data, key=samples, reverse=True)[:top]:
        reason = max(reasons, key=lambda k: int(d[k]))[6:]
        print(f"  {d['Address'][-6:]} {samples(d):6d} {executed(d):9d} {reason:14s} {d['Source'].strip()[:90]}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("kernels", "sass"):
        sys.exit(__doc__)
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    (kernels if sys.argv[1] == "kernels" else sass)(sys.argv[2], n)
