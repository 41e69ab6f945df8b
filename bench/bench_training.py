"""Training speed against nanoGPT and between 1 and 2 processes, and the validation loss at 2000 iterations.

    python bench/bench_training.py --nanogpt ~/src/nanoGPT    # everything, nanoGPT's train.py beside ours (~15 min)
    python bench/bench_training.py --quick                   # shorter rounds, no 2000-iteration run
    python bench/bench_training.py --skip-quality            # speed only
    python bench/bench_training.py --skip-ddp --seeds 1337,1,2,3  # only the validation loss, ours over 4 seeds

Preset "shakespeare-char-cpu" = nanoGPT's documented CPU run (4 layers, 4 heads, 128 wide, context 64, batch 12,
lr 1e-3 -> 1e-4 over 2000 iterations, dropout 0, fp32). Corpus: ../shared/data/tinyshakespeare.txt beside the
repository (the text behind nanoGPT's published numbers) if it is there, else the built-in "shakespeare" corpus.

Speed is measured A B A B in one run, so that whatever else the machine does falls on both sides alike:
- ours vs nanoGPT: `llm-train` and nanoGPT's `train.py` (from a checkout given by --nanogpt, copied into a
  temporary folder with its data prepared from the same corpus; nothing of it is kept), each eager (nanoGPT's
  documented command) and with torch.compile (compile=true; the compile is in the first iterations, left out), run
  in turns as the processes a user starts, each with torch's default threads. ms/iter is the time between
  consecutive iterations as each program logs them (nanoGPT's "time" and our Step times), everything included, the
  first 10 of a round left out.
- 1 vs 2 processes: engine.train.launch at the same global batch (12; 6 per process), 2 torch threads for the one
  process, 1 each for the two, which average their gradients in shared memory (engine/train/shared_reduce.py), and
  the two again with gloo's all-reduce (LLM_PLAYGROUND_GLOO_ALLREDUCE=1), in turns. Beside them what gloo's
  exchange alone costs: its all-reduce of as many float32 values as the model has parameters between two processes
  (started together after a barrier), the part of the step that no overlap hides when both cores compute.
The speed comparison has a third arm of ours, bf16 autocast (weights, optimizer and attention in float32: see
engine.model.attends_in_float32), against the same nanoGPT command: nanoGPT has no reduced precision on the CPU.
The 2000-iteration runs (ours in fp32 and in bf16, in this process with torch's default threads; nanoGPT's command
as a process when a checkout is given) report the validation loss along the way, every estimate the mean of
--eval-iters batches (default 200; nanoGPT's documented 20 leave ~0.02 of noise).
"""

import argparse
import math
import multiprocessing
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.messages import Eval, Failed, Finished, Step, read_jsonl  # noqa: E402
from engine.presets import preset  # noqa: E402
from engine.train import TrainConfig, launch, train  # noqa: E402

VAL_AT = (250, 500, 1000, 2000)
SKIP = 10  # iterations at the start of every round left out (allocators, caches, the first evaluation)
PRESET = "shakespeare-char-cpu"


def corpus_path() -> str:
    shared = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    return str(shared) if shared.exists() else "shakespeare"


def corpus_file(tmp: Path) -> Path:
    """The corpus as a file both programs read (the built-in corpus written out when the shared one is absent)."""
    path = corpus_path()
    if os.path.isfile(path):
        return Path(path)
    from engine.data import load_text

    out = tmp / "corpus.txt"
    out.write_text(load_text(path), encoding="utf-8")
    return out


def median_ms(intervals: list[float]) -> float:
    return 1000.0 * statistics.median(intervals)


# --- ours and nanoGPT, as processes ------------------------------------------------------------------------------

