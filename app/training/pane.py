"""The Training pane: set up a run, start / stop / resume it, watch its curves and samples, or follow a run folder.

A view over :class:`~app.training.state.RunState` (the phase, the run shown, its curves, samples and what to say,
all without Qt): the pane turns buttons into calls on the state and the processes (:mod:`runner`), and renders the
state's events into the form (:mod:`form`, checked by :mod:`checks`), the plots (:mod:`curves`), the samples and the
status line. Messages from a run, live or read from ``metrics.jsonl``, go through :meth:`TrainingPane.dispatch`.
The run view is the first of :attr:`TrainingPane.tabs`; the run library (:mod:`app.experiments`) is the second.
"""

import html
import os
import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QApplication, QFileDialog, QHBoxLayout, QLabel, QMessageBox, QSplitter,
                               QTabWidget, QTextBrowser, QVBoxLayout, QWidget)

from app.paths import runs_dir
from app.training.checks import CHAR_VOCAB_GUESS, check, estimate_params, tokenizer_vocab
from app.training.controls import RunControls
from app.training.curves import CurvesWidget
from app.training.follower import RunFollower
from app.training.runner import RunController
from app.training.state import RunState, last_checkpoint_step
from engine.errors import UserError
from engine.runs import RunFolder

REDRAW_MS = 100  # curves and progress are redrawn at most this often, however fast messages arrive
CHECK_DELAY_MS = 150  # the form is re-checked this long after the last edit
NARROW_PX = 1150  # below this pane width the samples go under the curves, not beside them


