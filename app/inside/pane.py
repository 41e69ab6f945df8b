"""The Inside pane: what happens between the tokens going in and the probabilities coming out, on the model the
Generation pane holds.

The text is the Generation pane's context (following it live as the user steps) or text typed here. One forward pass
in the worker fills every view; choosing another layer, head, position or token costs only that view's work. Views:
every position's prediction, attention per layer and head, the logit lens, embeddings and positions, and the head.
"""

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QSpinBox, QTabWidget,
                               QVBoxLayout, QWidget)

from app.inside import analysis as an
from app.inside.attention_view import AttentionView
from app.inside.embedding_view import EmbeddingView
from app.inside.head_view import HeadView
from app.inside.lens_view import LensView
from app.inside.steps import Steps
from app.inside.tokens_view import MODES, Legend, TokensView
from app.jobs import JobFailed, JobRunner
from app.settings import read
from app.theme import hint_color

TYPING_DELAY_MS = 300
VIEWS = ("Every position predicts", "Attention", "Logit lens", "Embeddings and positions", "The head")


class InsidePane(QWidget):
    title = "Inside"

    sig_filled = Signal()
    """Every view shows the current text and model (emitted after each analysis is shown)."""

    sig_lens_complete = Signal()
    """The logit lens shows every position of the current text (it fills in slices while its tab is shown)."""

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.runner = JobRunner(self)
        self.model = self.tokenizer = None
        self.model_name = ""
        self.vocab_labels: list = []
        self.generation_ids: list[int] = []
        self.result: an.Analysis | None = None
        self.position = -1  # the chosen position in result (-1: the newest)
        self.last_timings: dict = {}  # of the last fill: compute_s (worker), show_s and longest_step_s (UI thread)
        self._embeddings_for = None  # the model whose embeddings the Embeddings view shows
        self._stale = False  # a refresh was asked for while the pane was hidden
        self._lens_in_flight = None  # the analysis whose next lens slice is being computed
        self._fill = Steps(self)  # shows an analysis a step per event-loop turn
        self._retired: list = []  # analyses shown no more, whose passes the next "release" job frees
        self._build()
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_DELAY_MS)
        self._typing.timeout.connect(self.refresh)

    # ---- layout --------------------------------------------------------------------------------------------------
    def _build(self):
        self.model_info = QLabel("No model yet: the Inside pane shows the model the Generation pane holds.")
        self.model_info.setWordWrap(True)
        self.follow = QCheckBox("Follow the Generation pane's text")
        self.follow.setChecked(True)
        self.follow.setToolTip("On: the text is the Generation pane's prompt and generated tokens, updated as you "
                               "step. Off: type your own text below.")
        self.follow.toggled.connect(self._on_follow_toggled)
        self.text = QPlainTextEdit(self)
        self.text.setPlaceholderText("Type text to see what the model makes of it (turn off following first)")
        self.text.setMaximumHeight(70)
        self.text.setReadOnly(True)
        self.text.textChanged.connect(self._on_text_edited)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)

        self.tokens = TokensView(self)
        self.tokens.tooltip_for = self.token_tooltip
        self.tokens.sig_position_clicked.connect(self.choose_position)
        self.legend = Legend(self)
        self.mode = QComboBox(self)
        self.mode.addItems(["colour by probability", "colour by rank (GLTR)"])
        self.mode.currentIndexChanged.connect(self._on_mode)
        predict = QWidget()
        pl = QVBoxLayout(predict)
        pl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.mode)
        row.addWidget(self.legend, 1)
        pl.addLayout(row)
        pl.addWidget(self.tokens, 1)
        explain = QLabel("Each token is coloured by the chance the model gave it from the tokens before it: "
                         "training lowers the loss of every position at once. Hover for details; click to choose "
                         "the position the other views show.")
        explain.setWordWrap(True)
        pl.addWidget(explain)

        self.layer = QSpinBox(self)
        self.layer.setPrefix("layer ")
        self.layer.setMinimum(1)
        self.layer.valueChanged.connect(self._on_layer)
        self.head = QSpinBox(self)
        self.head.setPrefix("head ")
        self.head.setMinimum(0)
        self.head.valueChanged.connect(self._on_head)
        self.attention = AttentionView(self)
        self.attention.sig_head_chosen.connect(self.head.setValue)
        attn = QWidget()
        al = QVBoxLayout(attn)
        al.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.layer)
        row.addWidget(self.head)
        self.row_note = QLabel("")
        row.addWidget(self.row_note, 1)
        al.addLayout(row)
        al.addWidget(self.attention, 1)

        self.lens = LensView(self)
        self.embeddings = EmbeddingView(self)
        self.embeddings.sig_token_chosen.connect(self.choose_token)
        self.head_view = HeadView(self)

        self.views = QTabWidget(self)
        for widget, title in zip((predict, attn, self.lens, self.embeddings, self.head_view), VIEWS):
            self.views.addTab(widget, title)
        self.views.currentChanged.connect(self._on_view_changed)

        top = QHBoxLayout()
        top.addWidget(self.follow)
        top.addWidget(self.model_info, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.text)
        layout.addWidget(self.status)
        layout.addWidget(self.views, 1)
        self.setMinimumSize(600, 400)

    # ---- inputs ----------------------------------------------------------------------------------------------------
    def set_context(self, model, tokenizer, ids):
        """The Generation pane's model and its context ids (connect ``sig_context_changed`` here)."""
        new_model = model is not self.model
        self.model, self.tokenizer = model, tokenizer
        self.generation_ids = list(ids)
        if new_model:
            self._model_changed()
        if self.follow.isChecked():
            self._show_generation_text()
            self.refresh()
        elif new_model:
            self.refresh()

    def set_model(self, model, tokenizer, name: str = ""):
        """Use ``model`` with the text typed here (no Generation pane needed: tests, scripts)."""
        self.model_name = name
        self.set_context(model, tokenizer, [])

    def set_text(self, text: str):
        """Type ``text`` (following the Generation pane is turned off)."""
        self.follow.setChecked(False)
        self.text.setPlainText(text)

    def _model_changed(self):
        cfg = self.model.config
        n = sum(p.numel() for p in self.model.parameters())
        size = f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"
        name = f"{self.model_name} · " if self.model_name else ""
        self.model_info.setText(f"{name}{size} parameters · {cfg.n_layer} layers × {cfg.n_head} heads · "
                                f"{cfg.pos} positions · vocabulary {self.tokenizer.n_vocab} · context "
                                f"{cfg.block_size}")
        self.layer.blockSignals(True)
        self.layer.setMaximum(cfg.n_layer)
        self.layer.setValue(min(self.layer.value(), cfg.n_layer))
        self.layer.blockSignals(False)
        self.head.blockSignals(True)
        self.head.setMaximum(cfg.n_head - 1)
        self.head.setValue(min(self.head.value(), cfg.n_head - 1))
        self.head.blockSignals(False)
        self._embeddings_for = None
        model, tokenizer = self.model, self.tokenizer

        def labels(job):
            from app.generation.model_source import vocabulary_labels
            return model, vocabulary_labels(tokenizer, model.config.vocab_size)

        self.runner.submit("labels", labels, self._on_labels)

    def _on_labels(self, result):
        if isinstance(result, JobFailed):
            return self._failed(result)
        model, labels = result
        if model is self.model:
            self.vocab_labels = labels
            if self.views.currentWidget() is self.embeddings:
                self._load_embeddings()

    def _show_generation_text(self):
        self.text.blockSignals(True)
        self.text.setPlainText(self.tokenizer.decode(self.generation_ids) if self.generation_ids else "")
        self.text.blockSignals(False)

    def _on_follow_toggled(self, on: bool):
        self.text.setReadOnly(on)
        if on and self.model is not None:
            self._show_generation_text()
            self.refresh()

    def _on_text_edited(self):
        if not self.follow.isChecked():
            self._typing.start()

    # ---- analysis --------------------------------------------------------------------------------------------------
    def refresh(self):
        """Analyse the current text with the current model (in the worker)."""
        self._typing.stop()
        if self.model is None:
            return
        if not self.isVisible():  # a hidden pane costs nothing while Generation runs: it catches up when shown
            self._stale = True
            return
        self._stale = False
        if self.follow.isChecked():
            ids = list(self.generation_ids)
        else:
            try:
                ids = self.tokenizer.encode(self.text.toPlainText())
            except ValueError as e:
                self.status.setText(f"<span style='color:#d04040'>This text cannot be encoded: {e}</span>")
                return
        if len(ids) < 1:
            self.status.setText("Type some text (or step in the Generation pane) to see inside the model.")
            return
        model, tokenizer, layer = self.model, self.tokenizer, self.layer.value() - 1
        follow_newest = self.result is None or self.position in (-1, self.result.n - 1)
        wanted = self.position
        label = an.label_source(self.vocab_labels, tokenizer)
        lut = self.attention.lut

        def job(job):
            started = time.perf_counter()
            result = an.analyse(model, tokenizer, ids)
            position = result.n - 1 if follow_newest or wanted >= result.n else wanted
            first = range(max(0, position + 1 - an.LENS_FIRST), position + 1)  # what the lens shows first
            return (model, result, position, an.attention_of(result, layer, lut), an.lens_headers(result),
                    an.lens_chunk(result, first, label), an.head_of(result, position),
                    time.perf_counter() - started)

        self.status.setText(f"<span style='color:{hint_color(self)}'>Reading {len(ids)} tokens…</span>")
        self.runner.cancel("attention")
        self.runner.cancel("position")
        self.runner.cancel("lens")
        self.runner.submit("analyse", job, self._on_analysed)

    def _on_analysed(self, result):
        if isinstance(result, JobFailed):
            return self._failed(result)
        model, a, position, layer_attention, headers, lens, head, compute_s = result
        if model is not self.model:
            return
        old, self.result, self.position = self.result, a, position
        if old is not None:  # its pass (70 MB for GPT-2 at 1024 tokens) is freed in the worker, not on this thread
            retired = self._retired
            retired.append(old)
            self.runner.submit("release", lambda job: [retired.pop().release() for _ in range(len(retired))])
        # shown in steps, one per event-loop turn (and the text a piece per turn), so that no turn holds the UI
        # thread for long: repaints and input get in between
        self._fill.run([lambda: self._show_scores(a), self.tokens.insert_more,
                        lambda: self._show_attention(a, layer_attention),
                        lambda: self._show_lens(a, headers, lens), lambda: self._show_head(head)], self._on_filled,
                       compute_s=compute_s)

    def _on_filled(self, timings: dict):
        self.last_timings = timings
        self.sig_filled.emit()
        self._next_lens()

    def _show_scores(self, a):
        note = a.window_note()
        self.status.setText(
            f"{a.n} tokens · mean loss {a.mean_loss:.3f} nats per token · perplexity {a.perplexity:.1f} · "
            f"{a.bits_per_char:.2f} bits per character"
            + (f"<br><span style='color:{hint_color(self)}'>Note: {note}</span>" if note else "")
            if a.n > 1 else "One token: nothing to score yet (a position predicts the token after it).")
        self.tokens.begin(a.shown, a.spans, a.probs, a.buckets, selected=self.position)

    def _show_attention(self, a, layer_attention):
        if layer_attention.layer == self.layer.value() - 1:
            self.attention.set_maps(layer_attention, a.labels)
        else:  # the layer was changed while this pass ran: fetch the one now chosen
            self._on_layer(self.layer.value())
        self.attention.mark_row(self.position)

    def _show_lens(self, a, headers, lens):
        self.lens.reset(a.n_layer, headers, a.labels)
        self.lens.add(lens)
        self.lens.show_position(self.position)

    def _show_head(self, head):
        if head.position == self.position:  # else the position chosen meanwhile has its own job
            self._show_position(head)

    def _show_position(self, head):
        a, p = self.result, self.position
        self.attention.mark_row(p)
        newest = p == a.n - 1
        self.row_note.setText(f"marked row: position {p} {a.labels[p]!r}" + (" (the newest token)" if newest else ""))
        self.lens.show_position(p)
        self.head_view.set_head(head, self.vocab_label, a.labels[p])
        if self.views.currentWidget() is self.embeddings:
            self.choose_token(a.ids[p])

    def choose_position(self, t: int):
        """Show position ``t`` of the current text in the attention row, the lens and the head."""
        if self.result is None or not 0 <= t < self.result.n:
            return
        self.position = t
        self.tokens.select(t)
        self.attention.mark_row(t)
        a = self.result

        self.lens.show_position(t)

        def job(job):
            return a, t, an.head_of(a, t)

        self.runner.submit("position", job, self._on_position)

    def _on_position(self, result):
        if isinstance(result, JobFailed):
            return self._failed(result)
        a, t, head = result
        if a is self.result and t == self.position:
            self._show_position(head)

    # ---- the logit lens, a slice of positions per job ---------------------------------------------------------------
    def _next_lens(self):
        """Compute the next slice of the lens (the positions in view first) while its tab is shown."""
        a = self.result
        if a is None or self._lens_in_flight is a or not self.isVisible() or self.views.currentWidget() is not \
                self.lens or self._fill.pending:  # (the lens shows the previous text until its step: _on_filled)
            return
        positions = an.next_lens_positions(self.lens.model.done, self.position, self.lens.visible_positions())
        if not positions:
            self.sig_lens_complete.emit()
            return
        label = an.label_source(self.vocab_labels, self.tokenizer)
        self._lens_in_flight = a

        def job(job):
            return a, an.lens_chunk(a, positions, label)

        self.runner.submit("lens", job, self._on_lens)

    def _on_lens(self, result):
        self._lens_in_flight = None
        if isinstance(result, JobFailed):
            return self._failed(result)
        a, chunk = result
        if a is self.result:
            self.lens.add(chunk)
            self._next_lens()

    def _on_layer(self, value: int):
        if self.result is None:
            return
        a, layer, lut = self.result, value - 1, self.attention.lut

        def job(job):
            return a, an.attention_of(a, layer, lut)

        self.runner.submit("attention", job, self._on_attention)

    def _on_attention(self, result):
        if isinstance(result, JobFailed):
            return self._failed(result)
        a, layer = result
        if a is self.result:
            self.attention.set_maps(layer, a.labels)

    def _on_head(self, value: int):
        self.attention.choose_head(value)

    def _on_mode(self, index: int):
        self.tokens.set_mode(MODES[index])
        self.legend.set_mode(MODES[index])

    # ---- embeddings ----------------------------------------------------------------------------------------------
    def _on_view_changed(self, index: int):
        if self.views.widget(index) is self.embeddings:
            self._load_embeddings()
        elif self.views.widget(index) is self.lens:
            self._next_lens()

    def _load_embeddings(self):
        if self.model is None or not self.vocab_labels or self._embeddings_for is self.model:
            return
        model, n_valid = self.model, min(self.tokenizer.n_vocab, self.model.config.vocab_size)
        self._embeddings_for = model

        def job(job):
            return model, an.embeddings_of(model, n_valid)

        self.runner.submit("embeddings", job, self._on_embeddings)

    def _on_embeddings(self, result):
        if isinstance(result, JobFailed):
            self._embeddings_for = None
            return self._failed(result)
        model, emb = result
        if model is self.model:
            self.embeddings.set_embeddings(emb, self.vocab_labels[:len(emb.coords)])
            token = self.result.ids[self.position] if self.result is not None else 0
            self.choose_token(token)

    def choose_token(self, token_id: int):
        """Show the nearest neighbours of ``token_id`` in the embedding table."""
        if self.model is None:
            return
        model, n_valid = self.model, min(self.tokenizer.n_vocab, self.model.config.vocab_size)
        if not 0 <= token_id < n_valid:
            return

        def job(job):
            return model, token_id, an.neighbours_of(model, token_id, n_valid)

        self.runner.submit("neighbours", job, self._on_neighbours)

    def _on_neighbours(self, result):
        if isinstance(result, JobFailed):
            return self._failed(result)
        model, token_id, near = result
        if model is self.model:
            self.embeddings.set_neighbours(token_id, near)

    # ---- text for people -----------------------------------------------------------------------------------------
    def vocab_label(self, i: int) -> str:
        if 0 <= i < len(self.vocab_labels) and self.vocab_labels[i] is not None:
            return self.vocab_labels[i]
        from engine.tokenizers.text import render_bytes
        try:
            return render_bytes(self.tokenizer.token_bytes(i), whitespace="chips")
        except ValueError:
            return f"<id {i}>"

    def token_tooltip(self, t: int) -> str:
        a = self.result
        if a is None or t >= a.n:
            return ""
        lines = [f"position {t}: {a.labels[t]!r} (id {a.ids[t]})"]
        if t == 0:
            lines.append("the first token: nothing before it, so nothing predicted it")
        else:
            lines.append(f"p = {a.probs[t - 1]:.4f}, loss {a.losses[t - 1]:.3f} nats, rank {a.ranks[t - 1]}")
            lines.append(f"position {t - 1} guessed:")
            lines += [f"   {p:6.1%}  {self.vocab_label(i)!r}" for i, p in a.top[t - 1]]
        return "\n".join(lines)

    def _failed(self, failure: JobFailed):
        self.status.setText(f"<span style='color:#d04040'>{failure.message}</span>")
        if not failure.expected and self.reporter is not None:
            self.reporter.report_message(f"Inside: {type(failure.exc).__name__}: {failure.message}",
                                         failure.traceback)

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._stale:
            QTimer.singleShot(0, self.refresh)
        else:
            QTimer.singleShot(0, self._next_lens)

    # ---- pane protocol -------------------------------------------------------------------------------------------
    def save_settings(self, s):
        s.setValue("follow", self.follow.isChecked())
        s.setValue("text", self.text.toPlainText() if not self.follow.isChecked() else s.value("text", ""))
        s.setValue("mode", self.mode.currentIndex())
        s.setValue("view", self.views.currentIndex())
        s.setValue("layer", self.layer.value())

    def restore_settings(self, s):
        follow = read(s, "follow", True)
        self.follow.setChecked(bool(follow))
        if not follow:
            self.text.blockSignals(True)
            self.text.setPlainText(str(s.value("text", "") or ""))
            self.text.blockSignals(False)
        self.mode.setCurrentIndex(min(max(read(s, "mode", 0), 0), len(MODES) - 1))
        self.views.setCurrentIndex(min(max(read(s, "view", 0), 0), len(VIEWS) - 1))
        self.layer.setValue(max(1, read(s, "layer", 1)))

    def confirm_close(self) -> bool:
        return True

    def shutdown(self):
        self._typing.stop()
        self._fill.stop()
        self.runner.close()
