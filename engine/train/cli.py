"""The llm-train command line: build_config() (defaults < preset < CONFIG.json < key=value) and main().

    $ llm-train --preset shakespeare-char-cpu corpus=shakespeare out_dir=out max_iters=500
    $ llm-train --resume out max_iters=2000             # continue the same run
    $ torchrun --nproc_per_node=2 -m engine.train --preset shakespeare-char-cpu out_dir=out
"""

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from engine.checkpoint import CheckpointError
from engine.errors import error_line, is_disk_full, one_line
from engine.flops import human_flops
from engine.messages import CheckpointSaved, Eval, Finished, Message, NonFinite, Outcome, Sample, Started, Step
from engine.presets import TRAIN_PRESETS, preset
from engine.train.config import USER_ERRORS, ConfigError, TrainConfig, _known, load_run_config, problems, read_error
from engine.train.distributed import _dist_env
from engine.train.trainer import train

class ConsolePrinter:
    """The console view of the message stream (rank 0); call it with each message.

    It keeps the tokens per step of the run being printed (from its Started message) to turn tokens/s into ms/iter.
    """

    def __init__(self, file=None):
        self.file = file
        self.tokens_per_iter = 1

    def line(self, msg: Message) -> str | None:
        """The line printed for msg (None for Failed: main() prints the error itself)."""
        if isinstance(msg, Step):
            ms = 1000.0 * self.tokens_per_iter / msg.tokens_per_s if msg.tokens_per_s else 0.0
            line = (f"step {msg.step}: loss {msg.loss:.4f}, lr {msg.lr:.2e}, grad norm {msg.grad_norm:.3f}, "
                    f"{ms:.1f} ms/iter, {msg.tokens_per_s:,.0f} tokens/s")
            if msg.mfu > 0:
                line += f", MFU {100 * msg.mfu:.1f}%"
            if msg.amp_scale != 1.0:
                line += f", scale {msg.amp_scale:g}"
            if msg.skipped_steps:
                line += f", {msg.skipped_steps} skipped"
            return line
        if isinstance(msg, Eval):
            return f"step {msg.step}: train loss {msg.train_loss:.4f}, val loss {msg.val_loss:.4f}"
        if isinstance(msg, Sample):
            return f"--- sample at step {msg.step} ---\n{msg.text}\n---"
        if isinstance(msg, Started):
            config = TrainConfig.from_dict(msg.config)
            self.tokens_per_iter = config.tokens_per_iter
            peak = f"; {config.precision} matmul peak {human_flops(msg.peak_flops)}" if msg.peak_flops > 0 else ""
            return (f"run {msg.run_id}: {msg.n_params / 1e6:.2f} M parameters, {msg.world_size} process"
                    f"{'es' if msg.world_size > 1 else ''}{msg.exchange_note()}"
                    + (f", resuming at step {msg.step}" if msg.step else "") + peak)
        if isinstance(msg, CheckpointSaved):
            return f"step {msg.step}: saved {msg.path}"
        if isinstance(msg, NonFinite):
            return f"step {msg.step}: non-finite: {msg.what}"
        if isinstance(msg, Finished):
            return f"finished at step {msg.step}: {msg.reason}"
        return None

    def __call__(self, msg: Message) -> None:
        line = self.line(msg)
        if line is not None:
            print(line, file=self.file or sys.stdout, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_config(args: list[str], preset_name: str | None = None, resume: str | None = None) -> TrainConfig:
    """TrainConfig from the command line's pieces: defaults < preset < CONFIG.json < key=value (or --key=value)."""
    values: dict = {}
    if resume is not None:
        if preset_name:
            raise ConfigError("--preset cannot be combined with --resume (the run folder has its config)")
        values = load_run_config(resume).to_dict()
    if preset_name:
        values.update(preset(preset_name))
    overrides, config_file = {}, None
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            key = key.strip().lstrip("-").strip()
            if not key:
                raise ConfigError(f"{arg!r}: expected key=value")
            overrides[key] = value
        elif resume is None and config_file is None:
            config_file = arg
            try:
                d = json.loads(Path(arg).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"config file {arg!r} not found (settings are written key=value)") from None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise ConfigError(f"cannot read config file {arg!r}: {read_error(e)}; it should hold settings as a "
                                  f"JSON object") from None
            if not isinstance(d, dict):
                raise ConfigError(f"config file {arg!r} must hold a JSON object of settings")
            values.update(_known(d))
        else:
            raise ConfigError(f"unexpected argument {arg!r} (settings are written key=value)")
    if resume is not None and "out_dir" in overrides and Path(overrides["out_dir"]) != Path(resume):
        raise ConfigError("out_dir cannot change when resuming (it is the run folder)")
    values.update(_known(overrides))
    if resume is not None:
        values.update(out_dir=str(resume), resume=True)
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """llm-train [CONFIG.json] [--preset NAME] [--resume DIR] key=value ... -> exit status."""
    parser = _Parser(prog="llm-train", description="Train a small GPT. Settings: defaults < --preset < "
                     "CONFIG.json < key=value overrides. Runs unchanged under torchrun.")
    parser.add_argument("args", nargs="*", metavar="CONFIG.json | key=value")
    parser.add_argument("--preset", choices=list(TRAIN_PRESETS), help="start from a named configuration")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR (overrides such as max_iters=...)")
    parser.add_argument("--list-settings", action="store_true", help="print every setting with its default")
    from engine.experiments import cli as experiment_cli

    experiment_cli.add_arguments(parser)
    ns, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    rank = _dist_env()[0] if "RANK" in os.environ and os.environ["RANK"].isdigit() else 0

    def fail(message: str, code: int) -> int:
        if rank == 0:
            print(f"llm-train: error: {message}", file=sys.stderr, flush=True)
        return code

    if ns.list_settings:
        for key, value in TrainConfig().to_dict().items():
            print(f"{key}={value}")
        return 0
    if ns.experiment:
        return experiment_cli.main(ns, ns.args + extra)
    try:
        config = build_config(ns.args + extra, ns.preset, ns.resume)
        found = problems(config, world_size=_dist_env()[2])  # the checks the app's form makes too
    except (ConfigError, CheckpointError) as e:
        return fail(one_line(e, None), 2)
    if found:
        return fail("; ".join(found), 2)

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl+C: stop now
            raise KeyboardInterrupt
        stop.set()
        if rank == 0:
            print("stopping after this step (saving a checkpoint); press Ctrl+C again to abort",
                  file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        finished = train(config, ConsolePrinter() if rank == 0 else None, stop.is_set)
    except USER_ERRORS as e:
        return fail(one_line(e, None), 1)
    except OSError as e:  # a full disk, an unwritable folder: the data is safe, the message is one line
        return fail(error_line(e) if is_disk_full(e) else (e.strerror or one_line(e, None))
                    + (f": {e.filename}" if e.filename else ""), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if finished.outcome is Outcome.DIVERGED:
        return fail(finished.reason, 1)
    return 0

