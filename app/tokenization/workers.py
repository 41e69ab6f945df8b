"""Off the UI thread: tokenizing, comparing, decoding, listing model tokenizers, training a BPE.

A :class:`JobRunner` runs callables one at a time in its own thread pool. Each job has a *kind* ("main", "compare",
...) and a generation number; submitting a new job of a kind makes the older ones stale: a stale job that has not
started is skipped, one that finished is dropped, so the UI only ever shows the result of the latest request.
"""

import traceback

from PySide6.QtCore import QObject, QThreadPool, Signal


class JobFailed:
    """What a job returns instead of its result when it raised: the error, and whether the user caused it."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.message = str(exc) or type(exc).__name__
        self.expected = isinstance(exc, ValueError)  # bad input: show it; anything else is a bug: report it too
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class JobRunner(QObject):
    """Runs ``fn(is_stale)`` in a worker thread; delivers ``(kind, result)`` on the UI thread unless superseded."""

    sig_done = Signal(str, object)
    """(kind, result or JobFailed) for the latest job of that kind only."""

    _sig_finished = Signal(str, int, object)

    def __init__(self, parent=None, threads: int = 1):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._generation: dict[str, int] = {}
        self._busy: dict[str, int] = {}  # kind -> jobs submitted and not finished
        self._closed = False
        self._sig_finished.connect(self._on_finished)

    def submit(self, kind: str, fn) -> int:
        """Start ``fn(is_stale) -> result`` for ``kind``; older jobs of that kind become stale."""
        if self._closed:
            return -1
        generation = self._generation.get(kind, 0) + 1
        self._generation[kind] = generation
        self._busy[kind] = self._busy.get(kind, 0) + 1

        def is_stale() -> bool:
            return self._closed or self._generation.get(kind) != generation

        def run():
            result = None
            if not is_stale():
                try:
                    result = fn(is_stale)
                except Exception as exc:  # noqa: BLE001 - every failure goes back to the UI, which reports it
                    result = JobFailed(exc)
            if not self._closed:
                try:
                    self._sig_finished.emit(kind, generation, result)
                except RuntimeError:  # the pane was deleted without shutdown(): nobody is waiting
                    pass

        self._pool.start(run)
        return generation

    def cancel(self, kind: str) -> None:
        """Make the pending and running jobs of ``kind`` stale (their results are dropped)."""
        self._generation[kind] = self._generation.get(kind, 0) + 1

    def busy(self, kind: str) -> bool:
        return self._busy.get(kind, 0) > 0

    def _on_finished(self, kind: str, generation: int, result) -> None:
        self._busy[kind] = max(0, self._busy.get(kind, 0) - 1)
        if generation == self._generation.get(kind) and result is not None:
            self.sig_done.emit(kind, result)

    def wait(self, msecs: int = -1) -> bool:
        return self._pool.waitForDone(msecs)

    def shutdown(self) -> None:
        """Drop pending jobs and wait for the running one (its result is discarded)."""
        self._closed = True
        self._pool.clear()
        self._pool.waitForDone()
