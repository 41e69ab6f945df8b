"""What a run folder holds, in one row: name, date, model, data, progress, best validation loss, speed and state.

    >>> summary = summarize("runs/sc")                          # never raises for a damaged folder
    >>> summary.state in STATES
    True

A run's state comes from the end of its ``metrics.jsonl`` (after its last ``Started``): a ``Finished`` message says
finished or stopped (diverged counts as crashed), a ``Failed`` one crashed. With neither, the folder's lock decides:
held, the run is running; free, it was killed without a word. A folder without a lock file (older runs) is running
while its metrics keep growing, and crashed once they have been quiet for much longer than a step takes.
"""

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.messages import Eval, Failed, Finished, Outcome, Started, Step, read_jsonl
from engine.runlock import LOCK_NAME, RunLock
from engine.runs import RunFolder

STATES = ("running", "stopped", "finished", "crashed")
QUIET_S = 60.0  # a run with no end message is running while its last line is younger than this (or 20 steps' time)
QUIET_STEPS = 20
RATE_STEPS = 20  # tokens per second: over the last this many logged steps


@dataclass
class RunSummary:
    """One run folder, as the library lists it. Missing facts are "" / 0 / NaN; ``problem`` says what was wrong."""

    path: str
    name: str
    date: float = math.nan  # time.time() of the run's first step (else of its folder's files)
    n_params: int = 0
    model: str = ""  # "4 layers × 128, 0.80 M params"
    positions: str = ""
    tokenizer: str = ""
    corpus: str = ""
    precision: str = ""
    world_size: int = 1
    steps: int = 0
    max_iters: int = 0
    best_val: float = math.nan
    last_loss: float = math.nan
    tokens_per_s: float = math.nan
    ms_per_step: float = math.nan
    skipped_steps: int = 0
    state: str = "crashed"
    detail: str = ""  # the finish reason or the error
    has_checkpoint: bool = False
    config: dict = field(default_factory=dict)
    problem: str = ""


def is_run_folder(path) -> bool:
    folder = RunFolder(path)
    return folder.path.is_dir() and (folder.has_checkpoint() or folder.has_metrics() or folder.config_path.is_file())


def find_runs(root, depth: int = 2) -> list[Path]:
    """Run folders at or under root, down to ``depth`` levels (an experiment folder holds its arms one level down),
    sorted by path. Unreadable folders are skipped."""
    root = Path(root)
    found = []

    def walk(path: Path, level: int) -> None:
        if is_run_folder(path):
            found.append(path)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, level + 1)

    walk(root, 0)
    return found


def summarize(path, now: float | None = None) -> RunSummary:
    """The library row of a run folder. Tolerates a half-written metrics.jsonl, a missing config and a crashed run."""
    folder = RunFolder(path)
    s = RunSummary(path=str(folder.path), name=folder.path.name, has_checkpoint=folder.has_checkpoint())
    problems = []
    try:
        config = json.loads(folder.config_path.read_text(encoding="utf-8"))
        s.config = config if isinstance(config, dict) else {}
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, ValueError) as e:
        problems.append(f"config.json unreadable: {e}")
    try:
        msgs, _ = read_jsonl(folder.metrics_path, 0)
    except OSError as e:
        msgs = []
        problems.append(f"metrics.jsonl unreadable: {e}")

    start = max((i for i, m in enumerate(msgs) if isinstance(m, Started)), default=0)
    end = None
    for msg in msgs:
        if isinstance(msg, Started):
            s.config = msg.config or s.config
            s.n_params, s.world_size = msg.n_params or s.n_params, msg.world_size
    steps = [m for m in msgs if isinstance(m, Step)]
    for msg in msgs[start:]:
        if isinstance(msg, (Finished, Failed)):
            end = msg
    if steps:
        s.steps = steps[-1].step
        s.last_loss = steps[-1].loss
        s.skipped_steps = steps[-1].skipped_steps
        s.date = steps[0].time
        rates = [m.tokens_per_s for m in steps[-RATE_STEPS:] if m.tokens_per_s > 0]
        if rates:
            s.tokens_per_s = len(rates) / sum(1.0 / r for r in rates)  # harmonic mean: every step has the same tokens
    vals = [m.val_loss for m in msgs if isinstance(m, Eval) and math.isfinite(m.val_loss)]
    s.best_val = min(vals) if vals else math.nan

    cfg = s.config
    s.positions = str(cfg.get("pos", ""))
    s.tokenizer = str(cfg.get("tokenizer", ""))
    corpus = str(cfg.get("corpus", ""))
    s.corpus = os.path.basename(corpus) if os.sep in corpus else corpus
    s.precision = str(cfg.get("precision", ""))
    s.max_iters = _int(cfg.get("max_iters"))
    tokens_per_iter = _int(cfg.get("batch_size")) * _int(cfg.get("grad_accum")) * _int(cfg.get("block_size"))
    if tokens_per_iter and math.isfinite(s.tokens_per_s) and s.tokens_per_s > 0:
        s.ms_per_step = 1000.0 * tokens_per_iter / s.tokens_per_s
    if cfg.get("n_layer"):
        size = f"{s.n_params / 1e6:.2f} M params" if s.n_params else ""
        s.model = f"{_int(cfg.get('n_layer'))} layers × {_int(cfg.get('n_embd'))}" + (f", {size}" if size else "")

    if not steps and s.has_checkpoint:  # a folder with a checkpoint but no metrics (copied, or metrics deleted)
        _from_checkpoint(s, folder, problems)
    if math.isnan(s.date):
        s.date = _mtime(folder)
    s.state, s.detail = _state(s, end, folder, steps, now)
    s.problem = "; ".join(problems)
    return s


