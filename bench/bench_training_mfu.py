"""Training throughput and model FLOPs utilisation of wider models, fp32 beside bf16 autocast, on this machine.

    python bench/bench_training_mfu.py                        # 6 layers, 6 heads, widths 192 / 384 / 576, context 256
    python bench/bench_training_mfu.py --widths 384 --iters 40 --rounds 3

The shape is nanoGPT's GPU Shakespeare config (config/train_shakespeare_char.py: 6 layers, 6 heads, 384 wide,
context 256, dropout 0.2; preset "shakespeare-char") with a smaller batch (default 8 rows) so that a few dozen
iterations take a minute on a laptop CPU; the width is varied because where bf16's matrix units win depends on it.

Every arm is a real `llm-train` run in this process (engine.train.train, its default threads), so the figures are
the ones a user sees on the run line: tokens per second, and MFU = the model's FLOPs per second (PaLM's count,
engine.flops) over the matmul peak this process measured at the start of the run *in that run's precision* (fp32
matmuls for fp32, bf16 for bf16 autocast). Arms alternate (fp32 bf16, then bf16 fp32, ...) so that other work on
the machine falls on both; the first iterations of each arm are left out.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.flops import human_flops  # noqa: E402
from engine.messages import Started, Step  # noqa: E402
from engine.presets import preset  # noqa: E402
from engine.train import TrainConfig, train  # noqa: E402

PRESET = "shakespeare-char"  # nanoGPT's GPU shape: 6 layers, 6 heads, 384 wide, context 256
SKIP = 4  # iterations at the start of every arm left out (allocators, first autocast casts, caches)


def bf16_units() -> str:
    """The CPU's bf16 instructions as Linux names them (AMX tiles, AVX-512 BF16), or "none found"."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return ", ".join(found) or "none found"


def arm(width: int, precision: str, iters: int, batch: int, out_dir: str) -> dict:
    """One run of iters iterations -> its median tokens/s and MFU and the peak it measured."""
    config = TrainConfig.from_dict({
        **preset(PRESET), "n_embd": width, "precision": precision, "batch_size": batch, "device": "cpu",
        "max_iters": iters, "lr_decay_iters": iters, "warmup_iters": 0, "log_interval": 1,
        "eval_interval": 10 * iters, "eval_iters": 1, "sample_len": 0, "checkpoint_interval": 0,
        "out_dir": out_dir,
    })
    msgs: list = []
    train(config, msgs.append)
    started = next(m for m in msgs if isinstance(m, Started))
    steps = [m for m in msgs if isinstance(m, Step)][SKIP:]
    if not steps:
        raise SystemExit(f"width {width} {precision}: no steps past the first {SKIP}; raise --iters")
    return {
        "tokens_per_s": statistics.median(m.tokens_per_s for m in steps),
        "mfu": statistics.median(m.mfu for m in steps),
        "peak": started.peak_flops,
        "flops_per_token": started.flops_per_token,
        "n_params": started.n_params,
        "loss": steps[-1].loss,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="192,384,576", help="model widths, comma-separated (multiples of 6)")
    parser.add_argument("--iters", type=int, default=24, help="iterations per arm (default 24; the first 4 skipped)")
    parser.add_argument("--batch", type=int, default=8, help="rows of 256 tokens per iteration (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="fp32/bf16 pairs per width (default 1)")
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 units: {bf16_units()}; load average before: "
          f"{os.getloadavg()[0]:.2f}")
    print(f"6 layers, 6 heads, context 256, batch {args.batch}, dropout 0.2; {args.iters} iterations per arm, "
          f"{args.rounds} round(s), first {SKIP} left out\n")
    print(f"{'width':>5} {'params':>7} {'GFLOP/tok':>9} | {'fp32 tok/s':>10} {'MFU':>6} {'peak':>13} | "
          f"{'bf16 tok/s':>10} {'MFU':>6} {'peak':>13} | bf16/fp32")
    with tempfile.TemporaryDirectory(prefix="bench-mfu-") as tmp:
        for width in widths:
            runs: dict[str, list[dict]] = {"fp32": [], "bf16": []}
            for n in range(args.rounds):
                for precision in (("fp32", "bf16") if n % 2 == 0 else ("bf16", "fp32")):
                    runs[precision].append(arm(width, precision, args.iters, args.batch,
                                               f"{tmp}/w{width}-{precision}-{n}"))
            row = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}
            fp32, bf16 = row["fp32"], row["bf16"]
            print(f"{width:>5} {fp32['n_params'] / 1e6:>6.1f}M {fp32['flops_per_token'] / 1e9:>9.3f} | "
                  f"{fp32['tokens_per_s']:>10,.0f} {100 * fp32['mfu']:>5.1f}% {human_flops(fp32['peak']):>13} | "
                  f"{bf16['tokens_per_s']:>10,.0f} {100 * bf16['mfu']:>5.1f}% {human_flops(bf16['peak']):>13} | "
                  f"{bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}x", flush=True)
    print("\nMFU: the model's FLOPs per second over the matmul peak measured by the run itself in its precision.")


if __name__ == "__main__":
    main()
