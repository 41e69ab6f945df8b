"""The Generation pane: write a prompt, then walk through generation one token at a time.

A view of :class:`app.generation.state.GenerationState` (the model, the session's snapshot, the busy/pending state
machine, the outcome line), which runs every model forward as a job on the pane's :class:`app.jobs.JobRunner`. The
widgets are built in widgets.py; what the chart shows is computed in distribution.py. Moving a decoding control
redraws the chart from the snapshot's cached logits: no forward pass.
"""

import html
import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog, QWidget

from app.generation import widgets
from app.generation.distribution import chart_data, draw_strip, max_entropy_bits, step_tooltip
from app.generation.model_source import ModelSource, bundled_sources
from app.generation.picker import OPEN_FOLDER
from app.generation.run_control import RunControl
from app.generation.state import GenerationState, Prompt, RunLimits, parse_stop_sequences
from app.generation.widgets import SPEEDS
from app.jobs import JobRunner
from app.paths import assets_dir, read_state, write_state
from app.settings import read
from app.theme import warning_color

PROMPT_STATE = "generation_prompt.txt"
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light"
PROMPT_DEBOUNCE_MS = 400  # re-run the prompt this long after the last keystroke
BUSY_DELAY_MS = 150  # show "busy" only for jobs slower than this, so fast steps never flicker the buttons