def _state(s: RunSummary, end, folder: RunFolder, steps: list, now: float | None) -> tuple[str, str]:
    if isinstance(end, Failed):
        return "crashed", end.error
    if isinstance(end, Finished):
        if end.outcome is Outcome.COMPLETED:
            return "finished", end.reason
        if end.outcome is Outcome.STOPPED:
            return "stopped", end.reason
        return "crashed", end.reason  # Outcome.DIVERGED: "diverged: ..."
    holder = RunLock.holder(folder.path)
    if holder is not None:
        return "running", f"held by {holder.describe()}"
    if not folder.has_metrics():
        if s.has_checkpoint:
            return ("finished", "") if s.max_iters and s.steps >= s.max_iters else ("stopped", "")
        return "crashed", "no metrics.jsonl and no checkpoint"
    if (folder.path / LOCK_NAME).exists():  # the trainer held the folder's lock and nobody holds it now
        return "crashed", "ended without a word (killed?)"
    # no lock file (a run from before the lock, or a folder copied here): running while metrics.jsonl is fresh
    now = time.time() if now is None else now
    try:
        age = now - folder.metrics_path.stat().st_mtime
    except OSError:
        age = math.inf
    step_s = s.ms_per_step / 1000.0 if math.isfinite(s.ms_per_step) else 0.0
    if age <= max(QUIET_S, QUIET_STEPS * step_s):
        return "running", ""
    return "crashed", f"ended without a word (metrics.jsonl quiet for {_ago(age)})"


def _from_checkpoint(s: RunSummary, folder: RunFolder, problems: list) -> None:
    from engine.checkpoint import CheckpointError, read_checkpoint
    from engine.runs import TrainingState

    try:
        payload = read_checkpoint(folder.checkpoint_path)
    except (CheckpointError, OSError) as e:
        problems.append(f"ckpt.pt unreadable: {e}")
        return
    state = TrainingState.from_payload(payload)
    if state is not None:
        s.steps = state.step
        if math.isfinite(state.best_val):
            s.best_val = state.best_val
        train = payload.get("train") or {}
        if not s.config and isinstance(train.get("config"), dict):
            s.config = train["config"]
            s.positions, s.tokenizer = str(s.config.get("pos", "")), str(s.config.get("tokenizer", ""))
            s.corpus, s.precision = str(s.config.get("corpus", "")), str(s.config.get("precision", ""))
            s.max_iters = _int(s.config.get("max_iters"))
    model = payload.get("model")
    if isinstance(model, dict) and not s.n_params:
        shared = {v.data_ptr(): int(v.numel()) for v in model.values() if hasattr(v, "data_ptr")}  # tied weights once
        s.n_params = sum(shared.values())
    mc = payload.get("model_config")
    if isinstance(mc, dict):
        s.positions = s.positions or str(mc.get("pos", ""))
        s.model = f"{_int(mc.get('n_layer'))} layers × {_int(mc.get('n_embd'))}, {s.n_params / 1e6:.2f} M params"


def _mtime(folder: RunFolder) -> float:
    times = []
    for p in (folder.metrics_path, folder.checkpoint_path, folder.config_path, folder.path):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return min(times) if times else math.nan


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ago(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "ever"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
