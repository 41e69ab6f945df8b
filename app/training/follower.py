"""Following a run folder's ``metrics.jsonl`` without touching it on the UI thread.

:class:`RunFollower` reads the file in a worker thread with :class:`engine.metricstail.MetricsTail` (bounded reads,
never blocking on a FIFO, never raising for what a line holds) and hands the messages to the UI thread, which takes
them a few milliseconds' worth per tick. A 100 MB file is shown as it is read while the window stays responsive; the
reader stays at most ``MAX_PENDING`` messages ahead of the UI, so memory stays bounded too.
"""

import collections
import os
import threading
import time

from PySide6.QtCore import QObject, QTimer, Signal

from engine.runs import RunFolder

FOLLOW_S = 0.5  # how often the file is looked at once everything in it was read
DRAIN_MS = 30  # the UI takes messages this often...
DRAIN_BUDGET_S = 0.012  # ...for at most this long per tick
MAX_PENDING = 20_000  # messages read ahead of the UI before the reader waits


class _Reader(threading.Thread):
    """Reads one metrics.jsonl into ``pending`` until stopped: ("message", msg) and ("problem", line) items."""

    def __init__(self, path: str):
        super().__init__(name="run-follower", daemon=True)
        from engine.metricstail import MetricsTail

        self.tail = MetricsTail(path)
        self.pending: collections.deque = collections.deque()
        self.stopped = threading.Event()
        self.skipped = 0
        self._problem = ""

    def run(self) -> None:
        while not self.stopped.is_set():
            if len(self.pending) >= MAX_PENDING:
                self.stopped.wait(0.05)
                continue
            try:
                batch = self.tail.read()
            except Exception as e:  # noqa: BLE001 - a reader thread must say what went wrong, not die silently
                self._say(f"cannot follow {self.tail.path}: {type(e).__name__}: {e}")
                self.stopped.wait(FOLLOW_S)
                continue
            if batch.problem:
                self._say(batch.problem)
            else:
                self._problem = ""
            if batch.restarted:
                self.skipped = 0
            self.pending.extend(("message", m) for m in batch.messages)
            if batch.skipped:
                self.skipped += batch.skipped
                lines = f"{self.skipped:,} line{'s' if self.skipped != 1 else ''}"
                self.pending.append(("problem", f"{os.path.basename(self.tail.path)}: {lines} that are not "
                                                f"messages of a run were skipped (the first: {batch.skip_reason})"))
            if not batch.more:
                self.stopped.wait(FOLLOW_S)

    def _say(self, problem: str) -> None:
        if problem != self._problem:  # once, not every half second
            self._problem = problem
            self.pending.append(("problem", problem))


class RunFollower(QObject):
    """Tails ``DIR/metrics.jsonl`` in a worker thread and emits the new messages on the UI thread."""

    sig_message = Signal(object)
    """A message read from the file, in file order."""
    sig_problem = Signal(str)
    """One line when the file cannot be followed (a folder, a FIFO) or holds lines that are not messages (a count,
    not one report per line)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.folder = None
        self._reader: _Reader | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self.deliver)

    @property
    def following(self) -> bool:
        return self.folder is not None

    @property
    def pending(self) -> int:
        """Messages read but not yet delivered."""
        return len(self._reader.pending) if self._reader is not None else 0

    def follow(self, folder) -> None:
        """Start from the beginning of the folder's metrics (the history first, then what gets added)."""
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder")
        self.stop()
        self.folder = folder
        self._reader = _Reader(str(RunFolder(folder).metrics_path))
        self._reader.start()
        self._timer.start()

    def stop(self) -> None:
        """Stop following; nothing more is delivered."""
        self._timer.stop()
        if self._reader is not None:
            self._reader.stopped.set()
            self._reader.join(2.0)
            self._reader = None
        self.folder = None

    def deliver(self, budget_s: float | None = DRAIN_BUDGET_S) -> None:
        """Emit what the reader has read, for at most budget_s seconds (None: all of it)."""
        reader = self._reader
        if reader is None:
            return
        deadline = None if budget_s is None else time.monotonic() + budget_s
        while reader.pending and reader is self._reader:
            kind, item = reader.pending.popleft()
            if kind == "message":
                self.sig_message.emit(item)
            else:
                self.sig_problem.emit(item)
            if deadline is not None and time.monotonic() >= deadline:
                break