class GenerationPane(QWidget):
    title = "Generation"

    sig_model_loaded = Signal(str)
    """A model is ready (its one-line description)."""

    sig_context_changed = Signal(object, object, list)
    """(model, tokenizer, ids): the model or the token ids it reads changed, on the UI thread.

    Emitted after a model loads, a prompt is set (including reset and a prompt the model cannot read: then ids is
    empty), a token is stepped or forced, and an undo. ``model`` is the engine.model.GPT in eval mode that this pane
    steps (shared with its worker thread: run it under ``torch.no_grad()`` from your own thread, never change it),
    ``tokenizer`` its engine tokenizer, ``ids`` a fresh list: the prompt's ids followed by the generated ones.
    The same triple is available at any time from :meth:`context`.
    """

    def __init__(self, reporter=None, parent=None, state: GenerationState | None = None):
        super().__init__(parent)
        self.reporter = reporter
        self.runner = JobRunner(self, torch_threads=1)
        self.state = state or GenerationState(self.runner.submit)
        self.latest_path = ""
        self.wanted: ModelSource | None = None  # restored source, loaded when the pane is first shown
        self.hub = None  # engine.hub_models() as last listed (None: not yet)
        self._prompt_known = False  # the prompt box holds the user's text (restored or typed), so save it
        self._busy_shown = False
        widgets.build(self)
        self.text.tooltip_for = lambda step: step_tooltip(self.state.snapshot, step, self.state.label)
        self.prompt.setPlainText(DEFAULT_PROMPT)
        self.prompt_timer = QTimer(self)
        self.prompt_timer.setSingleShot(True)
        self.prompt_timer.setInterval(PROMPT_DEBOUNCE_MS)
        self.busy_timer = QTimer(self)
        self.busy_timer.setSingleShot(True)
        self.busy_timer.setInterval(BUSY_DELAY_MS)
        self._connect()
        self.run_control = RunControl(self)
        self.rebuild_sources()
        self.update_actions()

    def _connect(self):
        events = self.state.events
        events.busy.connect(self._on_busy)
        events.progress.connect(self.model_info.setText)
        events.loaded.connect(self._on_loaded)
        events.changed.connect(self._on_changed)
        events.outcome.connect(self._on_outcome)
        self.runner.sig_progress.connect(lambda kind, text: events.progress.emit(str(text)))
        self.source_box.sig_chosen.connect(self.load_source)
        self.source_box.sig_open.connect(lambda what: self.open_model(folder=what == OPEN_FOLDER))
        self.reload_button.clicked.connect(self._on_reload)
        self.cancel_button.clicked.connect(self.cancel_load)
        self.step_button.clicked.connect(self.step)
        self.undo_button.clicked.connect(self.undo)
        self.reset_button.clicked.connect(self.reset)
        self.prompt.textChanged.connect(self._on_prompt_edited)
        self.prompt_timer.timeout.connect(self._apply_prompt)
        self.chat.toggled.connect(lambda _: self._apply_prompt())
        self.controls.sig_changed.connect(self.redraw)
        self.top_n.valueChanged.connect(self.redraw)
        self.chart.sig_rows_fit_changed.connect(self.redraw)
        self.scale.currentIndexChanged.connect(self._on_scale)
        self.chart.sig_token_clicked.connect(self.force)
        self.search.sig_token_chosen.connect(self.force)
        self.busy_timer.timeout.connect(self._show_busy)

        def shortcut(keys, slot):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
            return sc

        self.shortcuts = [shortcut("Ctrl+Right", self.step), shortcut("Ctrl+Left", self.undo),
                          shortcut("Ctrl+Z", self.undo), shortcut("Ctrl+Return", self.run_button.toggle)]

    # ---- reading -----------------------------------------------------------------------------------------------
    @property
    def loaded(self):
        return self.state.loaded

    @property
    def snapshot(self):
        return self.state.snapshot

    @property
    def busy(self) -> bool:
        return self.state.busy

    def context(self) -> tuple[object, object, list[int]] | None:
        """(model, tokenizer, ids) as last announced by sig_context_changed; None while no model is loaded."""
        if self.state.loaded is None:
            return None
        ids = list(self.state.snapshot.ids) if self.state.snapshot is not None else []
        return self.state.loaded.model, self.state.loaded.tokenizer, ids

    def current_prompt(self) -> Prompt:
        """The prompt box as the session should read it (rendered by the chat template when Chat is on)."""
        text = self.prompt.toPlainText()
        loaded = self.state.loaded
        if self.chat.isChecked() and loaded is not None and loaded.chat_template:
            from engine.chat import ChatTemplateError, render_chat

            try:
                rendered = render_chat(loaded.chat_template, [{"role": "user", "content": text}],
                                       bos_token=loaded.info.get("bos_token"), eos_token=loaded.info.get("eos_token"))
            except ChatTemplateError as e:
                self._on_outcome(f"{e}; the prompt is used as plain text", None)
                return Prompt(text)
            return Prompt(text, rendered)
        return Prompt(text)

    def run_limits(self) -> RunLimits:
        return RunLimits(self.max_new.value(), parse_stop_sequences(self.stop_sequences.text()))

    # ---- public actions (wired by the main window, used by tests) ----------------------------------------------
    def load_checkpoint(self, path: str):
        """Load a checkpoint file (the Training pane's "Use in Generation", or Open…) or a Hugging Face folder."""
        from engine.hf import is_hf_folder

        path = str(path)
        if os.path.isdir(path) and is_hf_folder(path):
            self.load_source(ModelSource("hf", path=path))
            return
        kind = "latest" if path and path == self.latest_path else "file"
        self.load_source(ModelSource(kind, path=path))

    def set_latest_checkpoint(self, path: str):
        """The Training pane saved a checkpoint: offer it (without interrupting what is loaded)."""
        self.latest_path = str(path)
        self.rebuild_sources()
        if self.loaded is not None and self.loaded.source.kind == "latest":
            self.reload_button.setText("↻ newer")
            self.reload_button.setToolTip("The training run saved a newer checkpoint: load it")

    def load_source(self, source: ModelSource):
        """Load a model in the worker; the current one stays until the new one is ready (or if it fails)."""
        self.wanted = None
        self.pause()
        self.model_info.setText(f"Loading {source.title()}…")
        self.state.load(source, self.current_prompt(), self.precision.currentData())
        self.redraw()

    def cancel_load(self) -> None:
        self.state.cancel_load()

    def step(self):
        """Draw one token with the current decoding settings."""
        self.state.step(self.controls.settings(), self.controls.seed.value())

    def force(self, token_id: int):
        """Append a token chosen by hand (a clicked bar or a vocabulary search), then continue from it."""
        self.state.force(int(token_id), self.controls.settings())

    def undo(self):
        self.state.undo()

    def reset(self):
        """Back to the prompt: every generated token goes."""
        self.pause()
        self.state.reset(self.current_prompt())

    def pause(self):
        self.run_button.setChecked(False)

    def open_model(self, folder: bool = False) -> None:
        """Ask for a model to load: a Hugging Face model folder, or a checkpoint file (File ▸ Open model…)."""
        start = os.path.dirname(self.loaded.source.path) if self.loaded and self.loaded.source.path else ""
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Open a Hugging Face model folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open a checkpoint", start,
                                                  "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.load_checkpoint(path)
        else:
            self.rebuild_sources()

    def choose_model(self) -> None:
        """File ▸ Open model…: the picker's list, the Hugging Face cache listed again, with its Open… entries."""
        self.rebuild_sources(rescan=True)
        self.source_box.showPopup()

    def export_chart(self, path: str) -> bool:
        """Save the next-token chart as a PNG, as it is drawn now (File ▸ Export)."""
        ok = self.chart.grab().save(path, "PNG")
        if not ok:
            self.model_info.setText(f"Could not write {path}")
        return ok

    def rebuild_sources(self, rescan: bool = False):
        """Refill the model picker (``rescan``: list the Hugging Face cache again)."""
        if rescan or self.hub is None:
            from engine.hub import hub_models

            self.hub = hub_models()
        current = self.loaded.source if self.loaded else None
        self.source_box.set_sources(bundled=bundled_sources(assets_dir() / "models"), latest=self.latest_path,
                                    current=current, hub=self.hub)

    def default_source(self) -> ModelSource:
        bundled = bundled_sources(assets_dir() / "models")
        named = [s for s in bundled if os.path.basename(s.path) == "shakespeare-char.pt"]
        if named or bundled:
            return (named or bundled)[0]
        return ModelSource("random", size="tiny", tokenizer="char")

    # ---- state -> view -----------------------------------------------------------------------------------------
    def _on_loaded(self, loaded):
        self.reload_button.setText("↻")
        self.model_info.setText(loaded.description)
        self.model_info.set_detail(loaded.source.path or loaded.source.title())
        self.chat.setVisible(bool(loaded.chat_template))
        self.search.set_vocabulary(loaded.labels)
        self.rebuild_sources()
        self.sig_model_loaded.emit(loaded.description)

    def _on_changed(self, reason: str, record):
        state = self.state
        if reason == "step" or reason == "force":
            self.text.append_token(state.token_bytes(record.token_id), record.prob, forced=record.forced)
            self._show_state()
            self.run_control.after_step(record)
        elif reason == "undo":
            while self.text.n_pieces > len(state.snapshot.history):
                self.text.pop_token()
            self._show_state()
        else:
            self.render()
        context = self.context()
        if context is not None:
            self.sig_context_changed.emit(*context)

    def _on_outcome(self, text: str, failure):
        """Expected failures (the user's) are explained in the banner; others are bugs: reported too."""
        self.banner.setText(text)
        self.banner.setVisible(bool(text))
        if failure is not None:
            self.pause()
            if not failure.expected and self.reporter is not None:
                self.reporter.report_message(f"Generation: {type(failure.exc).__name__}: {failure.message}",
                                             failure.traceback)
        if self.state.loaded is None:
            self.model_info.setText("No model loaded")
        elif not self.state.busy:
            self.model_info.setText(self.state.loaded.description)

    def render(self):
        """Show the whole state again: the text view rebuilt from the snapshot, the chart, the counts."""
        state, snap = self.state, self.state.snapshot
        text = state.prompt.model_text if state.prompt is not None else self.prompt.toPlainText()
        start = state.label(snap.ids[0]) if snap is not None and not text and snap.prompt_len == 1 else None
        self.text.set_prompt(text, start_token=start)
        if snap is not None and state.loaded is not None:
            for rec in snap.history:
                self.text.append_token(state.token_bytes(rec.token_id), rec.prob, forced=rec.forced)
        self._show_state()

    def _show_state(self):
        self.redraw()
        self._show_last_draw()
        snap = self.state.snapshot
        note = snap.context_note if snap is not None else ""
        self.context_note.setText(note)
        self.context_note.setVisible(bool(note))
        if snap is not None:
            n_gen = len(snap.history)
            if not (self.state.prompt and self.state.prompt.model_text) and snap.prompt_len == 1:
                prompt = f"empty prompt: the model starts from {self.state.label(snap.ids[0])}"
            else:
                prompt = f"{snap.prompt_len} prompt token{'s' if snap.prompt_len != 1 else ''}"
            self.counts.setText(f"{prompt} + {n_gen} generated · model forward passes so far: {snap.forward_count}")
        else:
            self.counts.setText("")
        self.update_actions()

    def redraw(self):
        """Recompute the chart from the cached logits and the current controls (no forward pass)."""
        state = self.state
        if state.loaded is None:
            self.chart.show_message("Loading a model…" if state.busy else "No model loaded")
            return
        if state.snapshot is None:
            self.chart.show_message(f"This model cannot read the prompt: {state.prompt_error}" if state.prompt_error
                                    else "Type a prompt to start")
            return
        snap = state.snapshot
        settings = self.controls.settings()
        n = min(self.top_n.value(), self.chart.rows_that_fit())
        data = chart_data(snap.logits, settings, snap.ids, n, state.label)
        tail = self.text.toPlainText()[-16:].replace("\n", "↵")
        before, after = abs(data.entropy_before), abs(data.entropy_after)  # abs: no "-0.00" for a one-hot
        header = (f"After “…{html.escape(tail)}”: entropy <b>{before:.2f}</b> → <b>{after:.2f}</b> bits "
                  f"(raw → after the controls) · {data.n_kept:,} of {data.vocab_size:,} tokens can be drawn")
        if n < self.top_n.value():
            header += f" · top {n} shown: the chart is too short for {self.top_n.value()}"
        if state.loaded.untrained:
            uniform = max_entropy_bits(data.vocab_size)
            header += (f"<br><span style='color:{warning_color(self)}'>An untrained, randomly initialised model: "
                       f"its predictions are close to uniform (a uniform guess has {uniform:.2f} bits).</span>")
        self.chart.set_data(data, header)

    def _on_scale(self, index: int):
        self.chart.log_scale = bool(self.scale.itemData(index))
        self.redraw()

    def _show_last_draw(self):
        snap = self.state.snapshot
        if snap is None or not snap.history or snap.last_probs is None:  # none yet, or its logits were dropped
            self.chart.set_draw(None)
            return
        rec = snap.history[-1]
        self.chart.set_draw(draw_strip(snap.last_probs, rec.token_id, rec.u, self.state.label,
                                       len(snap.history) - 1))

    def update_actions(self):
        """Enable what the state allows now."""
        state = self.state
        ready = state.session is not None and state.snapshot is not None and not self._busy_shown
        self.step_button.setEnabled(ready)
        self.run_button.setEnabled(ready or self.run_button.isChecked())
        self.undo_button.setEnabled(ready and bool(state.snapshot.history))
        self.reset_button.setEnabled(state.session is not None and not self._busy_shown)
        self.search.setEnabled(ready)
        loading = self._busy_shown and state.busy_kind == "load"
        self.cancel_button.setVisible(loading)
        self.progress.setVisible(self._busy_shown)

    # ---- busy --------------------------------------------------------------------------------------------------
    def _on_busy(self, busy: bool):
        if busy:
            self.busy_timer.start()
            return
        self.busy_timer.stop()
        if self._busy_shown:
            self._busy_shown = False
            self.update_actions()
        if self.state.prompt is not None and self.current_prompt() != self.state.prompt \
                and not self.prompt_timer.isActive() and self.state.session is not None:
            QTimer.singleShot(0, self._apply_prompt)  # typed while the job ran

    def _show_busy(self):
        if self.state.busy:
            self._busy_shown = True
            self.update_actions()

    # ---- prompt and Run ----------------------------------------------------------------------------------------
    def _apply_prompt(self):
        if self._prompt_known:
            write_state(PROMPT_STATE, self.prompt.toPlainText())
        self.state.set_prompt(self.current_prompt())

    def _on_prompt_edited(self):
        self._prompt_known = True
        self.prompt_timer.start()

    def _on_reload(self):
        if self.loaded is None:
            if self.wanted is not None:
                self.load_source(self.wanted)
            return
        source = self.loaded.source
        if source.kind == "latest" and self.latest_path:
            source = ModelSource("latest", path=self.latest_path)
        self.load_source(source)

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.loaded is None and not self.state.busy:
            QTimer.singleShot(0, self._load_wanted)

    def _load_wanted(self):
        """First show: load the restored (or default) model, unless something was loaded meanwhile."""
        if self.loaded is None and not self.state.busy:
            self.load_source(self.wanted or self.default_source())

    # ---- pane contract -----------------------------------------------------------------------------------------
    def save_settings(self, s):
        if self._prompt_known:
            write_state(PROMPT_STATE, self.prompt.toPlainText())
        s.beginGroup("decoding")
        self.controls.save_settings(s)
        s.endGroup()
        for key, value in (("top_n", self.top_n.value()), ("speed", SPEEDS[self.speed.value()]),
                           ("log_scale", self.chart.log_scale), ("precision", self.precision.currentData()),
                           ("max_new", self.max_new.value()), ("stop", self.stop_sequences.text()),
                           ("chat", self.chat.isChecked()), ("splitter", self.splitter.saveState()),
                           ("right_splitter", self.right_splitter.saveState())):
            s.setValue(key, value)
        source = self.loaded.source if self.loaded else self.wanted
        if source is not None:
            for key in ("kind", "path", "size", "tokenizer"):
                s.setValue(f"source/{key}", getattr(source, key))

    def restore_settings(self, s):
        self.prompt.blockSignals(True)
        self.prompt.setPlainText(read_state(PROMPT_STATE, DEFAULT_PROMPT))
        self.prompt.blockSignals(False)
        self._prompt_known = True
        s.beginGroup("decoding")
        self.controls.restore_settings(s)
        s.endGroup()
        self.top_n.setValue(read(s, "top_n", 15))
        speed = read(s, "speed", 8)
        self.speed.setValue(min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - speed)))
        self.scale.setCurrentIndex(1 if read(s, "log_scale", False) else 0)
        self.precision.setCurrentIndex(max(0, self.precision.findData(read(s, "precision", "auto"))))
        self.max_new.setValue(read(s, "max_new", 0))
        self.stop_sequences.setText(read(s, "stop", ""))
        self.chat.setChecked(read(s, "chat", False))
        for key, splitter in (("splitter", self.splitter), ("right_splitter", self.right_splitter)):
            state = s.value(key)
            if state is not None:
                splitter.restoreState(state)
        kind = read(s, "source/kind", "")
        try:
            source = ModelSource(kind, path=read(s, "source/path", ""), size=read(s, "source/size", "tiny"),
                                 tokenizer=read(s, "source/tokenizer", "char")) if kind else None
        except ValueError:
            source = None
        if source is not None and source.kind != "random" and not os.path.exists(source.path):
            source = None  # the file went away: fall back to the default
        if source is not None and source.kind == "latest":
            self.latest_path = source.path
            self.rebuild_sources()
        self.wanted = source or self.default_source()
        if self.isVisible() and self.loaded is None:
            self.load_source(self.wanted)

    def confirm_close(self) -> bool:
        return True

    def shutdown(self):
        self.pause()
        self.state.cancel_load()
        for timer in (self.run_control.timer, self.prompt_timer, self.busy_timer):
            timer.stop()
        self.search.shutdown()
        if self._prompt_known:
            write_state(PROMPT_STATE, self.prompt.toPlainText())
        self.runner.close()
