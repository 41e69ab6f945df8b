"""Work on the UI thread cut into steps, one step per event-loop turn, so that repaints and input get in between.

A step is a callable; it returns True to be called again (one more piece of the same work) and anything else when it
is done. ``run`` replaces whatever was left of the previous list: showing a newer result drops the rest of the older.
"""

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class Steps(QObject):
    """``run(steps, on_done)``: the first step now, each next one on a later turn, then ``on_done(timings)``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._steps: list[Callable[[], object]] = []
        self._on_done: Callable[[dict], None] | None = None
        self.timings: dict = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)

    def run(self, steps: list[Callable[[], object]], on_done: Callable[[dict], None], **timings):
        """timings: figures to hand on to ``on_done`` with the steps' own (show_s: their sum, longest_step_s, and
        longest_step: which step that was, 0 the first)."""
        self._steps, self._on_done = list(steps), on_done
        self._index = 0
        self.timings = {**timings, "show_s": 0.0, "longest_step_s": 0.0, "longest_step": 0}
        self._step()

    @property
    def pending(self) -> bool:
        return bool(self._steps)

    def stop(self):
        self._steps = []
        self._timer.stop()

    def _step(self):
        if not self._steps:
            return
        started = time.perf_counter()
        again = self._steps[0]() is True
        took = time.perf_counter() - started
        self.timings["show_s"] += took
        if took > self.timings["longest_step_s"]:
            self.timings["longest_step_s"], self.timings["longest_step"] = took, self._index
        if not again:
            self._steps.pop(0)
            self._index += 1
        if self._steps:
            self._timer.start()
        elif self._on_done is not None:
            self._on_done(self.timings)
