"""The Training pane: set up a run, start / stop / resume it, watch its curves and samples, or follow a run folder.

Wiring only: the form (:mod:`form`), the plots (:mod:`curves`) over the data (:mod:`history`), and the processes
(:mod:`runner`). Messages from a run, live or read from ``metrics.jsonl``, go through :meth:`TrainingPane.dispatch`,
which calls ``_on_<type>``.
"""

import html
import os
import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QMessageBox, QPlainTextEdit,
                               QProgressBar, QPushButton, QScrollArea, QSplitter, QTabWidget, QTextBrowser, QVBoxLayout,
                               QWidget)

from app.theme import hint_color
from app.paths import runs_dir
from app.training.curves import CurvesWidget
from app.training.form import CHAR_VOCAB_GUESS, TrainingForm, check, estimate_params, tokenizer_vocab
from app.training.history import History
from app.training.follower import RunFollower
from app.training.runner import RunController
from engine.runs import RunFolder

REDRAW_MS = 100  # curves and progress are redrawn at most this often, however fast messages arrive
MAX_SAMPLES = 200  # samples kept in the side panel
CHECK_DELAY_MS = 150  # the form is re-checked this long after the last edit
RATE_STEPS = 20  # tokens per second shown: over the last this many logged steps (one step's timing is noisy)
STALE_STEPS = 20  # a followed run that has logged nothing for this many step times (and a minute) gets no ETA


