"""``llm-train --experiment KIND``: train every arm of an experiment into DIR/<arm>, then compare them.

    $ llm-train --experiment positions --preset tiny corpus=shakespeare out_dir=exp/pos max_iters=300
    $ torchrun --nproc_per_node=2 -m engine.train --experiment precision corpus=shakespeare out_dir=exp/prec

The arms run one after another: a one-process arm in this process, a DDP arm in processes of its own (launch()),
and under torchrun every arm in the torchrun processes themselves. Ctrl+C (or SIGTERM) stops the arm being trained
after a checkpoint and skips the rest.
"""

import math
import os
import queue as queue_module
import signal
import sys
import threading
import time

from engine.experiments.extrapolation import MULTIPLES, measure, write_csv
from engine.experiments.library import summarize
from engine.experiments.plan import EXPERIMENTS, Experiment, plan
from engine.messages import Failed, Finished, Sample
from engine.errors import one_line
from engine.train.config import USER_ERRORS, ConfigError


def add_arguments(parser) -> None:
    """The experiment options of llm-train's parser."""
    parser.add_argument("--experiment", choices=list(EXPERIMENTS),
                        help="train one run per arm into out_dir/<arm>: " + "; ".join(
                            f"{k}: {v}" for k, v in EXPERIMENTS.items()))
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="with --experiment: torch threads per process (default: the cores / processes)")
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="with --experiment: lower the training processes' priority by N")


