"""Paired CPU forward passes: perceiver4j and HF PyTorch taking turns, pass by pass.

Usage: python3 scripts/hf_cpu_duel.py THREADS PAIRS [--pause S] [--duels D] -- BENCH_COMMAND...   (needs torch + transformers)
  e.g. python3 scripts/hf_cpu_duel.py 2 20 --duels 8 -- \\
           ./perceiver4j bench --backend cpu --threads 2 --warmup 3 --reps 20 --gemm java --paced

The model and input are those of scripts/hf_cpu_forward.py (HF PerceiverForMaskedLM with the
deepmind/language-perceiver architecture, random weights, batch 1 x 2048 random bytes, fp32) on
THREADS threads. BENCH_COMMAND must be perceiver4j's `bench ... --paced` (its --reps at least
PAIRS): it builds its model, runs its warm-up passes, prints 'paced: ready', then runs one timed
pass per line it reads and prints 'pass N: X ms'. This script builds PyTorch's model meanwhile,
runs its two warm-up passes, and then for each pair runs one pass of each, perceiver4j first in
pairs 1, 3, 5, ... and PyTorch first in the others, with a pause of S seconds (default 0.3) before every
pass so that neither side's waiting threads still spin during the other's pass.

On a shared machine whose speed drifts from minute to minute, the two passes of a pair meet it in
the same second or two; the ratio pair by pair is much less noisy than separate runs minutes apart.
What differs from one process to the next stays: on gpu-host one pair of processes ran the Java
forward 20 % slower than PyTorch's pass after pass, the next one 6 % faster. --duels D runs D duels
one after another, each with fresh processes on both sides, and pools them.
Prints each pair, then the ratio of the summed times, the median of the pairs' ratios, how many
pairs perceiver4j took less time, and both programs' peak RSS; with --duels, each duel's ratio
and the pooled one with a 95 % interval from resampling whole duels (10,000 draws).
"""
import random
import re
import resource
import statistics
import subprocess
import sys
import time


def usage(message):
    sys.exit(f"hf_cpu_duel.py: {message}\nusage: python3 scripts/hf_cpu_duel.py THREADS PAIRS [--pause S] [--duels D] -- BENCH_COMMAND...")


def parse(argv):
    if "--" not in argv:
        usage("the perceiver4j bench command goes after '--'")
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1:]
    pause, duels = 0.3, 1
    for flag in ("--pause", "--duels"):
        if flag in own:
            i = own.index(flag)
            try:
                value = float(own[i + 1]) if flag == "--pause" else int(own[i + 1])
            except (IndexError, ValueError):
                usage(f"{flag} needs a number")
            if value < 0 or (flag == "--duels" and value < 1):
                usage(f"{flag} must be {'>= 1' if flag == '--duels' else '>= 0'}")
            if flag == "--pause":
                pause = value
            else:
                duels = value
            del own[i:i + 2]
    if len(own) != 2 or not own[0].isdigit() or not own[1].isdigit() or int(own[0]) < 1 or int(own[1]) < 1:
        usage("THREADS and PAIRS must be positive integers")
    if "--paced" not in command:
        usage("the bench command must include --paced (one timed pass per line of standard input)")
    return int(own[0]), int(own[1]), pause, duels, command


PAIR = re.compile(r"^pair \d+: perceiver4j ([0-9.]+) ms, pytorch ([0-9.]+) ms")