class TrainingPane(QWidget):
    title = "Training"

    sig_use_checkpoint = Signal(str)
    """The user wants this checkpoint in the Generation pane (path of the run's latest checkpoint)."""
    sig_checkpoint_saved = Signal(str)
    """A run saved a checkpoint at this path."""

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.history = History()
        self.controller = RunController(self)
        self.follower = RunFollower(self)
        self.state = "idle"  # idle | running | stopping | following
        self.run_dir: str | None = None  # folder of the run shown (started, resumed or followed)
        self.latest_checkpoint: str | None = None
        self.max_iters = 0
        self._rate_origin = None  # (time, step, tokens) of the first step after a (re)start, for ETA
        self._last_step = None  # the latest Step message
        self._samples: list[tuple[int, str]] = []
        self._dirty = False
        self._samples_dirty = False
        self._next_curves_at = 0.0  # monotonic time before which the curves are not redrawn again
        self._errors: list[str] = []
        self._ckpt_step = None  # step of the latest checkpoint of the run shown
        self._run_over = False  # a followed run's folder says it finished or failed

        self.form = TrainingForm()
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.params = QLabel()
        self.params.setStyleSheet(f"color: {hint_color(self)};")  # palette(mid) was grey on grey
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train a new model in the run folder")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Save a checkpoint and stop")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run folder's checkpoint (up to the Steps above)")
        self.follow_button = QPushButton("Follow run folder…")
        self.follow_button.setToolTip("Show the curves of a run folder and follow them as they grow "
                                      "(e.g. a torchrun job writing to a shared folder)")
        self.use_button = QPushButton("Use in Generation")
        self.use_button.setToolTip("Open the latest checkpoint in the Generation pane")
        self.progress = QProgressBar()
        # the figures go in a label below: a bar's own text is split and clipped by its chunk in several styles
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        self.progress_text = QLabel()
        self.progress_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failure = QPlainTextEdit()
        self.failure.setReadOnly(True)
        self.failure.setFont(_mono())
        self.failure.setPlaceholderText("")
        self.failure.setMaximumHeight(160)
        self.failure.hide()

        form_box = QGroupBox("Run")
        form_layout = QVBoxLayout(form_box)
        form_layout.addWidget(self.form)
        form_layout.addWidget(self.params)
        form_layout.addWidget(self.problems)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        more = QHBoxLayout()
        more.addWidget(self.follow_button)
        more.addWidget(self.use_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 6, 0)
        left_layout.addWidget(form_box)
        left_layout.addLayout(buttons)
        left_layout.addLayout(more)
        left_layout.addWidget(self.progress)
        left_layout.addWidget(self.progress_text)
        left_layout.addWidget(self.status)
        left_layout.addWidget(self.failure)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left.sizeHint().width() + 16)

        self.curves = CurvesWidget(self.history)
        self.samples = QTextBrowser()
        self.samples.setOpenLinks(False)
        self.samples.setPlaceholderText("Samples of each evaluation appear here, latest on top.")
        samples_box = QWidget()
        samples_layout = QVBoxLayout(samples_box)
        samples_layout.setContentsMargins(0, 0, 0, 0)
        samples_layout.addWidget(QLabel("<b>Samples</b> (latest first)"))
        samples_layout.addWidget(self.samples, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(self.curves)
        self.splitter.addWidget(samples_box)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 1)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([scroll.minimumWidth(), 640, 300])
        from app.experiments.view import RunsView

        self.runs = RunsView(reporter)  # the run library, overlays and experiments: a tab beside this one
        self.runs.sig_use_checkpoint.connect(self.sig_use_checkpoint)
        self.runs.sig_resume.connect(self.resume_folder)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.splitter, "Train")
        self.tabs.addTab(self.runs, "Runs && experiments")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.tabs)

        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.recheck)

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.follow_button.clicked.connect(self._on_follow_clicked)
        self.use_button.clicked.connect(self.use_in_generation)
        self.form.sig_changed.connect(self._check_timer.start)
        self.controller.sig_message.connect(self.dispatch)
        self.controller.sig_ended.connect(self._on_run_ended)
        self.follower.sig_message.connect(self.dispatch)
        self.follower.sig_problem.connect(self._set_status)
        self.curves.sig_export_png.connect(self._on_export_png)
        self.curves.sig_export_csv.connect(self._on_export_csv)
        self.recheck()

    # ---- form ----------------------------------------------------------------------------------------------------
    @Slot()
    def refresh_tokenizers(self) -> None:
        """A tokenizer was saved (Tokenization pane): offer it."""
        self.form.refresh_tokenizers()

    @Slot()
    def recheck(self) -> None:
        """Explain what is wrong with the form (Start stays disabled until it is fixed)."""
        values = self.form.values()
        extra = self.form.extra
        self._errors, notes = check(values, extra, corpus_bytes=self.form.corpus_file_size())
        try:
            vocab = tokenizer_vocab(values["tokenizer"])
        except ValueError:  # check() explains it
            vocab = None
        if values["n_embd"] % values["n_head"] == 0:
            n = estimate_params(values, vocab or CHAR_VOCAB_GUESS, bias=bool(extra.get("bias", False)))
            self.params.setText(f"≈ {n / 1e6:.2f} M parameters"
                                + (f" (vocabulary {vocab:,})" if vocab else
                                   f" (assuming {CHAR_VOCAB_GUESS} distinct characters)"))
        else:
            self.params.setText("")
        lines = [f"<span style='color:#c62828'>✖ {html.escape(e)}</span>" for e in self._errors]
        lines += [f"<span style='color:#8d6e00'>ⓘ {html.escape(n)}</span>" for n in notes]
        self.problems.setText("<br>".join(lines))
        self.problems.setVisible(bool(lines))
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self.state == "idle"
        self.start_button.setEnabled(idle and not self._errors)
        self.start_button.setToolTip(self._errors[0] if idle and self._errors
                                     else "Train a new model in the run folder")
        self.stop_button.setEnabled(self.state in ("running", "stopping", "following"))
        self.stop_button.setText({"following": "Stop following", "stopping": "Kill"}.get(self.state, "Stop"))
        self.stop_button.setToolTip("End the processes now, without saving (the last checkpoint stays)"
                                    if self.state == "stopping" else "Save a checkpoint and stop")
        self.resume_button.setEnabled(idle and self._resume_folder() is not None)
        self.follow_button.setEnabled(idle)
        self.use_button.setEnabled(self._checkpoint_to_use() is not None)
        self.form.setEnabled(idle)

    def _resume_folder(self) -> str | None:
        folder = self.form.values()["out_dir"]
        return folder if folder and RunFolder(folder).has_checkpoint() else None

    def _checkpoint_to_use(self) -> str | None:
        for path in (self.latest_checkpoint, self.run_dir and str(RunFolder(self.run_dir).checkpoint_path)):
            if path and os.path.isfile(path):
                return path
        return None

    # ---- run control ---------------------------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Start a new run from the form."""
        self.recheck()
        if self._errors or self.state != "idle":
            return
        from engine.train import TrainConfig

        values = self.form.values()
        try:
            config = TrainConfig.from_dict(self.form.config_kwargs())
        except ValueError as err:
            self._set_status(f"Cannot start: {err}")
            return
        self._begin(values["out_dir"], values["max_iters"])
        if not self._launch(config, values["processes"]):
            return
        self._set_status(f"Starting {values['processes']} training process{'es' if values['processes'] > 1 else ''}…")

    @Slot()
    def resume(self) -> None:
        """Continue the run folder's checkpoint, training up to the form's Steps."""
        folder = self._resume_folder()
        if folder is None or self.state != "idle":
            return
        from engine.train import load_run_config

        values = self.form.values()
        try:
            config = load_run_config(folder).with_overrides({"max_iters": values["max_iters"]})
        except ValueError as err:
            self._set_status(f"Cannot resume {folder}: {err}")
            return
        self._begin(folder, values["max_iters"])
        self._load_history(folder)
        if not self._launch(config, values["processes"]):
            return
        self._set_status(f"Resuming {folder}…")

    @Slot(str)
    def resume_folder(self, folder: str) -> None:
        """Resume a run chosen in the Runs tab: it becomes the form's run folder, then Resume as usual."""
        if self.state != "idle":
            return
        self.form.out_dir.setText(folder)
        self.tabs.setCurrentWidget(self.splitter)
        self.resume()

    def _launch(self, config, processes: int) -> bool:
        try:
            self.controller.start(config, processes)
        except Exception as err:  # whatever it is, the pane must not stay "running" with nothing running
            self.state = "idle"
            self._redraw_timer.stop()
            self._set_status(f"Cannot start the training processes: {err}")
            self._update_buttons()
            if self.reporter is not None and not isinstance(err, (ValueError, OSError)):
                import traceback

                self.reporter.report_message(f"Cannot start the training processes: {err}",
                                             "".join(traceback.format_exception(err)))
            return False
        return True

    def _begin(self, folder: str, max_iters: int) -> None:
        self.follower.stop()
        self.runs.remember(folder)
        self.history.clear()
        self._samples.clear()
        self.samples.clear()
        self.failure.hide()
        self.failure.clear()
        self.run_dir = folder
        self.latest_checkpoint = None
        self._ckpt_step = None
        self.max_iters = max_iters
        self._rate_origin = None
        self._last_step = None
        self._run_over = False
        self.state = "running"
        _set_progress(self.progress, 0, max_iters)
        self.progress_text.setText(f"step 0 / {max_iters:,}")
        self._redraw_timer.start()
        self._dirty = True
        self._update_buttons()

    def _load_history(self, folder: str) -> None:
        """The curves so far of a run being resumed (its messages past the checkpoint get superseded)."""
        from engine.messages import read_jsonl

        msgs, _ = read_jsonl(RunFolder(folder).metrics_path, 0)
        for msg in msgs:
            if msg.type not in ("finished", "failed"):
                self.dispatch(msg)

    @Slot()
    def stop(self) -> None:
        """Stop the run (it saves a checkpoint first); pressed again while stopping, end the processes now."""
        if self.state == "stopping":
            self.controller.kill()
        elif self.state == "running":
            self.controller.stop()
            self.state = "stopping"
            self._set_status("Stopping: saving a checkpoint…")
            self._update_buttons()
        elif self.state == "following":
            self.follower.stop()
            self.state = "idle"
            self._redraw_timer.stop()
            self._redraw(force=True)
            self._update_progress()
            self._set_status(f"Stopped following {self.run_dir}.")
            self._update_buttons()

    @Slot()
    def _on_follow_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Follow a run folder", str(runs_dir()))
        if folder:
            self.follow(folder)

    def follow(self, folder: str) -> None:
        """Show a run folder's curves and keep reading its metrics.jsonl as it grows."""
        if self.state != "idle":
            return
        self._begin(folder, 0)
        self.state = "following"
        self.progress_text.setText("")
        try:
            self.follower.follow(folder)
        except ValueError as err:
            self.state = "idle"
            self._set_status(str(err))
            self._update_buttons()
            return
        if not RunFolder(folder).has_metrics():
            self._set_status(f"Following {folder}: no metrics.jsonl yet, waiting for it…")
        self._update_buttons()

    @Slot()
    def use_in_generation(self) -> None:
        path = self._checkpoint_to_use()
        if path:
            self.sig_use_checkpoint.emit(path)

    @Slot(str, str, str)
    def _on_run_ended(self, outcome: str, summary: str, details: str) -> None:
        self.state = "idle"
        self._redraw_timer.stop()
        self._redraw(force=True)
        self._update_progress()  # no ETA any more, even when no message came since the last redraw
        step = self.history.last_step
        can_resume = self._checkpoint_to_use() is not None
        if outcome == "completed":
            hint = " “Use in Generation” opens the model." if can_resume else ""
            self._set_status(f"Done: {step} steps.{hint}")
        elif outcome == "stopped":
            self._set_status(f"Stopped at step {step}; the checkpoint is saved. Resume continues from it.")
        elif outcome == "killed":
            self._set_status(f"Ended at step {step} without saving. "
                             + (f"Resume continues from step {self._ckpt_step}." if can_resume and self._ckpt_step
                                is not None else ""))
        elif outcome == "diverged":
            self._set_status(f"The run diverged at step {step}: {summary.split(':', 1)[-1].strip()}")
        else:
            where = (f" Resume continues from the last checkpoint (step {self._ckpt_step})."
                     if can_resume and self._ckpt_step is not None else " No checkpoint was saved yet.")
            self._set_status(f"<b>Training failed:</b> {html.escape(summary)}.{where}", rich=True)
            self.failure.setPlainText(f"{summary}\n\n{details}" if details else summary)
            self.failure.show()
            if self.reporter is not None:
                self.reporter.report_message(f"Training failed: {summary}", details or summary)
        if self.run_dir and self.form.values()["out_dir"] != self.run_dir and os.path.isdir(self.run_dir):
            self.form.out_dir.setText(self.run_dir)
        self.recheck()

    # ---- messages ------------------------------------------------------------------------------------------------
    @Slot(object)
    def dispatch(self, msg) -> None:
        """Route a run message to ``_on_<type>``; unknown types are ignored (a newer engine may add some)."""
        handler = getattr(self, f"_on_{getattr(msg, 'type', '')}", None)
        if handler is not None:
            handler(msg)

    def _on_started(self, msg) -> None:
        config = msg.config or {}
        if self.state == "following" or not self.max_iters:
            self.max_iters = _max_iters(config)
            _set_progress(self.progress, 0, self.max_iters)
        if msg.step:
            self.history.rewind(msg.step + 1)  # steps after the checkpoint are redone
            self._samples = [(s, t) for s, t in self._samples if s <= msg.step]
            self._render_samples()
        self._rate_origin = None
        self._run_over = False
        procs = f" on {msg.world_size} processes" if msg.world_size > 1 else ""
        where = f" from step {msg.step}" if msg.step else ""
        self._set_status(f"Training {msg.n_params / 1e6:.2f} M parameters{procs}{where}.")
        self._dirty = True

    def _on_step(self, msg) -> None:
        self.history.add_step(msg.step, msg.tokens_seen, msg.loss, msg.lr, msg.grad_norm, msg.tokens_per_s,
                              msg.skipped_steps)
        if self._rate_origin is None or msg.step <= self._rate_origin[1]:
            self._rate_origin = (msg.time, msg.step)
        self._last_step = msg
        self._dirty = True

    def _on_eval(self, msg) -> None:
        self.history.add_eval(msg.step, msg.tokens_seen, msg.val_loss, msg.train_loss)
        self._dirty = True

    def _on_nonfinite(self, msg) -> None:
        self.history.add_nonfinite(msg.step)
        self._set_status(f"Step {msg.step}: {msg.what}")
        self._dirty = True

    def _on_sample(self, msg) -> None:
        self._samples = [(s, t) for s, t in self._samples if s < msg.step]
        self._samples.append((msg.step, msg.text))
        del self._samples[:-MAX_SAMPLES]
        self._samples_dirty = self._dirty = True  # drawn by _redraw: 3 000 samples read at once render once

    def _on_checkpoint(self, msg) -> None:
        path = msg.path
        if not os.path.isfile(path) and self.run_dir:  # followed from another machine: its paths are not ours
            path = os.path.join(self.run_dir, os.path.basename(path))
        self._ckpt_step = msg.step
        if os.path.isfile(path):
            self.latest_checkpoint = path
            self.sig_checkpoint_saved.emit(path)
        self._update_buttons()

    def _on_finished(self, msg) -> None:
        self._run_over = True
        self._dirty = True
        if self.state == "following":
            self._set_status(f"The run finished at step {msg.step} ({msg.reason}); still following the folder.")

    def _on_failed(self, msg) -> None:
        self._run_over = True
        self._dirty = True
        if self.state == "following":
            self._set_status(f"<b>The run failed</b> at step {msg.step}: {html.escape(msg.error)}", rich=True)
            self.failure.setPlainText(f"{msg.error}\n\n{msg.traceback}")
            self.failure.show()

    # ---- drawing -------------------------------------------------------------------------------------------------
    def _render_samples(self) -> None:
        parts = []
        for step, text in reversed(self._samples):
            parts.append(f"<p style='margin:0'><b>step {step:,}</b></p>"
                         f"<pre style='margin-top:2px; margin-bottom:10px; white-space:pre-wrap'>"
                         f"{html.escape(text)}</pre>")
        self.samples.setHtml("".join(parts))

    @Slot()
    def _redraw(self, force: bool = False) -> None:
        """Push new points to the curves and update the progress bar (at most every REDRAW_MS).

        With very long runs an update costs more: the curves then wait at least 5x their last cost, so they never
        take more than a fifth of the UI thread. A hidden pane leaves its curves alone until shown.
        """
        if not self._dirty:
            return
        if self._samples_dirty:
            self._samples_dirty = False
            self._render_samples()
        now = time.monotonic()
        if not force and (now < self._next_curves_at or not self.curves.isVisible()):
            self._update_progress()
            return
        self._dirty = False
        t = time.perf_counter()
        self.curves.refresh()
        self._next_curves_at = now + 5 * (time.perf_counter() - t)
        self._update_progress()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._dirty:
            QTimer.singleShot(0, self, lambda: self._redraw(force=True))

    def _update_progress(self) -> None:
        msg = self._last_step
        if msg is None:
            return
        step = msg.step
        if self.max_iters:
            _set_progress(self.progress, step, max(self.max_iters, step))
        parts = [f"step {step:,}" + (f" / {self.max_iters:,}" if self.max_iters else "")]
        rate = self.history.recent_tokens_per_s(RATE_STEPS)
        if rate is not None:
            parts.append(f"{rate:,.0f} tok/s")
        eta = self._eta(msg)
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        self.progress_text.setText(" · ".join(parts))

    def _eta(self, msg) -> float | None:
        """Seconds left at the run's average pace since it (re)started: evaluations and checkpoints included."""
        if (not self.max_iters or self._rate_origin is None or self._run_over
                or self.state not in ("running", "following")):
            return None
        t0, s0 = self._rate_origin
        if msg.step <= s0 or msg.time <= t0:
            return None
        seconds_per_step = (msg.time - t0) / (msg.step - s0)
        if self.state == "following" and time.time() - msg.time > max(60.0, STALE_STEPS * seconds_per_step):
            return None  # nothing new for a long while: the run is not going (killed, or its machine is gone)
        return max(0.0, (self.max_iters - msg.step) * seconds_per_step)

    def _set_status(self, text: str, rich: bool = False) -> None:
        self.status.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.status.setText(text)

    # ---- export --------------------------------------------------------------------------------------------------
    def _export_dir(self) -> str:
        return self.run_dir or str(runs_dir())

    @Slot()
    def _on_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export curves as PNG",
                                              os.path.join(self._export_dir(), "curves.png"), "PNG image (*.png)")
        if path:
            self.export_png(path)

    @Slot()
    def _on_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export curves as CSV",
                                              os.path.join(self._export_dir(), "curves.csv"), "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_png(self, path: str) -> None:
        self._dirty = True
        self._redraw(force=True)
        try:
            self.curves.export_png(path)
        except OSError as err:
            self._set_status(f"Could not write {path}: {err}")

    def export_csv(self, path: str) -> None:
        try:
            self.history.write_csv(path)
        except OSError as err:
            self._set_status(f"Could not write {path}: {err}")
        else:
            self._set_status(f"Wrote {len(self.history.train):,} steps to {path}.")

    # ---- pane contract -------------------------------------------------------------------------------------------
    def save_settings(self, s) -> None:
        self.form.save_settings(s)
        self.curves.save_settings(s)
        s.setValue("splitter", self.splitter.saveState())

    def restore_settings(self, s) -> None:
        self.form.restore_settings(s)
        self.curves.restore_settings(s)
        state = s.value("splitter")
        if state is not None:
            self.splitter.restoreState(state)
        self.recheck()

    def confirm_close(self) -> bool:
        if self.state not in ("running", "stopping"):
            return True
        answer = QMessageBox.question(
            self, "Training is running",
            "A training run is going. Stop it and quit?\n\nThe run saves a checkpoint first; Resume continues it "
            "later.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def shutdown(self) -> None:
        """Stop the run (checkpoint first, then terminate what is left), the follower and the timers."""
        self._check_timer.stop()
        self._redraw_timer.stop()
        self.follower.stop()
        self.controller.shutdown()
        self.runs.shutdown()


def _set_progress(bar, value: int, maximum: int) -> None:
    """QProgressBar holds C ints: a run of 2^31 steps or more (a followed file may say anything) is shown scaled."""
    scale = max(1, -(-maximum // (2**31 - 1)))
    bar.setRange(0, max(1, maximum // scale))
    bar.setValue(max(0, min(value, maximum)) // scale)


def _max_iters(config: dict) -> int:
    """A followed run's max_iters, or 0 when its config does not hold a usable one."""
    value = config.get("max_iters") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 else 0


def _mono() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
