"""The Training pane's state, without Qt: the run shown, its phase, curves, samples, checkpoint and what to say.

Phases::

    idle ──Start/Resume──▶ running ──Stop──▶ stopping ──processes gone──▶ idle
      │                       └────────────processes gone───────────────▶ idle
      └──Follow──▶ following ──Stop following──▶ idle

Messages from a run, live from the worker queue or read back from ``metrics.jsonl``, go through
:meth:`RunState.dispatch`. The pane's widgets listen to :attr:`RunState.events` and ask :meth:`RunState.progress`
for the progress line, so everything the pane shows can be driven and checked here with plain messages and a clock::

    >>> from engine.messages import Started, Step
    >>> state = RunState()
    >>> state.begin("runs/a", max_iters=100, now=0.0)
    >>> state.dispatch(Started("r", config={"max_iters": 100}, n_params=10_000))
    >>> for step in (1, 2):
    ...     state.dispatch(Step("r", step=step, tokens_seen=64 * step, tokens_per_s=640.0, time=10.0 + step))
    >>> state.progress(now=12.5).text
    'step 2 / 100 · 640 tok/s · ETA 1:38'
"""

import html
import math
import os
import time
from dataclasses import dataclass

from app.events import Event
from app.training.history import History
from engine.flops import mfu
from engine.messages import Outcome
from engine.runs import RunFolder

PHASES = ("idle", "running", "stopping", "following")
MAX_SAMPLES = 200  # samples kept for the side panel
RATE_STEPS = 20  # tokens per second shown: over the last this many logged steps (one step's timing is noisy)
STALE_STEPS = 20  # a followed run that has logged nothing for this many step times (and a minute) gets no ETA
QUIET_S = 1.0  # a pause after a step longer than this, at an evaluation step, is shown as "evaluating"
TAIL_BYTES = 65_536  # how much of a metrics.jsonl's end is read to find its last checkpoint


@dataclass(frozen=True)
class Progress:
    """The progress bar and the line under it. ``busy``: work with no known end (the bar moves, no value)."""

    value: int
    maximum: int
    text: str
    busy: bool = False


class Events:
    """What a :class:`RunState` tells its views."""

    def __init__(self) -> None:
        self.phase = Event()
        """(phase): idle, running, stopping or following."""
        self.status = Event()
        """(text, rich): the status line changed; rich text is already escaped."""
        self.failure = Event()
        """(text): the failure details to show ("" hides them)."""
        self.samples = Event()
        """(): the samples changed."""
        self.checkpoint = Event()
        """(path): the run saved a checkpoint at this path (on this machine)."""
        self.curves = Event()
        """(): the history changed; the curves need a redraw."""


