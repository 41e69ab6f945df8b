"""Per-step generation latency with and without the KV cache, at several context lengths.

    python bench/bench_generation.py [--threads 2] [--device cpu]

A step is "predict the next token after C tokens":
    no cache   one forward pass over all C tokens (logits of the last position only)
    KV cache   one forward pass of 1 token attending to a cache of C-1 tokens
With the cache a step should stay nearly flat as C grows (only attention reads grow, linearly); without it, the cost
grows with C. Random weights: speed does not depend on what a model has learned.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from engine.model import GPT, GPTConfig  # noqa: E402

MODELS = {
    # name: (config, repetitions at the longest context without the cache)
    "small 4x128": (GPTConfig(vocab_size=50304, block_size=1024, n_layer=4, n_head=4, n_embd=128), 5),
    "gpt2-small 12x768": (GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 2),
}
CONTEXTS = (16, 256, 1024)


def timed(fn, reps: int, device) -> float:
    """Best-of-reps seconds of fn(), after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)  # the least disturbed run: other processes share the cores


@torch.no_grad()
def bench_model(config: GPTConfig, long_reps: int, device) -> tuple[int, list[tuple[int, float, float]]]:
    """-> (parameter count, [(context, seconds per step without cache, with cache)])"""
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    ids = torch.randint(0, config.vocab_size, (1, max(CONTEXTS)), device=device)
    rows = []
    for C in CONTEXTS:
        reps_full = max(long_reps, int(long_reps * max(CONTEXTS) / C))
        full = timed(lambda: model(ids[:, :C], last_only=True), min(reps_full, 20), device)

        cache = model.new_cache(1, max_len=C)
        model(ids[:, :C - 1], cache=cache)  # prefill C-1 tokens

        def one_step():
            model(ids[:, C - 1:C], cache=cache, last_only=True)
            cache.truncate(C - 1)  # same step again next time

        cached = timed(one_step, 20, device)
        rows.append((C, full, cached))
    return model.num_params(), rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (other processes slow the numbers down)")
    print(f"{'model':<20}{'params':>9}{'context':>9}{'no cache ms':>13}{'KV cache ms':>13}{'cache/no-cache':>16}")
    start = time.perf_counter()
    for name, (config, long_reps) in MODELS.items():
        n_params, rows = bench_model(config, long_reps, device)
        for C, full, cached in rows:
            print(f"{name:<20}{n_params / 1e6:>8.1f}M{C:>9}{full * 1e3:>13.2f}{cached * 1e3:>13.2f}"
                  f"{cached / full:>16.3f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
