"""The app's one job runner: work off the UI thread, results and failures delivered back on it.

Every pane that runs something slow (a model forward, loading a model or a tokenizer, encoding a long text) submits
it here as ``fn(job) -> result``. What the two runners this replaces each learned is kept:

* **Per-kind staleness.** A job has a *kind* ("load", "step", "main", "compare", ...). Submitting a job of a kind
  makes the older jobs of that kind stale: one that has not started is skipped, one that is running can see it
  (``job.is_stale()``, e.g. to stop loading) and whatever it returns is dropped. The UI only ever sees the result of
  the latest request of each kind.
* **Bound slots on explicit queued connections.** Results come back through a signal of the runner (which lives on
  the UI thread) connected with ``Qt.QueuedConnection`` to a bound method of it. A lambda or a plain function has no
  thread of its own, and PySide may then run it in the emitting worker thread, touching widgets from there (seen: a
  segfault in the Generation pane).
* **Failures as one object.** A job that raises delivers a :class:`JobFailed` instead of its result: the exception,
  its one-line message, the formatted traceback, and whether it is the user's mistake (bad input: show the message)
  or a bug (report it too).
* **Torch threads chosen for the worker.** On a desktop whose other programs keep cores busy, torch's default intra-op
  threads make a model step several times slower (each parallel region waits for a descheduled thread), so the
  worker threads run torch with ``torch_threads`` threads (1 unless told; measured in bench/bench_generation.py).
"""

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

from app.failure import JobFailed, is_user_error

__all__ = ["Job", "JobFailed", "JobRunner", "is_user_error"]


class Job:
    """The handle a job function gets: ask whether it is stale, say how far it has got."""

    def __init__(self, runner: "JobRunner", kind: str, generation: int):
        self.kind = kind
        self.generation = generation
        self._runner = runner

    def is_stale(self) -> bool:
        """True once a newer job of the same kind was submitted, the kind was cancelled, or the runner closed."""
        return self._runner.closed or self._runner.generation(self.kind) != self.generation

    def progress(self, value) -> None:
        """Report progress (any object: a line of text, a fraction...); delivered as sig_progress unless stale."""
        if not self.is_stale():
            try:
                self._runner._sig_progress_from_worker.emit(self.kind, self.generation, value)
            except RuntimeError:  # the runner was deleted without close(): nobody is listening
                pass


class _Task(QRunnable):
    def __init__(self, runner: "JobRunner", job: Job, fn: Callable):
        super().__init__()
        self.setAutoDelete(True)
        self.runner, self.job, self.fn = runner, job, fn

    def run(self):
        runner, job = self.runner, self.job
        result, ran = None, False
        if not job.is_stale():
            _set_torch_threads(runner.torch_threads)
            ran = True
            try:
                result = self.fn(job)
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the UI thread, none is lost
                result = JobFailed(exc)
        if not runner.closed:
            try:
                runner._sig_finished_from_worker.emit(job.kind, job.generation, ran, result)
            except RuntimeError:  # the runner was deleted without close(): nobody is waiting
                pass


_configured = threading.local()


def _set_torch_threads(n: int | None) -> None:
    """torch.set_num_threads(n) once per worker thread (only if the job uses torch at all: importing it is slow)."""
    if n is None or getattr(_configured, "threads", None) == n:
        return
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        # not imported (a job that never uses torch needs no threads set), or another thread is importing it right
        # now (the module is in sys.modules half-initialised): the next job checks again
        return
    torch.set_num_threads(n)
    _configured.threads = n


