"""Training speed and quality of the nanoGPT-equivalent preset on tiny Shakespeare, beside nanoGPT's figures.

    python bench/bench_training.py                 # 2000 iterations single-process, 300 with 2 DDP processes
    python bench/bench_training.py --iters 500     # shorter (val loss reported at the steps reached)

Preset "shakespeare-char-cpu" = nanoGPT's documented CPU run (4 layers, 4 heads, 128 wide, context 64, batch 12,
lr 1e-3 -> 1e-4 over 2000 iterations, dropout 0). Corpus: ../shared/data/tinyshakespeare.txt beside the repository
(the text behind nanoGPT's published numbers), else the built-in "shakespeare" corpus (a different, larger text).
ms/iter is the median time of an optimizer step (forward, backward, clip, AdamW; evaluations not included);
"wall" also counts evaluations, samples and checkpoints.
"""

import argparse
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.messages import Eval, Failed, Finished, Step  # noqa: E402
from engine.presets import preset  # noqa: E402
from engine.train import TrainConfig, launch, train  # noqa: E402

NANOGPT_MS = "33-55"
NANOGPT_VAL_2000 = 1.89
VAL_AT = (250, 500, 1000, 2000)


def corpus_path() -> str:
    shared = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    return str(shared) if shared.exists() else "shakespeare"


def step_ms(config: TrainConfig, msgs) -> list[float]:
    return [1000.0 * config.tokens_per_iter / m.tokens_per_s for m in msgs if isinstance(m, Step) and m.tokens_per_s]


def single(config: TrainConfig, threads: int):
    torch.set_num_threads(threads)
    msgs = []
    t0 = time.perf_counter()
    train(config, msgs.append)
    return msgs, time.perf_counter() - t0


def ddp(config: TrainConfig, world_size: int):
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    t0 = time.perf_counter()
    handle = launch(config, world_size=world_size, emit_queue=q, stop_event=ctx.Event(), threads=1, nice=0)
    msgs = []
    try:
        while not (msgs and isinstance(msgs[-1], (Finished, Failed))):
            try:
                msgs.append(q.get(timeout=1.0))
            except queue.Empty:
                if handle.poll():
                    raise SystemExit(f"the DDP run ended without a report (exit codes {handle.exitcodes})") from None
        handle.join(60)
    finally:
        handle.kill()
    if isinstance(msgs[-1], Failed):
        raise SystemExit(f"the DDP run failed: {msgs[-1].error}\n{msgs[-1].traceback}")
    return msgs, time.perf_counter() - t0


def summary(name, config, msgs, wall, skip=10):
    ms = step_ms(config, msgs)[skip:]  # the first steps warm up allocators and caches
    med = statistics.median(ms)
    n = sum(isinstance(m, Step) for m in msgs)
    print(f"{name:<28} {med:8.1f} ms/iter  {config.tokens_per_iter / med * 1000:9,.0f} tokens/s   "
          f"(mean {statistics.mean(ms):.1f}, p90 {sorted(ms)[int(len(ms) * 0.9)]:.1f}; "
          f"wall {wall:.1f} s for {n} iterations)")
    return med


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=2000, help="single-process iterations (default 2000)")
    parser.add_argument("--ddp-iters", type=int, default=300, help="iterations of the 2-process run (timing only)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the single process")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="fp32 is nanoGPT's setting; bf16 autocast is faster on CPUs with AVX512-BF16/AMX")
    parser.add_argument("--no-ddp", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

    corpus = corpus_path()
    base = {**preset("shakespeare-char-cpu"), "corpus": corpus, "device": "cpu", "sample_len": 100,
            "precision": args.precision}
    print(f"corpus: {corpus}; preset shakespeare-char-cpu, {args.precision}; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f} (other work skews the timings)")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        config = TrainConfig.from_dict({**base, "out_dir": f"{tmp}/single", "max_iters": args.iters})
        msgs, wall = single(config, args.threads)
        print()
        print(f"{'':<28} {'ours':>8}          {'':>9}           nanoGPT (this machine kind): {NANOGPT_MS} ms/iter")
        summary(f"1 process, {args.threads} threads", config, msgs, wall)
        if not args.no_ddp:
            dconf = TrainConfig.from_dict({**base, "out_dir": f"{tmp}/ddp", "max_iters": args.ddp_iters,
                                           "eval_interval": 10**6, "checkpoint_interval": 0})
            dmsgs, dwall = ddp(dconf, 2)
            summary("2 DDP processes (gloo), 1 thread each", dconf, dmsgs, dwall)

        print(f"load average after: {os.getloadavg()[0]:.2f}")
        evals = {m.step: m for m in msgs if isinstance(m, Eval)}
        print()
        print(f"{'step':>6} {'train loss':>11} {'val loss':>9}   nanoGPT val loss")
        for step in VAL_AT:
            if step in evals:
                ref = f"{NANOGPT_VAL_2000:.2f}" if step == 2000 else ""
                print(f"{step:>6} {evals[step].train_loss:>11.4f} {evals[step].val_loss:>9.4f}   {ref}")
        samples = [m for m in msgs if type(m).__name__ == "Sample"]
        if samples:
            print(f"\nsample at step {samples[-1].step}:\n{samples[-1].text}")


if __name__ == "__main__":
    main()
