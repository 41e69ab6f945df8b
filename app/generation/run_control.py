"""Run: step automatically at the chosen speed, until paused, a limit or a stop sequence, showing the real rate.

The next step is scheduled when the previous one has been shown, at the chosen interval after the previous step
*started* (not after it ended), so a step that takes 30 ms of a 50 ms interval still gives the chosen rate; a model too
slow for the chosen rate runs flat out and the real rate is shown beside the chosen one.
"""

import time

from PySide6.QtCore import QObject, QTimer

from app.generation.state import GenerationState, RateMeter
from app.generation.widgets import SPEEDS


class RunControl(QObject):
    """Drives ``pane.state`` from the pane's Run button, speed slider and limits."""

    def __init__(self, pane):
        super().__init__(pane)
        self.pane = pane
        self.state: GenerationState = pane.state
        self.rate = RateMeter()
        self.start_len = 0  # tokens generated when Run was pressed
        self._last_start = 0.0
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._tick)
        pane.run_button.toggled.connect(self._on_toggled)
        pane.speed.valueChanged.connect(lambda _: self.show_speed())
        self.show_speed()

    @property
    def running(self) -> bool:
        return self.pane.run_button.isChecked()

    def interval_s(self) -> float:
        return 1.0 / SPEEDS[self.pane.speed.value()]

    def show_speed(self):
        wanted = SPEEDS[self.pane.speed.value()]
        rate = self.rate.rate() if self.running else None
        slow = rate is not None and rate < wanted * 0.9
        label = self.pane.speed_label
        label.setText(f"{wanted} tok/s" + (f" (real {rate:.1f})" if slow else ""))
        label.setToolTip("This model cannot step this fast on this machine: the real rate is shown" if slow else "")

    def _on_toggled(self, on: bool):
        pane = self.pane
        pane.run_button.setText("Pause ❚❚" if on else "Run ▶▶")
        self.rate.reset()
        self.timer.stop()
        if on:
            self.start_len = len(self.state.snapshot.history) if self.state.snapshot else 0
            self._tick()
        self.show_speed()
        pane.update_actions()

    def _tick(self):
        if not self.running or self.state.busy:
            return  # a busy state: after_step schedules the next tick
        if not self.state.ready:
            self.pane.pause()
            return
        self._last_start = time.perf_counter()
        self.state.step(self.pane.controls.settings(), self.pane.controls.seed.value())

    def after_step(self, record):
        """A stepped token was shown: stop if a limit is reached, else schedule the next step."""
        if not self.running:
            return
        self.rate.tick(time.perf_counter())
        self.show_speed()
        state = self.state
        tokenizer = state.loaded.tokenizer
        generated = len(state.snapshot.history) - self.start_len
        ids = state.snapshot.ids[state.snapshot.prompt_len + self.start_len:]
        reason = self.pane.run_limits().stop_reason(generated, tokenizer.decode(ids))
        if not reason and record.token_id in tokenizer.special_tokens.values():
            reason = f"paused at the special token {state.label(record.token_id)}"
        if reason:
            self.pane.pause()
            self.pane.counts.setText(self.pane.counts.text() + f" · Run {reason}")
            return
        wait = self.interval_s() - (time.perf_counter() - self._last_start)
        self.timer.start(max(0, int(round(wait * 1000))))