def ours_round(corpus: Path, tmp: Path, iters: int, n: int, compile_: bool, precision: str = "fp32") -> list[float]:
    """One `llm-train` run of iters iterations -> seconds between consecutive logged steps."""
    out = tmp / f"ours-{n}-{compile_}-{precision}"
    cmd = [sys.executable, "-m", "engine.train", "--preset", PRESET, f"corpus={corpus}", f"out_dir={out}",
           f"max_iters={iters}", f"lr_decay_iters={2000}", "log_interval=1", f"eval_interval={10 * iters}",
           "checkpoint_interval=0", "sample_len=0", f"compile={compile_}", f"precision={precision}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"llm-train failed: {done.stderr.strip().splitlines()[-1:]}")
    msgs, _ = read_jsonl(out / "metrics.jsonl", 0)
    times = [m.time for m in msgs if isinstance(m, Step)]
    shutil.rmtree(out)
    return [b - a for a, b in zip(times, times[1:])][SKIP:]


def prepare_nanogpt(checkout: Path, corpus: Path, tmp: Path) -> Path:
    """A copy of nanoGPT's code in tmp with data/shakespeare_char prepared from corpus by nanoGPT's prepare.py."""
    if not (checkout / "train.py").is_file() or not (checkout / "data" / "shakespeare_char" / "prepare.py").is_file():
        raise SystemExit(f"{checkout} is not a nanoGPT checkout (no train.py / data/shakespeare_char/prepare.py)")
    work = tmp / "nanogpt"
    shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git", "*.bin", "input.txt", "out*"))
    data = work / "data" / "shakespeare_char"
    shutil.copyfile(corpus, data / "input.txt")  # prepare.py downloads only when input.txt is missing
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True)
    return work


def nanogpt_command(iters: int, out: str, compile_: bool = False, eval_interval: int = 0,
                    eval_iters: int = 20) -> list[str]:
    """nanoGPT's documented CPU command for iters iterations (no evaluation after the first unless eval_interval)."""
    return [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu", f"--compile={compile_}",
            f"--eval_iters={eval_iters}", "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4",
            "--n_head=4", "--n_embd=128", f"--max_iters={iters}", "--lr_decay_iters=2000", "--dropout=0.0",
            f"--eval_interval={eval_interval or 10 * iters}", f"--out_dir={out}", "--always_save_checkpoint=False"]


