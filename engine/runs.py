"""The run folder contract between the engine and the app: where a run keeps its files, and the training state a
checkpoint records.

    >>> folder = RunFolder("runs/sc")
    >>> folder.checkpoint_path.name, folder.metrics_path.name, folder.config_path.name
    ('ckpt.pt', 'metrics.jsonl', 'config.json')
    >>> TrainingState.from_payload({"train": {"iter_num": 500, "tokens_seen": 96000}}).step
    500
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

from engine.runlock import LOCK_NAME, Holder, RunLock

CKPT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class RunFolder:
    """A training run's folder: config.json (its settings), metrics.jsonl (the message stream), ckpt.pt (the latest
    checkpoint). Only the trainer's rank 0 writes them, holding the folder's lock (:meth:`lock`) for the whole run.
    """

    path: Path

    def __init__(self, path: "str | os.PathLike[str]"):
        object.__setattr__(self, "path", Path(path))

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CKPT_NAME

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def lock(self) -> RunLock:
        """The folder's one-writer lock (not yet taken): ``folder.lock().acquire()`` or ``with folder.lock():``."""
        return RunLock(self.path)

    def holder(self) -> Holder | None:
        """Who holds the folder's lock now (pid, host, start time), or None when no run is writing it."""
        return RunLock.holder(self.path)

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def has_metrics(self) -> bool:
        return self.metrics_path.exists()


@dataclass(frozen=True)
class TrainingState:
    """What a checkpoint says about the training behind it (its "train" entry; the trainer writes "iter_num")."""

    step: int
    tokens_seen: int = 0
    run_id: str = ""
    best_val: float = math.inf

    @classmethod
    def from_payload(cls, payload: dict) -> "TrainingState | None":
        """The state in a checkpoint payload, or None when it holds no (readable) training state."""
        train = payload.get("train") if isinstance(payload, dict) else None
        if not isinstance(train, dict):
            return None
        step = train.get("iter_num", train.get("step"))  # "step": the form engine.checkpoint's example shows
        if isinstance(step, bool) or not isinstance(step, int):
            return None
        tokens = train.get("tokens_seen", 0)
        best = train.get("best_val", math.inf)
        return cls(step=step, tokens_seen=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0,
                   run_id=str(train.get("run_id", "")),
                   best_val=float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else math.inf)
