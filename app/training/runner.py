"""Training processes seen from the app: start, poll, stop, and notice a worker that died.

:class:`RunController` starts the training processes with ``engine.train.launch`` (spawn start method: the
children never inherit the QApplication and import only the engine, never Qt) and polls their message queue
with a ~50 ms timer, so the UI thread never waits on training. (Following a run folder written by any other
process is :mod:`app.training.follower`.)
"""

import queue as queue_module
import time

from PySide6.QtCore import QObject, QTimer, Signal


POLL_MS = 50
POLL_BUDGET_S = 0.015  # at most this long draining the queue per tick; the rest waits for the next tick
EXIT_GRACE_S = 2.0  # after one rank ends badly, how long the others get before they are killed
# training processes run at a lower priority, so the UI stays responsive on a small machine: with another program
# keeping a core busy, the UI's 10 ms timer was late by 27-34 ms (p99) at nice 5 and 24-25 ms at nice 10, with
# the same training speed (bench/bench_training_ui.py)
NICE = 10


class RunController(QObject):
    """One training run in background processes; speaks through ``sig_message`` and ``sig_ended``."""

    sig_message = Signal(object)
    """A message from the run (an ``engine.messages.Message``), on the UI thread, in the order they were sent."""
    sig_ended = Signal(str, str, str)
    """(outcome, summary, details) once every process is gone. outcome: "completed", "stopped", "diverged",
    "failed" (the worker reported an exception: details is its traceback), "died" (a process ended without a
    word, e.g. killed from outside: summary says its exit code) or "killed" (by :meth:`kill`)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._run = None  # engine.train.LocalRun
        self._queue = None
        self._stop_event = None
        self._final = None  # (outcome, summary, details) from a Finished / Failed message
        self._bad_exit_at = None
        self._killed = False  # kill() was asked for
        self._terminated: set[int] = set()  # pids this controller terminated (their signal is not a crash)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return self._run is not None

    def processes(self) -> list:
        """The run's ``multiprocessing.Process`` objects (empty when nothing runs)."""
        return list(self._run.processes) if self._run is not None else []

    def start(self, config, world_size: int = 1) -> None:
        """Spawn ``world_size`` processes training ``config`` (an ``engine.train.TrainConfig``; resume=True
        continues its run folder). Returns at once; ConfigError for a config the processes could not run,
        RunFolderBusy (one line naming the holder) when another run writes that folder."""
        if self.running:
            raise RuntimeError("a run is already going")
        import multiprocessing

        from engine.runlock import RunLock
        from engine.train import launch

        # the worker's rank 0 takes the folder's lock and would refuse too; asking first saves starting processes
        RunLock.check_free(config.out_dir)

        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop_event = ctx.Event()
        self._final = None
        self._bad_exit_at = None
        self._killed = False
        self._terminated = set()
        try:
            self._run = launch(config, world_size, self._queue, self._stop_event, threads=1, nice=NICE)
        except BaseException:
            self._queue.close()
            self._queue, self._stop_event = None, None
            raise
        self._timer.start()

    def stop(self) -> None:
        """Ask the run to stop: the workers save a checkpoint, send Finished("stopped") and exit."""
        if self._stop_event is not None:
            self._stop_event.set()

    def kill(self) -> None:
        """End the run now, without the checkpoint a stop saves (the last one saved stays); sig_ended says "killed"."""
        if self._run is not None:
            self._killed = True
            self._terminate(timeout=2.0)

    def poll(self) -> None:
        """Deliver queued messages; once every process is gone, say how the run ended."""
        if self._queue is None or self._run is None:
            return
        codes = self._run.exitcodes  # read before draining: whatever a process sent before it exited is queued
        self._drain(POLL_BUDGET_S)
        if any(c not in (None, 0) for c in codes) and self._bad_exit_at is None:
            self._bad_exit_at = time.monotonic()
        if self._bad_exit_at is not None and time.monotonic() - self._bad_exit_at > EXIT_GRACE_S:
            # a rank died: the others would wait for it forever inside a collective
            self._terminate(timeout=1.0)
            codes = self._run.exitcodes
        if all(c is not None for c in codes):
            self._drain(None)
            self._end(codes)

    def _drain(self, budget_s: float | None) -> None:
        deadline = None if budget_s is None else time.monotonic() + budget_s
        while deadline is None or time.monotonic() < deadline:
            try:
                msg = self._queue.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                return
            except Exception:  # noqa: BLE001 - a message that cannot be unpickled: skip it, keep the stream going
                continue
            kind = getattr(msg, "type", "")
            if kind == "finished":
                self._final = (msg.outcome.value, msg.detail or msg.outcome.value, "")
            elif kind == "failed":
                self._final = ("failed", msg.error, msg.traceback)
            self.sig_message.emit(msg)

    def _end(self, codes) -> None:
        self._timer.stop()
        pids = [p.pid for p in self._run.processes]
        for p in self._run.processes:
            p.join(timeout=0.1)
        self._run = None
        self._queue.close()
        self._queue.join_thread()
        self._queue = None
        self._stop_event = None
        # a process killed from outside (a signal we did not send) is the cause, whatever the others said after it
        # (under DDP they fail with "connection reset by peer")
        external = [c for pid, c in zip(pids, codes) if c is not None and c < 0 and pid not in self._terminated]
        bad = [c for c in codes if c != 0]
        final = self._final
        if external and not self._killed and (final is None or final[0] == "failed"):
            code = external[0]
            details = (f"A training process ended ({_exit_reason(code)}) without reporting how: killed, out of "
                       f"memory, or crashed outside Python. Resume continues from the last checkpoint.")
            if final is not None:
                details += f"\n\nThe other processes then reported:\n{final[1]}\n{final[2]}"
            final = ("died", f"worker died (exit code {code})", details)
        elif final is None and self._killed:
            final = ("killed", "stopped at once, without saving", "")
        elif final is None:
            code = bad[0] if bad else 0
            final = ("died", f"worker died (exit code {code})",
                     f"The training process ended ({_exit_reason(code)}) without reporting how. Resume continues "
                     f"from the last checkpoint.")
        self.sig_ended.emit(*final)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop the run and wait for it (it saves a checkpoint first); terminate, then kill, whatever is left.

        Blocks up to ``timeout`` seconds: called when the window closes, after the user agreed to stop the run.
        """
        if self._run is None:
            return
        self.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c is None for c in self._run.exitcodes):
            self._drain(0.05)  # keep the pipe empty: a process cannot exit while its last messages wait to be read
            self._run.processes[0].join(0.05)
        self._terminate(timeout=2.0)
        self._timer.stop()
        # what the run said while stopping (its checkpoint, Finished) still reaches the pane
        codes = self._run.exitcodes
        self._drain(1.0)
        self._end(codes)

    def _terminate(self, timeout: float) -> None:
        for p in self._run.processes:
            if p.exitcode is None:
                self._terminated.add(p.pid)
                p.terminate()
        for p in self._run.processes:
            p.join(timeout)
            if p.exitcode is None:
                p.kill()
                p.join(timeout)


def _exit_reason(code: int) -> str:
    if code is None:
        return "still running"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exit code {code}, {name}"
    return f"exit code {code}"