def run_nanogpt(work: Path, cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"nanoGPT's train.py failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def nanogpt_round(work: Path, iters: int, n: int, compile_: bool) -> list[float]:
    """nanoGPT's documented CPU command for iters iterations -> seconds per iteration as it logs them."""
    stdout = run_nanogpt(work, nanogpt_command(iters, f"out-bench-{n}", compile_))
    ms = [float(x) for x in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", stdout, re.M)]
    return [m / 1000.0 for m in ms[1:]][SKIP:]  # iter 0 includes the first evaluation


ARMS = ("ours", "ours bf16", "ours compiled", "nanoGPT", "nanoGPT compiled")
COMPARED = {"eager": ("ours", "nanoGPT"), "ours bf16 / nanoGPT eager": ("ours bf16", "nanoGPT"),
            "compiled": ("ours compiled", "nanoGPT compiled"),
            "ours compiled / nanoGPT eager": ("ours compiled", "nanoGPT")}


def against_nanogpt(checkout: Path, rounds: int, iters: int) -> None:
    """Five arms in turn each round: ours and nanoGPT's documented command (eager), ours with bf16 autocast (nanoGPT
    has no reduced precision on the CPU: its autocast context is for CUDA only), then both with torch.compile (its
    time is the first iteration's, left out with the rest of the first SKIP)."""
    with tempfile.TemporaryDirectory(prefix="bench-nanogpt-") as name:
        tmp = Path(name)
        corpus = corpus_file(tmp)
        work = prepare_nanogpt(checkout, corpus, tmp)
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        ratios: dict[str, list[float]] = {what: [] for what in COMPARED}
        for n in range(rounds):
            got = {
                "ours": ours_round(corpus, tmp, iters, n, False),
                "nanoGPT": nanogpt_round(work, iters, n, False),
                "ours bf16": ours_round(corpus, tmp, iters, n, False, "bf16"),
                "ours compiled": ours_round(corpus, tmp, iters, n, True),
                "nanoGPT compiled": nanogpt_round(work, iters, n, True),
            }
            for arm, got_times in got.items():
                times[arm] += got_times
            ms = {arm: median_ms(t) for arm, t in got.items()}
            for what, (a, b) in COMPARED.items():
                ratios[what].append(ms[a] / ms[b])
            print(f"  round {n + 1}: " + ", ".join(f"{arm} {ms[arm]:.1f}" for arm in ARMS) + " ms/iter", flush=True)
    ms = {arm: median_ms(t) for arm, t in times.items()}
    print(f"ours vs nanoGPT, {PRESET}, {rounds} x {iters} iterations per arm, in turns (ms/iter, medians):")
    for arm in ARMS:
        print(f"  {arm:17} {ms[arm]:6.1f}")
    for what, (a, b) in COMPARED.items():
        print(f"  {what:30} {ms[a] / ms[b]:.3f}x (per-round {min(ratios[what]):.3f}-{max(ratios[what]):.3f})")


# --- 1 vs 2 processes ----------------------------------------------------------------------------------------------

def launched_round(config: TrainConfig, world_size: int, threads: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    handle = launch(config, world_size=world_size, emit_queue=q, stop_event=ctx.Event(), threads=threads, nice=0)
    msgs: list = []
    try:
        while not (msgs and isinstance(msgs[-1], (Finished, Failed))):
            try:
                msgs.append(q.get(timeout=1.0))
            except queue.Empty:
                if handle.poll():
                    raise SystemExit(f"the run ended without a report (exit codes {handle.exitcodes})") from None
        handle.join(60)
    finally:
        handle.kill()
    if isinstance(msgs[-1], Failed):
        raise SystemExit(f"the run failed: {msgs[-1].error}\n{msgs[-1].traceback}")
    times = [m.time for m in msgs if isinstance(m, Step)]
    return [b - a for a, b in zip(times, times[1:])][SKIP:]


def processes(corpus: str, rounds: int, iters: int) -> None:
    from engine.train.shared_reduce import OPT_OUT

    arms = {"1 process": (1, 2, ""), "2 processes": (2, 1, ""), "2 with gloo's all-reduce": (2, 1, "1")}
    times: dict = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for n in range(rounds):
            base = {**preset(PRESET), "corpus": corpus, "device": "cpu", "max_iters": iters, "log_interval": 1,
                    "eval_interval": 10 * iters, "checkpoint_interval": 0, "sample_len": 0}
            line = []
            for i, (arm, (world_size, threads, opt_out)) in enumerate(arms.items()):
                os.environ[OPT_OUT] = opt_out  # the processes inherit it
                try:
                    t = launched_round(TrainConfig.from_dict({**base, "out_dir": f"{tmp}/{n}-{i}"}), world_size,
                                       threads)
                finally:
                    os.environ.pop(OPT_OUT, None)
                times[arm].append(t)
                line.append(f"{arm} {median_ms(t):5.1f}")
            print(f"  round {n + 1}: " + ", ".join(line) + " ms/step", flush=True)
    one = median_ms([x for t in times["1 process"] for x in t])
    print("2 processes (1 thread each) vs 1 (2 threads), global batch 12, in turns (median ms per global step):")
    for arm in arms:
        ms = median_ms([x for t in times[arm] for x in t])
        ratios = [median_ms(a) / median_ms(b) for a, b in zip(times[arm], times["1 process"])]
        print(f"  {arm:<26}{ms:6.1f}   {ms / one:.3f}x (per round {min(ratios):.3f}-{max(ratios):.3f})")
    exchange(one)


def _allreduce_worker(rank: int, port: int, n_values: int, reps: int, out) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        values, times = torch.ones(n_values), []
        for i in range(reps + 5):  # the first 5 connect and warm up
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(values)
            if i >= 5:
                times.append(time.perf_counter() - t0)
        if rank == 0:
            out.put(1000.0 * statistics.median(times))
    finally:
        dist.destroy_process_group()


def allreduce_ms(n_values: int, reps: int = 30) -> float:
    """Median ms of gloo's all-reduce of n_values float32 values between two processes on this machine."""
    from engine.train.distributed import _free_port

    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_allreduce_worker, args=(rank, port, n_values, reps, out)) for rank in (0, 1)]
    for p in procs:
        p.start()
    try:
        return out.get(timeout=120)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()


def exchange(one_ms: float) -> None:
    from engine.choices import estimate_params

    n = estimate_params(preset(PRESET), 65)
    ms = allreduce_ms(n)
    print(f"gloo all-reduce of the {n / 1e6:.2f} M gradients between 2 processes: {ms:.1f} ms = "
          f"{ms / one_ms:.2f} of the one-process step")


# --- quality ---------------------------------------------------------------------------------------------------------

def ours_losses(corpus: str, iters: int, eval_iters: int, precision: str, seed: int) -> dict[int, float]:
    """One run of ours in this process (torch's default threads) -> validation loss by step."""
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        config = TrainConfig.from_dict({**preset(PRESET), "corpus": corpus, "device": "cpu", "sample_len": 100,
                                        "out_dir": f"{tmp}/single", "max_iters": iters, "eval_iters": eval_iters,
                                        "precision": precision, "seed": seed})
        msgs: list = []
        t0 = time.perf_counter()
        train(config, msgs.append)
        wall = time.perf_counter() - t0
    steps = [m for m in msgs if isinstance(m, Step)]
    rates = [m.tokens_per_s for m in steps[SKIP:] if m.tokens_per_s]
    mfus = [m.mfu for m in steps[SKIP:] if m.mfu > 0]
    print(f"  ours {precision}, seed {seed}: {iters} iterations in {wall:.0f} s ({torch.get_num_threads()} threads), "
          f"median {statistics.median(rates):,.0f} tokens/s, MFU {100 * statistics.median(mfus):.1f}% of the "
          f"{precision} matmul peak measured at the start", flush=True)
    samples = [m for m in msgs if type(m).__name__ == "Sample"]
    if samples:
        print("    sample: " + samples[-1].text.replace("\n", " / ")[:160])
    return {m.step: m.val_loss for m in msgs if isinstance(m, Eval)}


def nanogpt_losses(checkout: Path, iters: int, eval_iters: int) -> dict[int, float]:
    """nanoGPT's documented command (eval_iters batches per estimate instead of its 20) -> validation loss by step."""
    with tempfile.TemporaryDirectory(prefix="bench-nanogpt-") as name:
        tmp = Path(name)
        work = prepare_nanogpt(checkout, corpus_file(tmp), tmp)
        stdout = run_nanogpt(work, nanogpt_command(iters, "out-quality", eval_interval=250, eval_iters=eval_iters))
    found = re.findall(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", stdout, re.M)
    return {int(step): float(loss) for step, loss in found}


def quality(corpus: str, iters: int, eval_iters: int, checkout: Path | None, seeds: list[int]) -> None:
    """The validation loss along a run of ours in fp32 and in bf16 autocast and of nanoGPT's train.py, each the mean
    of eval_iters batches per estimate (nanoGPT's documented 20 leave ~0.02 of noise; its README's 1.88 is one such)."""
    print(f"\nvalidation loss over {iters} iterations, each estimate the mean of {eval_iters} batches of 12 x 64:")
    runs = {f"{precision} {seed}": ours_losses(corpus, iters, eval_iters, precision, seed)
            for seed in seeds for precision in ("fp32", "bf16")}
    if checkout:
        runs["nanoGPT"] = nanogpt_losses(checkout, iters, eval_iters)
    print(f"  {'step':>6} " + " ".join(f"{name:>10}" for name in runs))
    for step in VAL_AT:
        print(f"  {step:>6} " + " ".join(f"{losses[step]:>10.4f}" if step in losses else f"{'-':>10}"
                                        for losses in runs.values()))
    if len(seeds) > 1:
        for precision in ("fp32", "bf16"):
            last = [runs[f"{precision} {seed}"].get(iters, math.nan) for seed in seeds]
            print(f"  ours {precision} at {iters} over {len(seeds)} seeds: mean {statistics.mean(last):.4f}, "
                  f"{min(last):.4f}-{max(last):.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, help="a checkout of github.com/karpathy/nanoGPT to run beside ours")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds of each comparison (default 3)")
    parser.add_argument("--round-iters", type=int, default=200, help="iterations per round (default 200)")
    parser.add_argument("--iters", type=int, default=2000, help="iterations of the quality runs (default 2000)")
    parser.add_argument("--seeds", default="1337", help="our seeds for the quality runs, comma-separated (default "
                        "1337, the preset's; nanoGPT's train.py has 1337 fixed)")
    parser.add_argument("--eval-iters", type=int, default=200,
                        help="batches per validation estimate in the quality runs (default 200)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 80 iterations, no quality run")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.round_iters, args.skip_quality = 2, 80, True
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

    corpus = corpus_path()
    print(f"corpus: {corpus}; torch {torch.__version__}, {os.cpu_count()} CPUs; load average before: "
          f"{os.getloadavg()[0]:.2f} (other work skews the timings; the alternation spreads it over both sides)")
    if args.nanogpt:
        against_nanogpt(args.nanogpt.expanduser(), args.rounds, args.round_iters)
    else:
        print("(no --nanogpt checkout given: the comparison with nanoGPT's train.py is skipped)")
    if not args.skip_ddp:
        processes(corpus, args.rounds, args.round_iters)
    if not args.skip_quality:
        quality(corpus, args.iters, args.eval_iters, args.nanogpt.expanduser() if args.nanogpt else None,
                [int(seed) for seed in args.seeds.split(",")])
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