def run(kind: str, config, threads: int = 0, nice: int = 0, out=None) -> int:
    """Run experiment kind over config (its out_dir is the experiment folder) -> exit status."""
    import torch

    from engine.train.cli import ConsolePrinter
    from engine.train.distributed import _dist_env

    out = out or sys.stdout
    rank, _, world = _dist_env()
    under_torchrun = world > 1
    if under_torchrun and kind == "processes":
        raise ConfigError("--experiment processes starts its own processes; run it without torchrun")
    experiment = plan(kind, config, cuda=torch.cuda.is_available(), gpus=torch.cuda.device_count())
    say = (lambda text: print(text, file=out, flush=True)) if rank == 0 else (lambda text: None)
    if rank == 0:
        experiment.write_manifest()
    say(f"experiment {kind} in {experiment.path}: {', '.join(a.name for a in experiment.arms)}")

    stop = threading.Event()
    cores = torch.get_num_threads()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say("stopping the arm being trained (saving a checkpoint); the others are skipped. Ctrl+C again to abort")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    reasons, seconds = {}, {}
    group = _shared_process_group(config) if under_torchrun else None
    try:
        for arm in experiment.arms:
            if stop.is_set():
                break
            printer = ConsolePrinter(out)
            t0 = time.perf_counter()
            if under_torchrun or arm.world_size == 1:  # the torchrun processes, or this one
                if not under_torchrun:
                    torch.set_num_threads(threads or cores)
                reasons[arm.name] = _in_process(experiment, arm, printer if rank == 0 else None, stop)
            else:
                reasons[arm.name] = _spawned(experiment, arm, printer, stop,
                                             threads or max(1, cores // arm.world_size), nice)
            seconds[arm.name] = time.perf_counter() - t0
            say(f"[{arm.name}] {reasons[arm.name]} in {seconds[arm.name]:.1f} s")
        if kind == "positions" and rank == 0 and not stop.is_set():
            _extrapolate(experiment, reasons, say, stop)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if group is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        _summary(experiment, seconds, say)
    if stop.is_set():
        return 130
    return 0 if len(reasons) == len(experiment.arms) and all(r == "completed" for r in reasons.values()) else 1


def _shared_process_group(config):
    """Under torchrun: one process group for every arm. The trainer uses a group that exists and leaves it up; a
    group torn down and made again for each arm raced (gloo: "connection refused" on the third arm)."""
    import torch
    import torch.distributed as dist

    from engine.train.distributed import _dist_env

    rank, local_rank, world = _dist_env()
    cuda = config.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank if local_rank < torch.cuda.device_count() else 0)
    dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
    return dist.group.WORLD


def _prefixed(printer, arm_name: str):
    def emit(msg):
        if isinstance(msg, Sample):
            return  # samples stay in metrics.jsonl: interleaved with the arms' lines they would drown them
        line = printer.line(msg)
        if isinstance(msg, Failed):
            line = f"failed: {msg.error}"
        if line is not None:
            print(f"[{arm_name}] {line}", file=printer.file, flush=True)
    return emit


def _in_process(experiment: Experiment, arm, printer, stop) -> str:
    from engine.train.trainer import train

    emit = _prefixed(printer, arm.name) if printer is not None else None
    try:
        return train(experiment.config(arm), emit, stop.is_set).reason
    except USER_ERRORS as e:
        return f"failed: {one_line(e, None)}"
    except Exception as e:  # noqa: BLE001 - reported by train() as a Failed message; the next arm still runs
        return f"failed: {type(e).__name__}: {one_line(e, None)}"


def _spawned(experiment: Experiment, arm, printer, stop, threads: int, nice: int) -> str:
    import multiprocessing

    from engine.train.launch import launch

    ctx = multiprocessing.get_context("spawn")
    q, stop_event = ctx.Queue(), ctx.Event()
    emit = _prefixed(printer, arm.name)
    reason = None
    run = launch(experiment.config(arm), arm.world_size, q, stop_event, threads=threads, nice=nice)
    try:
        while True:
            if stop.is_set():
                stop_event.set()
            done = run.poll()
            while True:
                try:
                    msg = q.get(timeout=0.0 if done else 0.1)
                except queue_module.Empty:
                    break
                emit(msg)
                if isinstance(msg, Finished):
                    reason = msg.reason
                elif isinstance(msg, Failed):
                    reason = f"failed: {msg.error}"
            if done:
                break
    except KeyboardInterrupt:
        run.kill()
        raise
    finally:
        run.join(5.0)
        q.close()
    if reason is None:
        codes = ", ".join(str(c) for c in run.exitcodes)
        reason = f"failed: the training process ended without a word (exit code {codes})"
    return reason


def _extrapolate(experiment: Experiment, reasons: dict, say, stop) -> None:
    rows = []
    for arm in experiment.arms:
        arm_dir = experiment.arm_dir(arm)
        if not (arm_dir / "ckpt.pt").is_file():
            say(f"[{arm.name}] no checkpoint: left out of the extrapolation table")
            continue
        try:
            arm_rows = measure(arm_dir, MULTIPLES, arm=arm.name, should_stop=stop.is_set)
        except USER_ERRORS as e:
            say(f"[{arm.name}] cannot measure the extrapolation: {one_line(e, None)}")
            continue
        rows += arm_rows
        for r in arm_rows:
            say(f"[{arm.name}] context {r.context}: " + (f"val loss {r.val_loss:.4f}" if not math.isnan(r.val_loss)
                                                         else f"refused ({r.refused})"))
    if rows and not stop.is_set():
        write_csv(experiment.extrapolation_path, rows)
        say(f"wrote {experiment.extrapolation_path}")


def _summary(experiment: Experiment, seconds: dict, say) -> None:
    say(f"{'arm':<12} {'steps':>6} {'best val':>9} {'last loss':>9} {'tokens/s':>9} {'ms/step':>8} {'skipped':>7} "
        f"{'time':>8}")
    for arm in experiment.arms:
        s = summarize(experiment.arm_dir(arm))
        say(f"{arm.name:<12} {s.steps:>6} {s.best_val:>9.4f} {s.last_loss:>9.4f} {s.tokens_per_s:>9,.0f} "
            f"{s.ms_per_step:>8.1f} {s.skipped_steps:>7} {seconds.get(arm.name, math.nan):>7.1f}s")


def main(ns, args: list[str]) -> int:
    """llm-train --experiment KIND [--preset NAME] [--threads N] [--nice N] key=value ... -> exit status."""
    from engine.checkpoint import CheckpointError
    from engine.train.cli import build_config

    def fail(message: str, code: int) -> int:
        print(f"llm-train: error: {message}", file=sys.stderr, flush=True)
        return code

    if ns.resume:
        return fail("--experiment cannot be combined with --resume (resume an arm's folder on its own)", 2)
    if not any(a.split("=", 1)[0].strip().lstrip("-") == "out_dir" for a in args if "=" in a):
        return fail("--experiment needs out_dir=DIR (the experiment folder; each arm trains in DIR/<arm>)", 2)
    if ns.threads < 0:
        return fail(f"--threads must be at least 1 (or 0 for automatic), got {ns.threads}", 2)
    if ns.nice:
        try:
            os.nice(ns.nice)
        except OSError:
            pass
    try:
        config = build_config(args, ns.preset)
        return run(ns.experiment, config, threads=ns.threads)
    except (ConfigError, CheckpointError) as e:
        return fail(one_line(e, None), 2)
    except USER_ERRORS as e:
        return fail(one_line(e, None), 1)