class TrainingPane(QWidget):
    title = "Training"

    sig_use_checkpoint = Signal(str)
    """The user wants this checkpoint in the Generation pane (path of the run's latest checkpoint)."""
    sig_checkpoint_saved = Signal(str)
    """A run saved a checkpoint at this path."""

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.run_state = RunState()
        self.controller = RunController(self)
        self.follower = RunFollower(self)
        self._errors: list[str] = []
        self._samples_dirty = False
        self._next_curves_at = 0.0  # monotonic time before which the curves are not redrawn again

        self.controls = RunControls()
        c = self.controls
        self.form, self.params, self.problems = c.form, c.params, c.problems
        self.start_button, self.stop_button, self.resume_button = c.start_button, c.stop_button, c.resume_button
        self.follow_button, self.use_button = c.follow_button, c.use_button
        self.progress, self.progress_text, self.status, self.failure = c.progress, c.progress_text, c.status, c.failure
        self.curves = CurvesWidget(self.run_state.history)
        self.samples = QTextBrowser()
        self.samples.setOpenLinks(False)
        self.samples.setPlaceholderText("Samples appear here.")
        samples_box = QWidget()
        samples_layout = QVBoxLayout(samples_box)
        samples_layout.setContentsMargins(0, 0, 0, 0)
        samples_layout.addWidget(QLabel("<b>Samples</b> (latest first)"))
        samples_layout.addWidget(self.samples, 1)

        # the samples sit beside the curves in a wide pane and under them in a narrow one (see resizeEvent)
        self.plots = QSplitter(Qt.Orientation.Horizontal)
        self.plots.addWidget(self.curves)
        self.plots.addWidget(samples_box)
        self.plots.setStretchFactor(0, 3)
        self.plots.setStretchFactor(1, 1)
        self.plots.setCollapsible(0, False)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(c)
        self.splitter.addWidget(self.plots)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([c.minimumSizeHint().width(), 940])
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
        self._redraw_timer.timeout.connect(self._on_redraw_timer)
        self._redraw_soon = QTimer(self)
        self._redraw_soon.setSingleShot(True)
        self._redraw_soon.setInterval(0)
        self._redraw_soon.timeout.connect(self.redraw)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.recheck)

        events = self.run_state.events
        events.phase.connect(self._on_phase)
        events.status.connect(self.controls.show_status)
        events.failure.connect(self.controls.show_failure)
        events.samples.connect(self._on_samples_changed)
        events.checkpoint.connect(self._on_checkpoint)
        events.curves.connect(self._on_curves_changed)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.follow_button.clicked.connect(self._on_follow_clicked)
        self.use_button.clicked.connect(self.use_in_generation)
        self.form.sig_changed.connect(self._on_form_changed)
        self.controller.sig_message.connect(self.dispatch)
        self.controller.sig_ended.connect(self._on_run_ended)
        self.follower.sig_message.connect(self.dispatch)
        self.follower.sig_problem.connect(self.run_state.set_status)
        self.curves.sig_export_png.connect(self._on_export_png)
        self.curves.sig_export_csv.connect(self._on_export_csv)
        self.recheck()

    # ---- what the state holds, for the window and tests -----------------------------------------------------------
    @property
    def state(self) -> str:
        """The phase: idle, running, stopping or following."""
        return self.run_state.phase

    @property
    def history(self):
        return self.run_state.history

    @property
    def run_dir(self) -> str | None:
        return self.run_state.run_dir

    @property
    def max_iters(self) -> int:
        return self.run_state.max_iters


    # ---- form ----------------------------------------------------------------------------------------------------
    @Slot()
    def refresh_tokenizers(self) -> None:
        """A tokenizer was saved (Tokenization pane): offer it."""
        self.form.refresh_tokenizers()

    @Slot()
    def _on_form_changed(self) -> None:
        if self.state == "idle" and self.form.values()["out_dir"] != self.run_dir:
            self.run_state.clear_outcome()  # a new folder: the last run's failure and ending are not about it
        self._check_timer.start()

    @Slot()
    def recheck(self) -> None:
        """Explain what is wrong with the form (Start stays disabled until it is fixed)."""
        values = self.form.values()
        extra = self.form.extra
        self._errors, notes = check(values, extra, corpus_bytes=self.form.corpus_file_size())
        self.controls.show_params(self._params_text(values, extra))
        # the form's problems are about the next run: hidden while one is going
        self.controls.show_problems(self._errors, notes, visible=self.state == "idle")
        self._update_buttons()

    def _params_text(self, values: dict, extra: dict) -> str:
        """The parameter line: the model to fine-tune, or the engine's count of the model the form builds."""
        if values["init_from"]:
            return self.form.start_from.description()
        try:
            vocab = tokenizer_vocab(values["tokenizer"])
        except UserError:  # check() explains it
            vocab = None
        try:
            n = estimate_params({**extra, **values}, vocab or CHAR_VOCAB_GUESS)
        except ValueError:  # a shape the model refuses: check() explains it
            return ""
        return f"≈ {n / 1e6:.2f} M parameters" + (f" (vocabulary {vocab:,})" if vocab else
                                                  f" (assuming {CHAR_VOCAB_GUESS} distinct characters)")

    def _update_buttons(self) -> None:
        self.controls.show_buttons(self.state, self._errors[0] if self._errors else "", self._resumable()[1],
                                   can_use=self.run_state.checkpoint_to_use() is not None)

    def _resumable(self) -> tuple[str | None, str]:
        """(the folder Resume continues, or None with why not)."""
        values = self.form.values()
        folder = values["out_dir"]
        if not folder or not RunFolder(folder).has_checkpoint():
            return None, "The run folder holds no checkpoint to continue"
        step = last_checkpoint_step(folder)
        if step is not None and step >= values["max_iters"]:
            return None, f"The run is trained to step {step:,}: raise Steps above it to train it further"
        return folder, ""

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
            self.run_state.set_status(f"Cannot start: {err}")
            return
        self._begin(values["out_dir"], values["max_iters"])
        if self._launch(config, values["processes"]):
            n = values["processes"]
            self.run_state.set_status(f"Starting {n} training process{'es' if n > 1 else ''}…")

    @Slot()
    def resume(self) -> None:
        """Continue the run folder's checkpoint, training up to the form's Steps."""
        folder, _ = self._resumable()
        if folder is None or self.state != "idle":
            return
        from engine.messages import read_jsonl
        from engine.train import load_run_config

        values = self.form.values()
        try:
            config = load_run_config(folder).with_overrides({"max_iters": values["max_iters"]})
        except ValueError as err:
            self.run_state.set_status(f"Cannot resume {folder}: {err}")
            return
        self._begin(folder, values["max_iters"])
        # the curves so far (the messages past the checkpoint get superseded as the run redoes those steps)
        msgs, _ = read_jsonl(RunFolder(folder).metrics_path, 0)
        self.run_state.replay(m for m in msgs if m.type not in ("finished", "failed"))
        if self._launch(config, values["processes"]):
            self.run_state.set_status(f"Resuming {folder}…")

    @Slot(str)
    def resume_folder(self, folder: str) -> None:
        """Resume a run chosen in the Runs tab: it becomes the form's run folder, then Resume as usual."""
        if self.state != "idle":
            return
        self.form.out_dir.setText(folder)
        self.tabs.setCurrentWidget(self.splitter)
        self.resume()

    def _begin(self, folder: str, max_iters: int, following: bool = False) -> None:
        self.follower.stop()
        self.runs.remember(folder)
        self.run_state.begin(folder, max_iters, following=following)

    def _launch(self, config, processes: int) -> bool:
        try:
            self.controller.start(config, processes)
        except Exception as err:  # noqa: BLE001 - whatever it is, the pane must not stay "running" with nothing
            self.run_state.launch_failed(str(err))
            if self.reporter is not None and not isinstance(err, (ValueError, OSError)):
                import traceback

                self.reporter.report_message(f"Cannot start the training processes: {err}",
                                             "".join(traceback.format_exception(err)))
            return False
        return True

    @Slot()
    def stop(self) -> None:
        """Stop the run (it saves a checkpoint first); pressed again while stopping, end the processes now."""
        if self.state == "stopping":
            self.controller.kill()
        elif self.state == "running":
            self.controller.stop()
            self.run_state.stopping()
        elif self.state == "following":
            self.follower.stop()
            self.run_state.stop_following()

    @Slot()
    def _on_follow_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Follow a run folder", str(runs_dir()))
        if folder:
            self.follow(folder)

    def follow(self, folder: str) -> None:
        """Show a run folder's curves and keep reading its metrics.jsonl as it grows."""
        if self.state != "idle":
            return
        if not os.path.isdir(folder):
            self.run_state.set_status(f"{folder} is not a folder")
            return
        self._begin(folder, 0, following=True)
        self.form.set_values({**self.form.values(), "out_dir": folder})
        self.follower.follow(folder)
        if not RunFolder(folder).has_metrics():
            self.run_state.set_status(f"Following {folder}: no metrics.jsonl yet, waiting for it…")

    def reopen(self, folder: str) -> bool:
        """Show a run that is not going (the last one of a previous session): its curves, samples and checkpoint
        read back from the folder, its settings in the form. False (and nothing changed) when it holds no run."""
        from engine.messages import read_jsonl

        if self.state != "idle" or not RunFolder(folder).has_metrics():
            return False
        msgs, _ = read_jsonl(RunFolder(folder).metrics_path, 0)
        if not msgs:
            return False
        self.run_state.reopen(folder, msgs)
        started = [m for m in msgs if m.type == "started"]
        if started:
            self.form.show_run_config({**(started[-1].config or {}), "out_dir": folder}, started[-1].world_size)
        self.redraw()
        self.recheck()
        return True

    @Slot()
    def use_in_generation(self) -> None:
        path = self.run_state.checkpoint_to_use()
        if path:
            self.sig_use_checkpoint.emit(path)

    @Slot(str, str, str)
    def _on_run_ended(self, outcome: str, summary: str, details: str) -> None:
        failed = self.run_state.end(outcome, summary, details)
        if failed and self.reporter is not None:
            self.reporter.report_message(f"Training failed: {summary}", details or summary)
        if self.run_dir and self.form.values()["out_dir"] != self.run_dir and os.path.isdir(self.run_dir):
            self.form.out_dir.setText(self.run_dir)
        self.recheck()

    # ---- messages and state events -------------------------------------------------------------------------------
    @Slot(object)
    def dispatch(self, msg) -> None:
        """Hand a run message to the state (which ignores types it does not know)."""
        self.run_state.dispatch(msg)
        if getattr(msg, "type", "") == "started" and self.state == "following":
            # a run the form did not start: show its settings, not the form's previous values
            self.form.show_run_config({**(msg.config or {}), "out_dir": self.run_dir}, msg.world_size)

    def _on_phase(self, phase: str) -> None:
        if phase == "idle":
            self._redraw_timer.stop()
            self.redraw()  # the last points, and no ETA any more
        else:
            self._redraw_timer.start()
            self._update_progress()
        self.recheck()

    def _on_checkpoint(self, path: str) -> None:
        self.sig_checkpoint_saved.emit(path)
        self._update_buttons()

    def _on_samples_changed(self) -> None:
        self._samples_dirty = True  # drawn at the redraw: 3 000 samples read at once render once
        self._on_curves_changed()

    def _on_curves_changed(self) -> None:
        if not self._redraw_timer.isActive() and not self._redraw_soon.isActive():
            self._redraw_soon.start()  # not running (a reset, a replay): once, when the messages at hand are in

    # ---- drawing -------------------------------------------------------------------------------------------------
    def _render_samples(self) -> None:
        parts = []
        for step, text in reversed(self.run_state.samples):
            parts.append(f"<p style='margin:0'><b>step {step:,}</b></p>"
                         f"<pre style='margin-top:2px; margin-bottom:10px; white-space:pre-wrap'>"
                         f"{html.escape(text)}</pre>")
        self.samples.setHtml("".join(parts))

    def redraw(self) -> None:
        """Push the history to the curves and update the progress line now."""
        self._redraw(force=True)

    @Slot()
    def _on_redraw_timer(self) -> None:
        self._redraw(force=False)

    def _redraw(self, force: bool) -> None:
        """Curves at most every REDRAW_MS; with very long runs an update costs more, so the curves then wait at
        least 5x their last cost and never take more than a fifth of the UI thread. A hidden pane leaves its curves
        alone until shown."""
        self._update_progress()
        if self._samples_dirty:
            self._samples_dirty = False
            self._render_samples()
        if not self.run_state.curves_dirty:
            return
        now = time.monotonic()
        if not force and (now < self._next_curves_at or not self.curves.isVisible()):
            return
        self.run_state.curves_dirty = False
        t = time.perf_counter()
        self.curves.refresh()
        self._next_curves_at = now + 5 * (time.perf_counter() - t)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        wide = event.size().width() >= NARROW_PX
        orientation = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.plots.orientation() != orientation:
            self.plots.setOrientation(orientation)
            self.plots.setSizes([3000, 1000])

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self.run_state.curves_dirty:
            QTimer.singleShot(0, self, self.redraw)

    def _update_progress(self) -> None:
        self.controls.show_progress(self.run_state.progress())

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
        self.run_state.curves_dirty = True
        self.redraw()
        try:
            self.curves.export_png(path)
        except OSError as err:
            self.run_state.set_status(f"Could not write {path}: {err}")

    def export_csv(self, path: str) -> None:
        try:
            self.history.write_csv(path)
        except OSError as err:
            self.run_state.set_status(f"Could not write {path}: {err}")
        else:
            self.run_state.set_status(f"Wrote {len(self.history.train):,} steps to {path}.")

    # ---- pane contract -------------------------------------------------------------------------------------------
    def save_settings(self, s) -> None:
        self.form.save_settings(s)
        self.curves.save_settings(s)
        s.setValue("columns", self.splitter.saveState())  # the form | the plots (and samples)
        s.setValue("run/last", self.run_dir or "")

    def restore_settings(self, s) -> None:
        from app.settings import read

        self.form.restore_settings(s)
        self.curves.restore_settings(s)
        state = s.value("columns")
        if state is not None:
            self.splitter.restoreState(state)
        last = read(s, "run/last", "")
        if last:
            moved_on = self.form.values()["out_dir"] != last
            if self.reopen(last) and moved_on:  # the run of last time, with its curves, checkpoint and settings
                self.form.restore_settings(s)  # ... but the user had moved on to the next run's settings: keep them
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
        for timer in (self._check_timer, self._redraw_timer, self._redraw_soon):
            timer.stop()
        self.follower.stop()
        top = self.window()
        if self.controller.running and top is not self and top.isVisible():
            # the run needs a moment to save its checkpoint: the window goes at once instead of freezing meanwhile
            top.hide()
            QApplication.processEvents()
        self.controller.shutdown()
        self.runs.shutdown()
