"""CPU forward-pass baseline for `perceiver4j bench`: HF PerceiverForMaskedLM with the
deepmind/language-perceiver architecture (random weights), batch 1 x 2048 random bytes, fp32.

Usage: python3 scripts/hf_cpu_forward.py THREADS [REPS] [--profile]   (needs torch + transformers)
Prints one line: mean/min ms over REPS timed passes after 2 warm-up passes, and peak RSS. With
--profile, one more pass runs under torch.profiler and its table follows (ms per op and input
shapes, the counterpart of `perceiver4j bench --profile`).
"""
import resource
import sys
import time

import torch
from transformers import PerceiverConfig, PerceiverForMaskedLM


def language_perceiver(threads):
    """The benchmark's model and input on `threads` threads (also used by hf_cpu_duel.py): HF
    PerceiverForMaskedLM with the deepmind/language-perceiver architecture, random weights (seed 0),
    eval mode, and batch 1 x 2048 random bytes with an all-ones attention mask."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = PerceiverForMaskedLM(PerceiverConfig(qk_channels=256, v_channels=1280)).eval()
    x = torch.randint(6, 262, (1, 2048))
    return model, x, torch.ones_like(x)


def main():
    args = [a for a in sys.argv[1:] if a != "--profile"]
    profile = "--profile" in sys.argv[1:]
    threads = int(args[0])
    reps = int(args[1]) if len(args) > 1 else 5
    model, x, mask = language_perceiver(threads)
    times = []
    with torch.no_grad():
        for i in range(2 + reps):
            t = time.perf_counter()
            model(inputs=x, attention_mask=mask)
            if i >= 2:
                times.append((time.perf_counter() - t) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"pytorch {torch.__version__} mlm-forward threads={threads} batch 1 x 2048: mean {sum(times)/len(times):.1f} ms, "
          f"min {min(times):.1f} ms over {reps} reps; peak RSS {peak:.2f} GiB", flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile
        with torch.no_grad(), torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(inputs=x, attention_mask=mask)
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=40,
                                                                 max_shapes_column_width=70), flush=True)


if __name__ == "__main__":
    main()