class RunState:
    """One run as the pane shows it (see the module docstring for the phases)."""

    def __init__(self) -> None:
        self.events = Events()
        self.history = History()
        self.phase = "idle"
        self.run_dir: str | None = None  # the run shown (started, resumed, followed or reopened)
        self.latest_checkpoint: str | None = None
        self.checkpoint_step: int | None = None  # step of the latest checkpoint of the run shown
        self.max_iters = 0
        self.samples: list[tuple[int, str]] = []
        self.status = "Ready."
        self.status_rich = False
        self.failure = ""
        self.run_over = False  # the run shown said it finished or failed
        self.curves_dirty = False  # set on any change of the history; the view clears it when it redraws
        self._last_step = None  # the latest Step message
        self._rate_origin: tuple[float, int] | None = None  # (time, step) of the first step after a (re)start
        self._began_at: float | None = None  # wall time of Start / Resume (progress before the first step)
        self._started = False  # the workers said Started
        self._config: dict = {}
        self._flops = (0.0, 0.0)  # (FLOPs per token, matmul peak FLOP/s) from Started (0: unknown): for MFU
        self._replaying = False
        self._handlers = self._handler_table()

    # ---- phases --------------------------------------------------------------------------------------------------
    def begin(self, folder: str, max_iters: int, *, following: bool = False, now: float | None = None) -> None:
        """A run starts (or resumes) in ``folder``, or the pane starts following it: forget the one shown."""
        self._reset(folder, max_iters)
        self._began_at = time.time() if now is None else now
        self._set_phase("following" if following else "running")

    def stopping(self) -> None:
        """Stop was asked: the run saves a checkpoint and ends."""
        if self.phase == "running":
            self._set_phase("stopping")
            self.set_status("Stopping: saving a checkpoint…")

    def stop_following(self) -> None:
        if self.phase == "following":
            self._set_phase("idle")
            self.set_status(f"Stopped following {self.run_dir}.")

    def launch_failed(self, error: str) -> None:
        """The processes could not be started: idle again, nothing of the attempt left on screen but the reason."""
        self._reset(self.run_dir, 0)
        self._set_phase("idle")
        self.set_status(f"Cannot start the training processes: {error}")

    def end(self, outcome: str, summary: str, details: str = "") -> bool:
        """Every process is gone (``RunController.sig_ended``): idle, with a status saying how the run ended.

        Returns True when the run failed, which the caller reports as a bug (details hold the traceback)."""
        self.run_over = True
        self._set_phase("idle")
        step = self.history.last_step
        can_resume = self.checkpoint_to_use() is not None
        ckpt = self.checkpoint_step
        if outcome == "completed":
            self.set_status(f"Done: {step:,} steps." + (" “Use in Generation” opens the model." if can_resume else ""))
        elif outcome == "stopped":
            self.set_status(f"Stopped at step {step:,}; the checkpoint is saved. Resume continues from it.")
        elif outcome == "killed":
            self.set_status(f"Ended at step {step:,} without saving."
                            + (f" Resume continues from step {ckpt:,}." if can_resume and ckpt is not None else ""))
        elif outcome == "diverged":
            self.set_status(f"The run diverged: {diverged_reason(summary)}")
        else:
            where = (f" Resume continues from the last checkpoint (step {ckpt:,})." if can_resume and ckpt is not None
                     else " No checkpoint was saved yet.")
            self.set_status(f"<b>Training failed:</b> {_escape(summary)}.{_escape(where)}", rich=True)
            self.set_failure(f"{summary}\n\n{details}" if details else summary)
            return True
        return False

    def reopen(self, folder: str, messages) -> None:
        """Show a run that is not going (the last one of a previous session, or an opened folder): its curves and
        samples read back from ``metrics.jsonl``, its checkpoint usable."""
        self._reset(folder, 0)
        self._set_phase("idle")
        self.replay(messages)
        self.run_over = True
        ckpt = RunFolder(folder).checkpoint_path
        if self.latest_checkpoint is None and ckpt.is_file():
            self.latest_checkpoint = str(ckpt)
            self.events.checkpoint.emit(self.latest_checkpoint)
        step = self.history.last_step
        of = f" of {self.max_iters:,}" if self.max_iters else ""
        if self.latest_checkpoint:
            self.set_status(f"{os.path.basename(folder)}: step {step:,}{of}, checkpoint at step "
                            f"{self.checkpoint_step if self.checkpoint_step is not None else step:,}. "
                            "“Use in Generation” opens it"
                            + ("; Resume continues it." if self.max_iters and step < self.max_iters else "."))
        else:
            self.set_status(f"{os.path.basename(folder)}: step {step:,}{of}, no checkpoint saved.")

    # ---- messages ------------------------------------------------------------------------------------------------
    def dispatch(self, msg) -> None:
        """Take one run message; unknown types are ignored (a newer engine may add some)."""
        handler = self._handlers.get(getattr(msg, "type", ""))
        if handler is not None:
            handler(msg)

    def replay(self, messages) -> None:
        """Many messages read back from a run folder at once: the views hear of each kind of change once."""
        self._replaying = True
        try:
            for msg in messages:
                self.dispatch(msg)
        finally:
            self._replaying = False
        self.events.samples.emit()
        self.events.curves.emit()
        if self.latest_checkpoint:
            self.events.checkpoint.emit(self.latest_checkpoint)

    def _handler_table(self) -> dict:
        return {"started": self._on_started, "step": self._on_step, "eval": self._on_eval, "sample": self._on_sample,
                "checkpoint": self._on_checkpoint, "nonfinite": self._on_nonfinite, "finished": self._on_finished,
                "failed": self._on_failed}

    def _on_started(self, msg) -> None:
        self._config = dict(msg.config or {})
        self._flops = (msg.flops_per_token, msg.peak_flops)
        self._started = True
        if self.phase in ("following", "idle") or not self.max_iters:
            value = self._config.get("max_iters")  # a followed file may say anything
            self.max_iters = value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 \
                else 0
        if msg.step:
            self.history.rewind(msg.step + 1)  # steps after the checkpoint are redone
            self.samples = [(s, t) for s, t in self.samples if s <= msg.step]
            self._changed(self.events.samples)
        self._rate_origin = None
        self.run_over = False
        procs = f" on {msg.world_size} processes{msg.exchange_note()}" if msg.world_size > 1 else ""
        where = f" from step {msg.step:,}" if msg.step else ""
        self.set_status(f"Training {msg.n_params / 1e6:.2f} M parameters{procs}{where}.")
        self._curves_changed()

    def _on_step(self, msg) -> None:
        self.history.add_step(msg.step, msg.tokens_seen, msg.loss, msg.lr, msg.grad_norm, msg.tokens_per_s,
                              msg.skipped_steps)
        if self._rate_origin is None or msg.step <= self._rate_origin[1]:
            self._rate_origin = (msg.time, msg.step)
        self._last_step = msg
        self._curves_changed()

    def _on_eval(self, msg) -> None:
        self.history.add_eval(msg.step, msg.tokens_seen, msg.val_loss, msg.train_loss)
        self._curves_changed()

    def _on_nonfinite(self, msg) -> None:
        self.history.add_nonfinite(msg.step)
        self.set_status(f"Step {msg.step:,}: {msg.what}")
        self._curves_changed()

    def _on_sample(self, msg) -> None:
        self.samples = [(s, t) for s, t in self.samples if s < msg.step]
        self.samples.append((msg.step, msg.text))
        del self.samples[:-MAX_SAMPLES]
        self._changed(self.events.samples)

    def _on_checkpoint(self, msg) -> None:
        path = msg.path
        if not os.path.isfile(path) and self.run_dir:  # followed from another machine: its paths are not ours
            path = os.path.join(self.run_dir, os.path.basename(path))
        self.checkpoint_step = msg.step
        if os.path.isfile(path):
            self.latest_checkpoint = path
            if not self._replaying:
                self.events.checkpoint.emit(path)

    def _on_finished(self, msg) -> None:
        self.run_over = True
        self._curves_changed()
        if self.phase == "following" and not self._replaying:
            if msg.outcome is Outcome.DIVERGED:
                self.set_status(f"The run diverged: {diverged_reason(msg.detail)} Still following the folder.")
            else:
                self.set_status(f"The run finished at step {msg.step:,} ({msg.reason}); still following the folder.")

    def _on_failed(self, msg) -> None:
        self.run_over = True
        self._curves_changed()
        if self.phase == "following":
            self.set_status(f"<b>The run failed</b> at step {msg.step:,}: {_escape(msg.error)}", rich=True)
            self.set_failure(f"{msg.error}\n\n{msg.traceback}")

    # ---- what the pane shows -------------------------------------------------------------------------------------
    def set_status(self, text: str, rich: bool = False) -> None:
        self.status, self.status_rich = text, rich
        self.events.status.emit(text, rich)

    def set_failure(self, text: str) -> None:
        if text != self.failure:
            self.failure = text
            self.events.failure.emit(text)

    def clear_outcome(self) -> None:
        """Forget the last run's failure box and ending (the user moved on: a new folder, new settings)."""
        self.set_failure("")
        if self.phase == "idle" and self.status != "Ready.":
            self.set_status("Ready.")

    def checkpoint_to_use(self) -> str | None:
        """The checkpoint of the run shown, if it is on this machine."""
        candidates = (self.latest_checkpoint, self.run_dir and str(RunFolder(self.run_dir).checkpoint_path))
        for path in candidates:
            if path and os.path.isfile(path):
                return path
        return None

    def progress(self, now: float | None = None) -> Progress:
        """The progress bar's value and range and the line under it, at wall time ``now``."""
        now = time.time() if now is None else now
        msg = self._last_step
        maximum = max(1, self.max_iters)
        if msg is None:
            if self.phase in ("running", "stopping") and self._began_at is not None:
                return Progress(0, 0, f"{self._preparing()}… {duration(now - self._began_at)}", busy=True)
            return Progress(0, maximum, "")
        step = msg.step
        parts = [f"step {step:,}" + (f" / {self.max_iters:,}" if self.max_iters else "")]
        rate = self.history.recent_tokens_per_s(RATE_STEPS)
        if rate is not None:
            parts.append(f"{rate:,.0f} tok/s")
            used = mfu(rate, *self._flops)
            if math.isfinite(used):  # against the peak in the run's own precision: bf16's is several times fp32's
                precision = self._config.get("precision", "fp32")
                parts.append(f"MFU {100 * used:.1f} %" + ("" if precision == "fp32" else f" ({precision})"))
        eta = self.eta(now)
        if eta is not None:
            parts.append(f"ETA {duration(eta)}")
        if self._evaluating(msg, now):
            parts.append(f"evaluating… {duration(now - msg.time)}")
        return Progress(min(step, max(maximum, step)), max(maximum, step), " · ".join(parts))

    def _preparing(self) -> str:
        """What a run does before its first logged step."""
        if not self._started:
            return "starting: reading the corpus and building the model"
        if self.history.evals.n == 0 and not self._config.get("resume"):
            iters = self._config.get("eval_iters")
            return (f"first evaluation ({iters} batches per split)" if iters else "first evaluation")
        return "first steps"

    def _evaluating(self, msg, now: float) -> bool:
        """The run went quiet right after a step at which it evaluates."""
        interval = int(self._config.get("eval_interval", 0) or 0)
        return (self.phase in ("running", "stopping") and interval > 0 and msg.step % interval == 0
                and self.history.evals.last("step") != msg.step and now - msg.time > QUIET_S)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the run's average pace since it (re)started: evaluations and checkpoints included."""
        now = time.time() if now is None else now
        msg = self._last_step
        if (msg is None or not self.max_iters or self._rate_origin is None or self.run_over
                or self.phase not in ("running", "following")):
            return None
        t0, s0 = self._rate_origin
        if msg.step <= s0 or msg.time <= t0:
            return None
        seconds_per_step = (msg.time - t0) / (msg.step - s0)
        if self.phase == "following" and now - msg.time > max(60.0, STALE_STEPS * seconds_per_step):
            return None  # nothing new for a long while: the run is not going (killed, or its machine is gone)
        return max(0.0, (self.max_iters - msg.step) * seconds_per_step)

    # ---- internals -----------------------------------------------------------------------------------------------
    def _reset(self, folder: str | None, max_iters: int) -> None:
        self.history.clear()
        self.samples.clear()
        self.run_dir = folder
        self.latest_checkpoint = None
        self.checkpoint_step = None
        self.max_iters = max_iters
        self._rate_origin = None
        self._last_step = None
        self._began_at = None
        self._started = False
        self._config = {}
        self._flops = (0.0, 0.0)
        self.run_over = False
        self.set_failure("")
        self.events.samples.emit()
        self._curves_changed()

    def _set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        if phase != self.phase:
            self.phase = phase
            self.events.phase.emit(phase)

    def _curves_changed(self) -> None:
        self.curves_dirty = True
        self._changed(self.events.curves)

    def _changed(self, event: Event) -> None:
        if not self._replaying:
            event.emit()


def diverged_reason(reason: str) -> str:
    """The explanation in a Finished reason "diverged: …", which names the step where the loss went non-finite.

    >>> diverged_reason("diverged: the loss became non-finite at step 13 in float32")
    'the loss became non-finite at step 13 in float32.'
    """
    text = reason.split(":", 1)[1].strip() if reason.startswith("diverged") and ":" in reason else reason
    return text if text.endswith(".") else text + "."


def last_checkpoint_step(folder: str) -> int | None:
    """The step of the last checkpoint a run folder's ``metrics.jsonl`` reports (read from its end), or None."""
    from engine.messages import from_json

    try:
        with open(RunFolder(folder).metrics_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if b'"checkpoint"' not in line:
            continue
        try:
            msg = from_json(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if msg.type == "checkpoint":
            return int(msg.step)
    return None


def duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``.

    >>> duration(75), duration(3725)
    ('1:15', '1:02:05')
    """
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _escape(text: str) -> str:
    return html.escape(text)