class JobRunner(QObject):
    """Runs ``fn(job)`` jobs on a private thread pool; delivers results on the UI thread, newest of each kind only.

    ``threads`` is how many jobs run at once (1: one after another, in submission order). ``torch_threads`` is set
    in each worker thread before its first job that has torch imported (None: leave torch's default).
    """

    sig_done = Signal(str, object)
    """(kind, result or JobFailed) of the latest job of that kind, after its ``on_done`` callback ran."""

    sig_progress = Signal(str, object)
    """(kind, value) from ``job.progress(value)`` of the latest job of that kind."""

    sig_busy_changed = Signal(bool)
    """True when a job is submitted to an idle runner; False when the last one has finished and been delivered."""

    _sig_finished_from_worker = Signal(str, int, bool, object)
    _sig_progress_from_worker = Signal(str, int, object)

    def __init__(self, parent=None, threads: int = 1, torch_threads: int | None = 1):
        super().__init__(parent)
        self.torch_threads = torch_threads
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._generation: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}  # kind -> jobs submitted and not yet finished
        self._callbacks: dict[tuple[str, int], Callable] = {}
        self.closed = False
        queued = Qt.ConnectionType.QueuedConnection  # explicit: these are emitted from worker threads
        self._sig_finished_from_worker.connect(self._on_finished, queued)
        self._sig_progress_from_worker.connect(self._on_progress, queued)

    # ---- submitting ----------------------------------------------------------------------------------------------
    def submit(self, kind: str, fn: Callable[[Job], object], on_done: Callable[[object], None] | None = None) -> int:
        """Queue ``fn(job)`` as the latest job of ``kind``; older jobs of that kind become stale.

        ``on_done(result or JobFailed)`` runs on the UI thread if this is still the latest job of its kind when it
        finishes. Returns the job's generation number (-1 after close()).
        """
        if self.closed:
            return -1
        generation = self._generation.get(kind, 0) + 1
        self._generation[kind] = generation
        was_idle = not self.busy
        self._in_flight[kind] = self._in_flight.get(kind, 0) + 1
        if on_done is not None:
            self._callbacks[(kind, generation)] = on_done
        if was_idle:
            self.sig_busy_changed.emit(True)
        self._pool.start(_Task(self, Job(self, kind, generation), fn))
        return generation

    def cancel(self, kind: str) -> None:
        """Make the queued and running jobs of ``kind`` stale: nothing they return is delivered."""
        self._generation[kind] = self._generation.get(kind, 0) + 1
        for key in [k for k in self._callbacks if k[0] == kind]:
            del self._callbacks[key]

    def generation(self, kind: str) -> int:
        """The generation number of the latest job of ``kind`` (0 if none was submitted)."""
        return self._generation.get(kind, 0)

    # ---- state ---------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Some job is queued or running (or finished and not yet delivered)."""
        return any(self._in_flight.values())

    def busy_with(self, kind: str) -> bool:
        """A job of ``kind`` is queued or running."""
        return self._in_flight.get(kind, 0) > 0

    def running_kinds(self) -> list[str]:
        """The kinds with jobs in flight, in no particular order."""
        return [k for k, n in self._in_flight.items() if n > 0]

    # ---- delivery (UI thread) ------------------------------------------------------------------------------------
    @Slot(str, int, bool, object)
    def _on_finished(self, kind: str, generation: int, ran: bool, result) -> None:
        self._in_flight[kind] = max(0, self._in_flight.get(kind, 0) - 1)
        callback = self._callbacks.pop((kind, generation), None)
        try:
            if not self.closed and ran and generation == self._generation.get(kind):
                if callback is not None:
                    callback(result)
                self.sig_done.emit(kind, result)
        finally:
            if not self.busy and not self.closed:
                self.sig_busy_changed.emit(False)

    @Slot(str, int, object)
    def _on_progress(self, kind: str, generation: int, value) -> None:
        if not self.closed and generation == self._generation.get(kind):
            self.sig_progress.emit(kind, value)

    # ---- ending --------------------------------------------------------------------------------------------------
    def wait(self, msecs: int = -1) -> bool:
        """Block until no job is queued or running (shutdown, tests); True if so. Results are delivered later, by
        the event loop."""
        return self._pool.waitForDone(msecs)

    def close(self) -> None:
        """Drop queued jobs, make the running ones stale, wait for them; nothing is delivered after this."""
        self.closed = True
        self._callbacks.clear()
        self._pool.clear()
        self._pool.waitForDone()
