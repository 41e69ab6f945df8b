"""Running the model off the UI thread: one job at a time, results and failures delivered back as queued signals.

The Generation pane owns one :class:`JobRunner`. Every job that touches the model or the session (load, set the
prompt, step, force, undo) goes through it, so the session is never used by two threads at once and the UI thread
only ever reads the plain snapshots the jobs return.
"""

import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot


class _JobSignals(QObject):
    sig_progress = Signal(str)
    """A line of text saying what the job is doing now (emitted from the worker thread)."""

    sig_done = Signal(object)
    """The job's return value."""

    sig_failed = Signal(object, str)
    """(the exception, its formatted traceback)."""


class _Job(QRunnable):
    def __init__(self, fn: Callable, signals: _JobSignals):
        super().__init__()
        self.setAutoDelete(True)
        self.fn = fn
        self.signals = signals

    def run(self):
        try:
            result = self.fn(self.signals.sig_progress.emit)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the UI thread, none is lost
            self.signals.sig_failed.emit(exc, traceback.format_exc())
        else:
            self.signals.sig_done.emit(result)


class JobRunner(QObject):
    """Runs ``fn(progress)`` jobs one after another on a private single-thread pool.

    ``submit`` returns False (and runs nothing) while a job is in flight; the caller decides whether to drop or retry.
    """

    sig_busy_changed = Signal(bool)
    """True when a job starts, False when it has finished and its callbacks have run."""

    sig_progress = Signal(str)
    """Progress text of the running job."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals: _JobSignals | None = None
        self._callbacks: tuple[Callable, Callable] | None = None  # (on_done, on_failed) of the running job
        self.kind = ""  # what the running job is ("load", "step", ...), "" when idle
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._signals is not None

    def submit(self, kind: str, fn: Callable, on_done: Callable, on_failed: Callable) -> bool:
        if self.busy or self._closed:
            return False
        signals = _JobSignals()
        # Bound slots of this UI-thread object, queued explicitly: a lambda has no thread of its own, and PySide
        # may then run it in the emitting worker thread, touching widgets from there (seen: a segfault).
        queued = Qt.ConnectionType.QueuedConnection
        signals.sig_progress.connect(self.sig_progress, queued)
        signals.sig_done.connect(self._on_done, queued)
        signals.sig_failed.connect(self._on_failed, queued)
        self._signals = signals  # kept alive until the job's signal has been delivered
        self._callbacks = (on_done, on_failed)
        self.kind = kind
        self.sig_busy_changed.emit(True)
        self._pool.start(_Job(fn, signals))
        return True

    @Slot(object)
    def _on_done(self, result):
        self._finish(0, result)

    @Slot(object, str)
    def _on_failed(self, exc, tb):
        self._finish(1, exc, tb)

    def _finish(self, which: int, *args):
        if self._closed or self._callbacks is None:  # delivered after close(): the pane is going away
            return
        callback = self._callbacks[which]
        self._signals = None
        self._callbacks = None
        self.kind = ""
        try:
            callback(*args)
        finally:
            self.sig_busy_changed.emit(False)

    def wait(self, msecs: int = -1) -> bool:
        """Block until the pool is idle (shutdown, tests); True if it is."""
        return self._pool.waitForDone(msecs)

    def close(self):
        """Wait for the running job, then ignore whatever it still delivers (the owner is shutting down)."""
        self._pool.waitForDone()
        self._closed = True
