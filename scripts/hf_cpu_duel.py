"""Paired CPU forward passes: perceiver4j and HF PyTorch taking turns, pass by pass.

Usage: python3 scripts/hf_cpu_duel.py THREADS PAIRS [--pause S] -- BENCH_COMMAND...   (needs torch + transformers)
  e.g. python3 scripts/hf_cpu_duel.py 2 20 -- \\
           ./perceiver4j bench --backend cpu --threads 2 --warmup 3 --reps 20 --gemm java --paced

The model and input are those of scripts/hf_cpu_forward.py (HF PerceiverForMaskedLM with the
deepmind/language-perceiver architecture, random weights, batch 1 x 2048 random bytes, fp32) on
THREADS threads. BENCH_COMMAND must be perceiver4j's `bench ... --paced` (its --reps at least
PAIRS): it builds its model, runs its warm-up passes, prints 'paced: ready', then runs one timed
pass per line it reads and prints 'pass N: X ms'. This script builds PyTorch's model meanwhile,
runs its two warm-up passes, and then for each pair runs one pass of each, perceiver4j first in
even pairs and PyTorch first in odd ones, with a pause of S seconds (default 0.3) before every
pass so that neither side's waiting threads still spin during the other's pass.

On a shared machine whose speed drifts from minute to minute, the two passes of a pair meet it in
the same second or two; the ratio pair by pair is much less noisy than separate runs minutes apart
(it still includes what differs from one process to the next: run the script several times).
Prints each pair, then the ratio of the summed times, the median of the pairs' ratios, how many
pairs perceiver4j took less time, and both programs' peak RSS.
"""
import resource
import statistics
import subprocess
import sys
import time


def usage(message):
    sys.exit(f"hf_cpu_duel.py: {message}\nusage: python3 scripts/hf_cpu_duel.py THREADS PAIRS [--pause S] -- BENCH_COMMAND...")


def parse(argv):
    if "--" not in argv:
        usage("the perceiver4j bench command goes after '--'")
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1:]
    pause = 0.3
    if "--pause" in own:
        i = own.index("--pause")
        if i + 1 >= len(own):
            usage("--pause needs a number of seconds")
        pause = float(own[i + 1])
        del own[i:i + 2]
    if len(own) != 2 or not own[0].isdigit() or not own[1].isdigit() or int(own[0]) < 1 or int(own[1]) < 1:
        usage("THREADS and PAIRS must be positive integers")
    if "--paced" not in command:
        usage("the bench command must include --paced (one timed pass per line of standard input)")
    return int(own[0]), int(own[1]), pause, command


def main():
    threads, pairs, pause, command = parse(sys.argv[1:])
    bench = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def java_line():
        line = bench.stdout.readline()
        if not line:
            sys.exit(f"hf_cpu_duel.py: the bench command ended early (exit code {bench.wait()}; its --reps must be at least PAIRS)")
        return line.rstrip("\n")

    # PyTorch's side, built and warmed up while perceiver4j builds its model and runs its warm-up.
    import torch
    from transformers import PerceiverConfig, PerceiverForMaskedLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = PerceiverForMaskedLM(PerceiverConfig(qk_channels=256, v_channels=1280)).eval()
    x = torch.randint(6, 262, (1, 2048))
    mask = torch.ones_like(x)

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
