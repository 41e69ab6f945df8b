"""Generation step latency of real model shapes beside the memory-bandwidth floor, and torch threads under load.

    python bench/bench_generation_models.py [--quick] [--skip-threads]

1. Step latency: for a GPT-2-small and a SmolLM-135M shape (random weights built from their Hugging Face configs
   through engine.hf.config_from_hf: speed does not depend on what a model learned), in fp32 and bf16, one KV-cache
   step (1 token attending to C-1 cached ones) at context C = 16 / 256 / 1024, with 1 torch thread (what the app's
   worker uses). Beside it the floor: the bytes of weights a step must read (every weight once; of an untied token
   table, and of a learned position table, one row) divided by the copy bandwidth measured in the same run with
   1 thread (bytes read + written per second copying a 256 MB tensor: a step reads its weights once, so this is the
   rate they can stream at). Ratios: step / floor, and each context's step / the context-16 step. A step also reads
   the KV cache (every layer's keys and values of the C-1 tokens before it), which grows with C: the last column is
   the step over the floor with those bytes added, (weights + cache) / bandwidth, what the hardware allows at C.
2. Threads: the GPT-2-small fp32 context-256 step with 1 and 2 torch threads, A B A B, with no extra load and then
   with one extra process spinning on a core (`python -c "while 1: pass"`), as any desktop's other programs do.

The machine this runs on may be shared: each figure is a median of several steps, and the ratios are measured
within the same run; the load average is printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GPT2_SMALL = {"architectures": ["GPT2LMHeadModel"], "vocab_size": 50257, "n_positions": 1024, "n_layer": 12,
              "n_head": 12, "n_embd": 768}
SMOLLM_135M = {"architectures": ["LlamaForCausalLM"], "vocab_size": 49152, "hidden_size": 576,
               "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
               "num_key_value_heads": 3, "max_position_embeddings": 2048, "rope_theta": 10000.0,
               "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
SHAPES = {"GPT-2-small": GPT2_SMALL, "SmolLM-135M": SMOLLM_135M}
CONTEXTS = (16, 256, 1024)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(cfg: dict, dtype: torch.dtype):
    from engine.hf import config_from_hf
    from engine.incremental import lay_out_for_decoding
    from engine.model import GPT

    config, _ = config_from_hf(cfg, "bench")
    torch.manual_seed(0)
    return lay_out_for_decoding(GPT(config).to(dtype).eval())  # as the app's models are


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one step reads: every parameter once, but one row of an untied token table and of a learned
    position table."""
    seen, total = set(), 0
    tied = model.config.tie_weights
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        nbytes = p.numel() * p.element_size()
        if ("wte" in name and not tied) or "wpe" in name:
            nbytes = p.shape[-1] * p.element_size()
        total += nbytes
    return total


def kv_cache_bytes(model, context: int) -> int:
    """Bytes of keys and values a step at this context reads from the cache (the C-1 tokens before it)."""
    c = model.config
    return c.n_layer * 2 * c.n_kv_head * c.head_size * (context - 1) * next(model.parameters()).element_size()


def copy_bandwidth(n_bytes: int = 256 * 2**20, reps: int = 5) -> float:
    """Bytes read + written per second by a tensor copy with the current torch threads (best of reps)."""
    src = torch.ones(n_bytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(_time(lambda: dst.copy_(src)) for _ in range(reps))
    return 2 * n_bytes / best


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.no_grad()
def step_times(model, context: int, n: int) -> list[float]:
    """Seconds of n KV-cache steps, each the token at position context-1 after context-1 cached ones."""
    ids = torch.randint(0, model.config.vocab_size, (1, context))
    cache = model.new_cache(1, max_len=context)
    model(ids[:, :context - 1], cache=cache)  # prefill
    out = []
    for i in range(n + 1):
        t = _time(lambda: model(ids[:, context - 1:], cache=cache, last_only=True))
        cache.truncate(context - 1)
        if i:  # the first is a warm-up
            out.append(t)
    return out


def latency_table(n_steps: int) -> None:
    torch.set_num_threads(1)
    bandwidth = statistics.median(copy_bandwidth() for _ in range(3))
    print(f"copy bandwidth, 1 thread: {bandwidth / 1e9:.2f} GB/s (read + write)")
    print(f"{'model':<13}{'dtype':>6}{'params':>9}{'weights/step':>14}{'floor ms':>10}{'context':>9}"
          f"{'step ms':>9}{'step/floor':>12}{'step/ctx16':>12}{'KV MB':>8}{'step/(floor+KV)':>17}")
    for name, cfg in SHAPES.items():
        for dtype_name, dtype in DTYPES.items():
            model = build(cfg, dtype)
            wbytes = weight_bytes_per_token(model)
            floor = wbytes / bandwidth
            base = None
            for context in CONTEXTS:
                step = statistics.median(step_times(model, context, n_steps))
                kv = kv_cache_bytes(model, context)
                base = base or step
                print(f"{name:<13}{dtype_name:>6}{model.num_params() / 1e6:>8.1f}M{wbytes / 1e6:>11.0f} MB"
                      f"{floor * 1e3:>10.1f}{context:>9}{step * 1e3:>9.1f}{step / floor:>12.2f}{step / base:>12.2f}"
                      f"{kv / 1e6:>8.0f}{step * bandwidth / (wbytes + kv):>17.2f}")
            del model


def threads_table(n_steps: int, rounds: int) -> None:
    model = build(GPT2_SMALL, torch.float32)
    print("GPT-2-small fp32, context 256, median ms per KV-cache step, A B A B:")
    for label, busy in (("no extra load", False), ("one core kept busy by another process", True)):
        spinner = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
        try:
            times = {1: [], 2: []}
            for _ in range(rounds):
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    times[threads] += step_times(model, 256, n_steps)
            one, two = statistics.median(times[1]), statistics.median(times[2])
            print(f"  {label:<40} 1 thread {one * 1e3:7.1f} ms   2 threads {two * 1e3:7.1f} ms   "
                  f"2/1 = {two / one:.2f}   (max 1 thread {max(times[1]) * 1e3:.0f} ms, "
                  f"2 threads {max(times[2]) * 1e3:.0f} ms)")
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    torch.set_num_threads(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per figure")
    parser.add_argument("--skip-threads", action="store_true")
    args = parser.parse_args(argv)
    n_steps = 5 if args.quick else 15
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f} at the start "
          f"(a shared machine: other processes slow every figure)")
    start = time.perf_counter()
    latency_table(n_steps)
    if not args.skip_threads:
        threads_table(n_steps, rounds=2 if args.quick else 3)
    print(f"total {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