def pooled(threads, pairs, pause, duels, command):
    """Runs `duels` duels in fresh processes (this script once each) and pools their pairs."""
    per_duel = []
    for d in range(duels):
        print(f"== duel {d + 1} of {duels}", flush=True)
        child = subprocess.Popen([sys.executable, __file__, str(threads), str(pairs), "--pause", str(pause), "--", *command],
                                 stdout=subprocess.PIPE, text=True, bufsize=1)
        got = []
        for line in child.stdout:
            print(line, end="", flush=True)
            m = PAIR.match(line)
            if m:
                got.append((float(m.group(1)), float(m.group(2))))
        if child.wait() != 0 or len(got) != pairs:
            sys.exit(f"hf_cpu_duel.py: duel {d + 1} failed (exit code {child.returncode}, {len(got)} of {pairs} pairs)")
        per_duel.append(got)

    def ratio(ds):
        return sum(a for d in ds for a, _ in d) / sum(b for d in ds for _, b in d)

    rng = random.Random(1)
    draws = sorted(ratio([rng.choice(per_duel) for _ in per_duel]) for _ in range(10_000))
    every = [a / b for d in per_duel for a, b in d]
    ours, theirs = sum(a for d in per_duel for a, _ in d), sum(b for d in per_duel for _, b in d)
    print(f"pooled threads={threads}: {duels} duels x {pairs} pairs, perceiver4j {ours:.1f} ms, pytorch {theirs:.1f} ms, "
          f"ratio of sums {ours / theirs:.3f} (95 % interval over duels {draws[249]:.3f}-{draws[9749]:.3f}), "
          f"median pair ratio {statistics.median(every):.3f}, perceiver4j faster in {sum(r < 1 for r in every)} of {len(every)} pairs; "
          f"per duel {', '.join(f'{ratio([d]):.3f}' for d in per_duel)}", flush=True)


def main():
    threads, pairs, pause, duels, command = parse(sys.argv[1:])
    if duels > 1:
        pooled(threads, pairs, pause, duels, command)
        return
    bench = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def java_line():
        line = bench.stdout.readline()
        if not line:
            sys.exit(f"hf_cpu_duel.py: the bench command ended early (exit code {bench.wait()}; its --reps must be at least PAIRS)")
        return line.rstrip("\n")

    # PyTorch's side (hf_cpu_forward.py's model and input, this script's folder being on the path),
    # built and warmed up while perceiver4j builds its model and runs its warm-up.
    import torch
    from hf_cpu_forward import language_perceiver
    model, x, mask = language_perceiver(threads)

    def torch_pass():
        t = time.perf_counter()
        with torch.no_grad():
            model(inputs=x, attention_mask=mask)
        return (time.perf_counter() - t) * 1e3

    for _ in range(2):
        torch_pass()
    while True:
        line = java_line()
        print(f"perceiver4j: {line}", flush=True)
        if line.startswith("paced: ready"):
            break

    def java_pass():
        bench.stdin.write("go\n")
        bench.stdin.flush()
        while True:
            line = java_line()
            if line.startswith("pass "):
                return float(line.split(":")[1].split()[0])
            print(f"perceiver4j: {line}", flush=True)

    ours, theirs = [], []
    for p in range(pairs):
        got = {}
        for side in (("java", "torch") if p % 2 == 0 else ("torch", "java")):
            time.sleep(pause)
            got[side] = java_pass() if side == "java" else torch_pass()
        ours.append(got["java"])
        theirs.append(got["torch"])
        print(f"pair {p + 1}: perceiver4j {got['java']:.1f} ms, pytorch {got['torch']:.1f} ms, "
              f"ratio {got['java'] / got['torch']:.3f}", flush=True)

    bench.stdin.close()
    for line in bench.stdout:
        print(f"perceiver4j: {line.rstrip()}", flush=True)
    code = bench.wait()
    if code != 0:
        sys.exit(f"hf_cpu_duel.py: the bench command exited with code {code}")
    ratios = [a / b for a, b in zip(ours, theirs)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"duel threads={threads} pairs={pairs}: perceiver4j {sum(ours):.1f} ms, pytorch {torch.__version__} {sum(theirs):.1f} ms, "
          f"ratio of sums {sum(ours) / sum(theirs):.3f}, median pair ratio {statistics.median(ratios):.3f}, "
          f"perceiver4j faster in {sum(r < 1 for r in ratios)} of {pairs} pairs; pytorch peak RSS {peak:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
