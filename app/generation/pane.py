"""The Generation pane: write a prompt, then walk through generation one token at a time.

Wiring only: the widgets live in chart.py, controls.py, text_view.py and vocab_search.py; what the chart shows is
computed in distribution.py; the model is loaded by model_source.py. Every model forward (load, prompt, step, force,
undo) runs as a job on the pane's single worker thread, which returns a :class:`Snapshot`; the UI thread reads only
snapshots, never the session itself. Moving a decoding control redraws the chart from the snapshot's cached logits:
no forward pass.
"""

import html
import os
from dataclasses import dataclass

import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QSizePolicy, QSlider,
    QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget,
)

from app.theme import hint_color
from app.generation.chart import ProbabilityChart
from app.generation.controls import DecodingControls
from app.generation.distribution import alternatives, chart_data, draw_strip, max_entropy_bits, percent
from app.generation.model_source import RANDOM_SIZES, RANDOM_TOKENIZERS, LoadedModel, ModelSource, load_source
from app.generation.text_view import GeneratedText, Legend
from app.generation.vocab_search import VocabularySearch
from app.jobs import JobFailed, JobRunner, is_user_error
from app.paths import bundled_checkpoint, read_state, write_state
from app.settings import read
from engine.decoding import DecodeSettings, probabilities

PROMPT_STATE = "generation_prompt.txt"
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light"
PROMPT_DEBOUNCE_MS = 400  # re-run the prompt this long after the last keystroke
BUSY_DELAY_MS = 150  # show "busy" only for jobs slower than this, so fast steps never flicker the buttons
SPEEDS = (1, 2, 3, 5, 8, 12, 20, 30, 50)  # tokens per second offered by the Run speed slider


@dataclass
class Snapshot:
    """What the UI shows, copied out of the session by the job that changed it."""

    ids: list[int]  # prompt + generated ids
    prompt_len: int
    logits: torch.Tensor  # (V,) next-token logits
    history: list  # engine.session.StepRecord per generated token
    context_note: str
    forward_count: int
    last_probs: torch.Tensor | None = None  # (V,) the distribution the last generated token was chosen from


def _snapshot(session) -> Snapshot:
    """Copy what the UI shows out of the session (in the worker thread: this also runs the decoding stages of the last
    step, so the UI thread never recomputes a 50k-token distribution just to show where the last draw fell)."""
    last_probs = None
    if session.history:
        rec = session.history[-1]
        if rec.logits_before is not None:
            last_probs = probabilities(rec.logits_before, rec.settings or DecodeSettings(), session.ids[: rec.index])
    return Snapshot(list(session.ids), session.prompt_len, session.logits.detach().clone(), list(session.history),
                    session.context_note, session.forward_count, last_probs)


def _generator(seed: int, position: int) -> torch.Generator:
    """The draw of generated token number ``position`` depends only on the seed and the position, so undo + step
    draws the same token again and a whole run replays from its seed."""
    return torch.Generator().manual_seed((seed * 1_000_003 + position) % 2**63)


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

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.loaded: LoadedModel | None = None
        self.session = None  # engine.session.GenerationSession: used only inside jobs
        self.snapshot: Snapshot | None = None
        self.prompt_error = ""
        self._latest_path = ""
        self._wanted: ModelSource | None = None  # restored source, loaded when the pane is first shown
        self._pending_load: ModelSource | None = None
        self._session_prompt: str | None = None  # the prompt text the session was last set to
        self._prompt_known = False  # the prompt box holds the user's text (restored or typed), so save it
        self._build()
        self.prompt.setPlainText(DEFAULT_PROMPT)
        self._connect()
        self._rebuild_sources()
        self._update_actions()

    # ---- construction ------------------------------------------------------------------------------------------
    def _build(self):
        self.source_box = QComboBox()
        self.source_box.setMinimumContentsLength(26)
        self.source_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_box.setToolTip("Which model predicts the next token: a trained checkpoint, or a random "
                                   "untrained model (its probabilities are close to uniform).")
        self.reload_button = QToolButton()
        self.reload_button.setText("↻")
        self.reload_button.setToolTip("Load the model again (for the latest training checkpoint: the newest one)")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setVisible(False)
        self.model_info = QLabel()
        self.model_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long: may be cut
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fde2e1; color: #7a1212; padding: 4px 8px; border-radius: 3px;")
        self.banner.setVisible(False)

        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Type a prompt…")
        self.prompt.setMaximumHeight(84)
        self.prompt.setToolTip("The text the model continues. Editing it starts the generation again.")
        self.undo_button = QPushButton("◀ Undo")
        self.undo_button.setToolTip("Take back the last token, restoring the exact previous state (Ctrl+Left, Ctrl+Z)")
        self.step_button = QPushButton("Step ▶")
        self.step_button.setToolTip("Draw one token from the distribution on the right (Ctrl+Right)")
        self.run_button = QPushButton("Run ▶▶")
        self.run_button.setCheckable(True)
        self.run_button.setToolTip("Step automatically at the chosen speed; press again to pause (Ctrl+Return)")
        self.speed = QSlider(Qt.Orientation.Horizontal)
        self.speed.setRange(0, len(SPEEDS) - 1)
        self.speed.setValue(SPEEDS.index(8))
        self.speed.setMaximumWidth(110)
        self.speed.setToolTip("Run speed in tokens per second")
        self.speed_label = QLabel()
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Remove every generated token: back to the prompt")
        self.text = GeneratedText()
        self.text.tooltip_for = self._step_tooltip
        self.text.setToolTip("")
        self.legend = Legend()
        self.context_note = QLabel()
        self.context_note.setWordWrap(True)
        self.context_note.setStyleSheet("color: #8a5a00;")
        self.context_note.setVisible(False)
        self.counts = QLabel()
        self.counts.setStyleSheet(f"color: {hint_color(self)};")
        self.search = VocabularySearch()

        self.top_n = QSpinBox()
        self.top_n.setRange(3, 40)
        self.top_n.setValue(15)
        self.top_n.setToolTip("How many of the most likely tokens the chart shows")
        bars_legend = QLabel("<span style='color:#465a78'>▭</span> model's raw softmax &nbsp; "
                             "<span style='color:#3465a4'>■</span> after the decoding controls &nbsp; "
                             "<span style='color:#969696'>▨</span> cut &nbsp; "
                             "<span style='color:#c82828'>- -</span> top-p cutoff")
        bars_legend.setWordWrap(True)
        bars_legend.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.chart = ProbabilityChart()
        self.controls = DecodingControls()

        top = QHBoxLayout()
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.source_box)
        top.addWidget(self.reload_button)
        top.addWidget(self.progress)
        top.addWidget(self.model_info, 1)

        buttons = QHBoxLayout()
        for w in (self.undo_button, self.step_button, self.run_button, self.speed, self.speed_label):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.reset_button)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 4, 0)
        lv.addWidget(QLabel("Prompt"))
        lv.addWidget(self.prompt)
        lv.addLayout(buttons)
        lv.addWidget(self.text, 1)
        lv.addWidget(self.legend)
        lv.addWidget(self.context_note)
        lv.addWidget(self.counts)
        lv.addWidget(self.search)

        chart_top = QHBoxLayout()
        chart_top.addWidget(QLabel("Next token · show top"))
        chart_top.addWidget(self.top_n)
        chart_top.addWidget(bars_legend, 1)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 0, 0, 0)
        rv.addLayout(chart_top)
        rv.addWidget(self.chart, 1)
        rv.addWidget(self.controls)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 5)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)

        self.runner = JobRunner(self)
        self.run_timer = QTimer(self)
        self.prompt_timer = QTimer(self)
        self.prompt_timer.setSingleShot(True)
        self.prompt_timer.setInterval(PROMPT_DEBOUNCE_MS)
        self.busy_timer = QTimer(self)
        self.busy_timer.setSingleShot(True)
        self.busy_timer.setInterval(BUSY_DELAY_MS)
        self._busy_shown = False
        self._on_speed(self.speed.value())

        def shortcut(keys, slot):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)
            return sc

        self.shortcuts = [shortcut("Ctrl+Right", self.step), shortcut("Ctrl+Left", self.undo),
                          shortcut("Ctrl+Z", self.undo), shortcut("Ctrl+Return", self.run_button.toggle)]

    def _connect(self):
        self.source_box.activated.connect(self._on_source_chosen)
        self.reload_button.clicked.connect(self._on_reload)
        self.step_button.clicked.connect(self.step)
        self.undo_button.clicked.connect(self.undo)
        self.run_button.toggled.connect(self._on_run_toggled)
        self.reset_button.clicked.connect(self.reset)
        self.speed.valueChanged.connect(self._on_speed)
        self.run_timer.timeout.connect(self._on_run_tick)
        self.prompt.textChanged.connect(self._on_prompt_edited)
        self.prompt_timer.timeout.connect(self._apply_prompt)
        self.controls.sig_changed.connect(self._on_controls_changed)
        self.top_n.valueChanged.connect(self.redraw)
        self.chart.sig_token_clicked.connect(self.force)
        self.search.sig_token_chosen.connect(self.force)
        self.runner.sig_busy_changed.connect(self._on_busy_changed)
        self.runner.sig_progress.connect(self._on_progress)
        self.busy_timer.timeout.connect(self._show_busy)

    # ---- public slots (wired by the main window) ---------------------------------------------------------------
    def load_checkpoint(self, path: str):
        """Load a checkpoint file (the Training pane's "Use in Generation", or Open…)."""
        kind = "latest" if path and path == self._latest_path else "file"
        self.load_source(ModelSource(kind, path=str(path)))

    def set_latest_checkpoint(self, path: str):
        """The Training pane saved a checkpoint: offer it (without interrupting what is loaded)."""
        self._latest_path = str(path)
        self._rebuild_sources()
        if self.loaded is not None and self.loaded.source.kind == "latest":
            self.reload_button.setText("↻ newer")
            self.reload_button.setToolTip("The training run saved a newer checkpoint: load it")

    def load_source(self, source: ModelSource):
        """Load a model in the worker; the current one stays until the new one is ready (or if it fails)."""
        self._wanted = None
        if self.runner.busy:
            self._pending_load = source
            return
        self.pause()
        prompt = self.prompt.toPlainText()

        def job(job):
            from engine.session import GenerationSession

            loaded = load_source(source, job.progress)
            job.progress("Running the prompt…")
            session = GenerationSession(loaded.model, loaded.tokenizer)
            try:
                session.set_prompt(prompt)
            except Exception as exc:  # noqa: BLE001 - a prompt this model cannot read is shown, not a failed load
                if not is_user_error(exc):
                    raise
                return loaded, session, None, str(exc), prompt
            return loaded, session, _snapshot(session), "", prompt

        self.model_info.setText(f"Loading {source.title()}…")
        self._submit("load", job, self._on_loaded, lambda failure: self._on_load_failed(source, failure))

    # ---- generation actions --------------------------------------------------------------------------------------
    def step(self):
        """Draw one token with the current decoding settings."""
        if not self._can_step():
            return
        settings = self.controls.settings()
        generator = _generator(self.controls.seed.value(), len(self.snapshot.history))
        session = self.session
        self._submit("step", lambda job: (session.step(settings, generator), _snapshot(session)),
                     self._on_stepped, self._on_job_failed)

    def force(self, token_id: int):
        """Append a token chosen by hand (a clicked bar or a vocabulary search), then continue from it."""
        if not self._can_step():
            return
        session, settings = self.session, self.controls.settings()
        self._submit("force", lambda job: (session.force(int(token_id), settings), _snapshot(session)),
                     self._on_stepped, self._on_job_failed)

    def undo(self):
        """Take back the last generated token."""
        if self.runner.busy or self.snapshot is None or not self.snapshot.history:
            return
        session = self.session
        self._submit("undo", lambda job: (session.undo(), _snapshot(session)), self._on_undone, self._on_job_failed)

    def reset(self):
        """Back to the prompt: every generated token goes."""
        self.pause()
        if self.prompt.toPlainText() != self._session_prompt or self.runner.busy or self.session is None:
            self._apply_prompt(force=True)
            return
        session = self.session

        def job(job):
            session.reset()  # undo everything: no forward pass
            return _snapshot(session)

        self._submit("reset", job, lambda snap: self._on_prompt_set(snap, self._session_prompt),
                     self._on_job_failed)

    def pause(self):
        self.run_button.setChecked(False)

    def context(self) -> tuple[object, object, list[int]] | None:
        """(model, tokenizer, ids) as last announced by sig_context_changed; None while no model is loaded."""
        if self.loaded is None:
            return None
        ids = list(self.snapshot.ids) if self.snapshot is not None else []
        return self.loaded.model, self.loaded.tokenizer, ids

    def _announce_context(self):
        context = self.context()
        if context is not None:
            self.sig_context_changed.emit(*context)

    def _submit(self, kind: str, fn, on_done, on_failed) -> bool:
        """One job at a time (every job uses the one session): False, and nothing runs, while one is in flight."""
        if self.runner.busy:
            return False

        def deliver(result):
            on_failed(result) if isinstance(result, JobFailed) else on_done(result)

        self.runner.submit(kind, fn, deliver)
        return True

    def _on_progress(self, kind: str, text):
        self.model_info.setText(str(text))

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def _can_step(self) -> bool:
        return not self.runner.busy and self.session is not None and self.snapshot is not None

    # ---- job results (UI thread) ---------------------------------------------------------------------------------
    def _on_loaded(self, result):
        loaded, session, snapshot, error, prompt = result
        self.loaded, self.session, self.snapshot, self.prompt_error = loaded, session, snapshot, error
        self._session_prompt = prompt  # if the box changed meanwhile, _on_busy_changed applies the new text
        self.reload_button.setText("↻")
        self.banner.setVisible(False)
        self.model_info.setText(loaded.description)
        self.model_info.setToolTip(loaded.source.path or loaded.source.title())
        self.search.set_vocabulary(loaded.labels)
        self._rebuild_sources()
        self._show_all()
        self.sig_model_loaded.emit(loaded.description)
        self._announce_context()

    def _on_load_failed(self, source: ModelSource, failure: JobFailed):
        self.model_info.setText(self.loaded.description if self.loaded else "No model loaded")
        what = "The previous model stays loaded." if self.loaded else "Choose another model above."
        # a checkpoint's error already names its file; a random model's names nothing
        name = "the model" if source.path else source.title()
        self._show_error(f"Could not load {name}: {failure.message}\n{what}", failure)
        self._rebuild_sources()

    def _on_stepped(self, result):
        record, snapshot = result
        self.snapshot = snapshot
        self.banner.setVisible(False)  # the user has moved on from the last error
        tokenizer = self.loaded.tokenizer
        data = tokenizer.token_bytes(record.token_id) if record.token_id < tokenizer.n_vocab else b""
        self.text.append_token(data, record.prob, forced=record.forced)
        self._show_state()
        if self.run_button.isChecked() and record.token_id in tokenizer.special_tokens.values():
            self.pause()
            self.counts.setText(self.counts.text() + f" · paused at the special token "
                                                     f"{self.loaded.labels[record.token_id]}")
        self._announce_context()

    def _on_undone(self, result):
        _, snapshot = result
        self.snapshot = snapshot
        self.banner.setVisible(False)
        while self.text.n_pieces > len(snapshot.history):
            self.text.pop_token()
        self._show_state()
        self._announce_context()

    def _on_prompt_set(self, result, prompt: str):
        self.snapshot, self.prompt_error = result, ""
        self._session_prompt = prompt
        self.banner.setVisible(False)
        self._show_all()
        self._announce_context()

    def _on_prompt_failed(self, failure: JobFailed, prompt: str):
        if failure.expected:
            self.snapshot, self.prompt_error = None, failure.message
            self._session_prompt = prompt
            self._show_all()
            self._announce_context()
        else:
            self._on_job_failed(failure)

    def _on_job_failed(self, failure: JobFailed):
        self.pause()
        self._show_error(failure.message, failure)

    def _show_error(self, message: str, failure: JobFailed):
        """Expected failures (ValueError, CheckpointError) are explained in the banner; others are bugs: report them."""
        self.banner.setText(message)
        self.banner.setVisible(True)
        if not failure.expected and self.reporter is not None:
            self.reporter.report_message(f"Generation: {type(failure.exc).__name__}: {failure.message}",
                                         failure.traceback)

    # ---- showing the state ---------------------------------------------------------------------------------------
    def _show_all(self):
        """Rebuild the text view from the snapshot (after a load or a new prompt), then the rest."""
        prompt = self._session_prompt if self._session_prompt is not None else self.prompt.toPlainText()
        snap = self.snapshot
        start = self._label(snap.ids[0]) if snap is not None and not prompt and snap.prompt_len == 1 else None
        self.text.set_prompt(prompt, start_token=start)
        if self.snapshot is not None and self.loaded is not None:
            tok = self.loaded.tokenizer
            for rec in self.snapshot.history:
                data = tok.token_bytes(rec.token_id) if rec.token_id < tok.n_vocab else b""
                self.text.append_token(data, rec.prob, forced=rec.forced)
        self._show_state()

    def _show_state(self):
        self.redraw()
        self._show_last_draw()
        snap = self.snapshot
        note = snap.context_note if snap is not None else ""
        self.context_note.setText(note)
        self.context_note.setVisible(bool(note))
        if snap is not None:
            n_gen = len(snap.history)
            if not self._session_prompt and snap.prompt_len == 1:
                prompt = f"empty prompt: the model starts from {self._label(snap.ids[0])}"
            else:
                prompt = f"{snap.prompt_len} prompt token{'s' if snap.prompt_len != 1 else ''}"
            self.counts.setText(f"{prompt} + {n_gen} generated · model forward passes so far: {snap.forward_count}")
        else:
            self.counts.setText("")
        self._update_actions()

    def redraw(self):
        """Recompute the chart from the cached logits and the current controls (no forward pass)."""
        if self.loaded is None:
            self.chart.show_message("Loading a model…" if self.runner.busy else "No model loaded")
            return
        if self.snapshot is None:
            self.chart.show_message(f"This model cannot read the prompt: {self.prompt_error}" if self.prompt_error
                                    else "Type a prompt to start")
            return
        snap = self.snapshot
        settings = self.controls.settings()
        data = chart_data(snap.logits, settings, snap.ids, self.top_n.value(), self._label)
        tail = self.text.toPlainText()[-24:].replace("\n", "↵")
        before, after = abs(data.entropy_before), abs(data.entropy_after)  # abs: no "-0.00" for a one-hot
        header = (f"After “…{html.escape(tail)}”: entropy <b>{before:.2f}</b> bits raw → "
                  f"<b>{after:.2f}</b> bits after the controls · "
                  f"{data.n_kept:,} of {data.vocab_size:,} tokens can be drawn")
        if self.loaded.untrained:
            uniform = max_entropy_bits(data.vocab_size)
            header += (f"<br><span style='color:#8a5a00'>An untrained, randomly initialised model: its predictions "
                       f"are close to uniform (a uniform guess has {uniform:.2f} bits).</span>")
        self.chart.set_data(data, header)

    def _show_last_draw(self):
        snap = self.snapshot
        if snap is None or not snap.history:
            self.chart.set_draw(None)
            return
        if snap.last_probs is None:  # its logits were dropped to save memory
            self.chart.set_draw(None)
            return
        rec = snap.history[-1]
        self.chart.set_draw(draw_strip(snap.last_probs, rec.token_id, rec.u, self._label, len(snap.history) - 1))

    def _label(self, token_id: int) -> str:
        labels = self.loaded.labels
        label = labels[token_id] if 0 <= token_id < len(labels) else None
        return label if label is not None else f"<no token #{token_id}>"

    def _step_tooltip(self, step: int) -> str:
        snap = self.snapshot
        if snap is None or step >= len(snap.history):
            return ""
        rec = snap.history[step]
        logits = rec.logits_before  # read once: the worker may drop old logits to save memory
        if logits is not None:
            top = alternatives(logits, rec.settings or DecodeSettings(), snap.ids[: rec.index], k=6)
        else:  # logits dropped to save memory: the record's own top list, without raw probabilities
            top = [(tid, p, None) for tid, p in rec.alternatives[:6]]
        if rec.token_id not in [t[0] for t in top]:  # an unlikely draw or a forced token: show it too
            top.append((rec.token_id, rec.prob, None))
        rows = []
        for tid, p, raw in top:
            mark = "▶" if tid == rec.token_id else ""
            raw_text = f"raw {percent(raw)}" if raw is not None else ""
            rows.append(f"<tr><td>{mark}</td><td><tt>{html.escape(self._label(tid))}</tt></td>"
                        f"<td align=right>&nbsp;{percent(p)}</td>"
                        f"<td align=right style='color:gray'>&nbsp;{raw_text}</td></tr>")
        how = "forced by hand" if rec.forced else f"drawn with u = {rec.u:.3f}"
        chosen = html.escape(self._label(rec.token_id))
        return (f"<b>Token {step + 1}: <tt>{chosen}</tt></b> — {percent(rec.prob)}, {how}<br>"
                f"Most likely tokens at that step (after the controls):<table>{''.join(rows)}</table>")

    def _update_actions(self):
        ready = self.session is not None and self.snapshot is not None and not self._busy_shown
        has_history = ready and bool(self.snapshot.history)
        self.step_button.setEnabled(ready)
        self.run_button.setEnabled(ready or self.run_button.isChecked())
        self.undo_button.setEnabled(has_history)
        self.reset_button.setEnabled(self.session is not None and not self._busy_shown)
        self.search.setEnabled(ready)
        self.source_box.setEnabled(not (self._busy_shown and self.runner.busy_with("load")))

    # ---- busy state ----------------------------------------------------------------------------------------------
    def _on_busy_changed(self, busy: bool):
        if busy:
            self.busy_timer.start()
            return
        self.busy_timer.stop()
        if self._busy_shown:
            self._busy_shown = False
            self.progress.setVisible(False)
            self._update_actions()
        if self._pending_load is not None:
            source, self._pending_load = self._pending_load, None
            self.load_source(source)
        elif self._session_prompt is not None and self.prompt.toPlainText() != self._session_prompt \
                and not self.prompt_timer.isActive():
            self._apply_prompt()

    def _show_busy(self):
        if self.runner.busy:
            self._busy_shown = True
            self.progress.setVisible(True)
            self._update_actions()

    # ---- reactions -----------------------------------------------------------------------------------------------
    def _apply_prompt(self, force: bool = False):
        prompt = self.prompt.toPlainText()
        if self._prompt_known:
            write_state(PROMPT_STATE, prompt)
        if self.session is None:
            return
        if not force and prompt == self._session_prompt:
            return
        if self.runner.busy:
            return  # _on_busy_changed applies it when the running job is done
        session = self.session

        def job(job):
            session.set_prompt(prompt)
            return _snapshot(session)

        self._submit("prompt", job, lambda snap: self._on_prompt_set(snap, prompt),
                     lambda failure: self._on_prompt_failed(failure, prompt))

    def _on_prompt_edited(self):
        self._prompt_known = True
        self.prompt_timer.start()

    def _on_controls_changed(self):
        self.redraw()

    def _on_speed(self, index: int):
        speed = SPEEDS[index]
        self.speed_label.setText(f"{speed} tok/s")
        self.run_timer.setInterval(int(1000 / speed))

    def _on_run_toggled(self, on: bool):
        self.run_button.setText("Pause ❚❚" if on else "Run ▶▶")
        if on:
            self.run_timer.start()
            self._on_run_tick()
        else:
            self.run_timer.stop()
        self._update_actions()

    def _on_run_tick(self):
        if not self.runner.busy:
            if self._can_step():
                self.step()
            else:
                self.pause()

    # ---- model sources -------------------------------------------------------------------------------------------
    def _sources(self) -> list[tuple[str, ModelSource | None]]:
        items = []
        bundled = bundled_checkpoint()
        if bundled.exists():
            items.append(ModelSource("bundled", path=str(bundled)))
        if self._latest_path:
            items.append(ModelSource("latest", path=self._latest_path))
        current = self.loaded.source if self.loaded else None
        if current is not None and current.kind == "file":
            items.append(current)
        for size in RANDOM_SIZES:
            for tok in RANDOM_TOKENIZERS:
                items.append(ModelSource("random", size=size, tokenizer=tok))
        return [(s.title(), s) for s in items] + [("Open a checkpoint file…", None)]

    def _rebuild_sources(self):
        self._source_items = self._sources()
        self.source_box.blockSignals(True)
        self.source_box.clear()
        for text, _ in self._source_items:
            self.source_box.addItem(text)
        current = self.loaded.source if self.loaded else None
        for i, (_, source) in enumerate(self._source_items):
            if source is not None and current is not None and source == current:
                self.source_box.setCurrentIndex(i)
        if current is None:
            self.source_box.setCurrentIndex(-1)
            self.source_box.setPlaceholderText("choose a model")
        self.source_box.blockSignals(False)
        view = self.source_box.view()  # the box itself may cut a long title; its list never does
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth() + 8)

    def _on_source_chosen(self, index: int):
        source = self._source_items[index][1]
        if source is None:
            self.open_model()
            return
        self.load_source(source)

    def open_model(self) -> None:
        """Ask for a model to load (File ▸ Open model…, and the picker's last item)."""
        start = os.path.dirname(self.loaded.source.path) if self.loaded and self.loaded.source.path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a checkpoint", start,
                                              "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.load_checkpoint(path)
        else:
            self._rebuild_sources()

    def export_chart(self, path: str) -> bool:
        """Save the next-token chart as a PNG, as it is drawn now (File ▸ Export)."""
        ok = self.chart.grab().save(path, "PNG")
        if not ok:
            self.model_info.setText(f"Could not write {path}")
        return ok

    def _on_reload(self):
        if self.loaded is None:
            if self._wanted is not None:
                self.load_source(self._wanted)
            return
        source = self.loaded.source
        if source.kind == "latest" and self._latest_path:
            source = ModelSource("latest", path=self._latest_path)
        self.load_source(source)

    def default_source(self) -> ModelSource:
        bundled = bundled_checkpoint()
        if bundled.exists():
            return ModelSource("bundled", path=str(bundled))
        return ModelSource("random", size="tiny", tokenizer="char")

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.loaded is None and not self.runner.busy:
            QTimer.singleShot(0, self._load_wanted)

    def _load_wanted(self):
        """First show: load the restored (or default) model, unless something was loaded meanwhile."""
        if self.loaded is None and not self.runner.busy:
            self.load_source(self._wanted or self.default_source())

    # ---- pane contract -------------------------------------------------------------------------------------------
    def save_settings(self, s):
        if self._prompt_known:
            write_state(PROMPT_STATE, self.prompt.toPlainText())
        s.beginGroup("decoding")
        self.controls.save_settings(s)
        s.endGroup()
        s.setValue("top_n", self.top_n.value())
        s.setValue("speed", SPEEDS[self.speed.value()])
        source = self.loaded.source if self.loaded else self._wanted
        if source is not None:
            s.setValue("source/kind", source.kind)
            s.setValue("source/path", source.path)
            s.setValue("source/size", source.size)
            s.setValue("source/tokenizer", source.tokenizer)
        s.setValue("splitter", self.splitter.saveState())

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
        state = s.value("splitter")
        if state is not None:
            self.splitter.restoreState(state)
        kind = read(s, "source/kind", "")
        try:
            source = ModelSource(kind, path=read(s, "source/path", ""), size=read(s, "source/size", "tiny"),
                                 tokenizer=read(s, "source/tokenizer", "char")) if kind else None
        except ValueError:
            source = None
        if source is not None and source.kind != "random" and not os.path.exists(source.path):
            source = None  # the file went away: fall back to the default
        if source is not None and source.kind == "latest":
            self._latest_path = source.path
            self._rebuild_sources()
        self._wanted = source or self.default_source()
        if self.isVisible() and self.loaded is None:
            self.load_source(self._wanted)

    def confirm_close(self) -> bool:
        return True

    def shutdown(self):
        self.pause()
        for timer in (self.run_timer, self.prompt_timer, self.busy_timer):
            timer.stop()
        self.search.shutdown()
        if self._prompt_known:
            write_state(PROMPT_STATE, self.prompt.toPlainText())
        self.runner.close()
