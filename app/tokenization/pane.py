"""The Tokenization pane: type text and see exactly how an encoding splits it, compare encodings, decode ids,
train your own BPE.

Wiring only; the pieces live beside this file: ``analysis`` (pure: counts, spans, labels, id parsing), ``jobs``
(what runs off the UI thread, on ``app.jobs.JobRunner``), ``encodings`` and ``encoding_picker`` (the tokenizers
offered), ``token_view`` (the painted token and id views), ``inspector``, ``compare``,
``decode_panel`` and ``bpe_panel``.

Every edit restarts a short debounce timer; then the text is tokenized in a worker thread. A newer edit makes the
older job stale, so its result is dropped and the views only ever show the latest text.
"""


from html import escape

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QSizePolicy, QSplitter, QTabWidget, QToolButton,
                               QVBoxLayout, QWidget)

from app.jobs import JobFailed, JobRunner
from app.paths import read_state, write_state
from app.settings import read
from app.tokenization.analysis import (Analysis, follow_token, plural, token_styles, token_tooltip,
                                       write_token_table)
from app.tokenization.bpe_panel import BPEPanel
from app.tokenization.compare import DECODE_HEADING, TEXT_HEADING, ComparePanel
from app.tokenization.decode_panel import DecodePanel
from app.tokenization.editor import PieceEdit
from app.tokenization.encoding_picker import EncodingPicker
from app.tokenization.encodings import Encoding, model_encodings
from app.tokenization.inspector import Inspector
from app.tokenization.jobs import compare_job, decode_job, encode_job
from app.tokenization.token_view import TokenView, marked_characters, titled
from app.theme import error_color, hint_color

DEBOUNCE_MS = 150
BUSY_NOTE_MS = 300  # "tokenizing…" appears only if a job takes longer than this
# A result of more tokens is drawn in two turns of the event loop (the token view, then the ids view and the rest, on
# a timer: input and painting get in between): both 10 000-token layouts in one go stalled the window (issue 10)
STAGED_TOKENS = 2_000
TEXT_STATE = "tokenization.txt"
IDS_STATE = "tokenization-ids.txt"
DEFAULT_COMPARE = ("gpt2", "cl100k_base", "o200k_base")
SAMPLE_TEXT = (
    "Tokenizers turn text into integers. Hover a token to see its id; click it to inspect.\n"
    "def greet(name: str) -> str:\n"
    "    return f\"Hello, {name}!\"  # 4 spaces, one token?\n"
    "Emoji split into bytes: 🤗 👩‍💻  Café, naïve, 1234567.89\n"
    "日本語のテキストもトークンに分割されます。\n"
)
TEXT_TAB, DECODE_TAB = 0, 1
INSPECTOR_TAB, COMPARE_TAB, BPE_TAB = 0, 1, 2


class TokenizationPane(QWidget):
    title = "Tokenization"

    sig_tokenizer_saved = Signal(str)
    """Path of a tokenizer trained in the BPE panel and saved (the Training pane lists it)."""

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.analysis: Analysis | None = None  # what the views show
        self.tokenizer = None  # the tokenizer that made self.analysis
        self._compare_results: list = []
        self._compare_dirty = True
        self._text_dirty = False  # typed since the last write_state
        self._ids_dirty = False
        self._edits = 0  # counts editor changes: a result is "current" if no edit happened since its job started
        self._shown_edits = -1  # self._edits when the job behind self.analysis started
        self._selection = None  # (the selected TokenSpan, the bytes its range indexes): followed across edits

        self._runner = JobRunner(self, torch_threads=None)  # tokenizers only: no torch to set up
        self._runner.sig_done.connect(self._on_job_done)
        # its own thread: scanning the cache imports torch, which takes seconds
        self._listing = JobRunner(self, torch_threads=None)
        self._listing.sig_done.connect(self._on_job_done)
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self._on_debounce)
        self._busy_note = QTimer(self, singleShot=True, interval=BUSY_NOTE_MS, timeout=self._on_busy_note)
        self._render_rest = QTimer(self, singleShot=True, interval=0, timeout=self._render_ids)

        self._build()
        self.compare.set_encodings(self.encodings(), checked=list(DEFAULT_COMPARE))
        self._connect()
        self.render()
        self.rescan_models()

    # ---- construction ------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.encoding = EncodingPicker()
        self.show_whitespace = QCheckBox("Show whitespace")
        self.show_whitespace.setChecked(True)
        self.show_whitespace.setToolTip("Spaces as ␣, newlines as ↵, tabs as →")
        self.allow_special = QCheckBox("Allow special tokens")
        self.allow_special.setToolTip("Off: text like <|endoftext|> is split as ordinary text.\n"
                                      "On: it becomes the special token's id.")
        self.counts = QLabel()
        self.counts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Encoding"))
        bar.addWidget(self.encoding)
        bar.addSpacing(12)
        bar.addWidget(self.show_whitespace)
        bar.addWidget(self.allow_special)
        bar.addStretch(1)
        bar.addWidget(self.counts)

        self.editor = PieceEdit()  # a pasted megabyte goes in a piece per event-loop turn
        self.editor.setPlaceholderText("Type or paste text here…")
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.decode = DecodePanel()
        self.input_tabs = QTabWidget()
        self.input_tabs.addTab(self.editor, "Text")
        self.input_tabs.addTab(self.decode, "Decode ids")

        self.token_view = TokenView()
        self.token_view.set_placeholder("The tokens of your text appear here, one colour per token.")
        self.token_view.tooltip_for = self.token_tooltip
        self.ids_view = TokenView(gap=5.0, font_delta=0.0)
        self.ids_view.set_placeholder("Token ids")
        self.ids_view.tooltip_for = self.token_tooltip

        self.left = QSplitter(Qt.Orientation.Vertical)
        self.left.addWidget(self.input_tabs)
        hint = "hover: its id lights up · click: inspect · ←/→: step"
        self.left.addWidget(titled("Tokens", self.token_view, hint))
        self.copy_ids_button = QToolButton()
        self.copy_ids_button.setText("Copy ids")
        self.copy_ids_button.setToolTip("Copy every id of the text as a list: [15496, 995]")
        self.copy_ids_button.setAutoRaise(True)
        self.left.addWidget(titled("Token ids", self.ids_view, "hover: its token lights up", self.copy_ids_button))
        self.left.setSizes([210, 360, 170])

        self.inspector = Inspector()
        self.compare = ComparePanel()
        self.bpe = BPEPanel(reporter=self.reporter)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.inspector, "Inspector")
        self.side_tabs.addTab(self.compare, "Compare")
        self.side_tabs.addTab(self.bpe, "Train BPE")

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.addWidget(self.left)
        self.main_split.addWidget(self.side_tabs)
        self.main_split.setSizes([780, 480])

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)  # _set_status escapes: '<abc>' in a message stays visible
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 4)
        layout.addLayout(bar)
        layout.addWidget(self.main_split, 1)
        layout.addWidget(self.status)
        # The window's scroll area sizes the pane by its preferred height (the status line wraps, so the layout has
        # height-for-width), and the splitters' preferred heights add up to more than the window: the status line ended
        # up below the window's edge. Ignored: the splitter takes whatever height is left, and keeps its minimum.
        self._fit_minimum_height()
        self.main_split.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)

    def _connect(self) -> None:
        self.editor.textChanged.connect(self._on_text_edited)
        self.decode.ids_edit.textChanged.connect(self._on_ids_edited)
        for edit in (self.editor, self.decode.ids_edit):
            edit.sig_insert_progress.connect(self._on_insert_progress)
        self.input_tabs.currentChanged.connect(self._on_input_tab)
        self.encoding.sig_picked.connect(lambda _key: self.refresh())
        self.encoding.sig_folder_refused.connect(lambda message: self._set_status(message, error=True))
        self.allow_special.toggled.connect(lambda _on: self.refresh())
        self.show_whitespace.toggled.connect(self._on_whitespace_toggled)
        self.side_tabs.currentChanged.connect(self._on_side_tab)
        self.compare.sig_selection_changed.connect(self._on_compare_selection)
        self.token_view.sig_hovered.connect(self.ids_view.set_highlight)
        self.ids_view.sig_hovered.connect(self.token_view.set_highlight)
        self.token_view.sig_clicked.connect(self.select_token)
        self.ids_view.sig_clicked.connect(self.select_token)
        self.bpe.sig_trained.connect(self._on_tokenizer_trained)
        self.copy_ids_button.clicked.connect(self.copy_ids)

    # ---- encodings -------------------------------------------------------------------------------------------------
    def encodings(self) -> list[Encoding]:
        """What the pane offers: the built-in encodings, your tokenizers, then the models' (cache, opened folders)."""
        return self.encoding.encodings()

    def refresh_encodings(self) -> None:
        """Re-read the saved tokenizers into the selector (and the comparison), keeping the current choice."""
        current = self.encoding_key()
        self.encoding.refresh()
        self.compare.set_encodings(self.encodings())
        if self.encoding_key() != current and current is not None:
            self.refresh()

    def rescan_models(self) -> None:
        """List the tokenizers of the models in the Hugging Face cache again, in a worker thread."""
        self._listing.submit("models", lambda job: model_encodings())

    def open_model_folder(self, path: str) -> bool:
        """Offer the tokenizer of a model folder and select it; False (and a message) if the folder has none."""
        if not self.encoding.open_folder(path):
            return False
        self.compare.set_encodings(self.encodings())
        return True

    def encoding_key(self) -> str | None:
        return self.encoding.key()

    def set_encoding(self, key: str) -> bool:
        """Select an encoding by name or saved path; False if it is not offered."""
        return self.encoding.select(key)

    # ---- text --------------------------------------------------------------------------------------------------------
    def text(self) -> str:
        """The editor's text exactly: no-break spaces kept (toPlainText would turn them into spaces)."""
        return self.editor.document().toRawText().replace("\u2029", "\n")

    def set_text(self, text: str) -> None:
        self.editor.setPlainText(text)

    @property
    def decode_mode(self) -> bool:
        return self.input_tabs.currentIndex() == DECODE_TAB

    def _on_text_edited(self) -> None:
        self._edits += 1
        self._text_dirty = True
        self._compare_dirty = True
        if not self.decode_mode and not self.editor.inserting:
            self._debounce.start()

    def _on_insert_progress(self, done: int, total: int) -> None:
        if done < total:
            self.status.setText(f"<span style='color:{hint_color(self)}'>pasting… {100 * done // total} %</span>")
        else:
            self.refresh()  # the last piece is in

    def _on_input_tab(self, _index: int) -> None:
        self.compare.heading.setText(DECODE_HEADING if self.decode_mode else TEXT_HEADING)
        self._fit_minimum_height()
        self.refresh()

    def _fit_minimum_height(self) -> None:
        """The splitter's size policy ignores its minimum size hint (see _build), so keep it as an explicit minimum."""
        self.main_split.setMinimumHeight(0)
        self.main_split.setMinimumHeight(self.main_split.minimumSizeHint().height())

    def _on_ids_edited(self) -> None:
        self._ids_dirty = True
        if self.decode_mode and not self.decode.ids_edit.inserting:
            self._debounce.start()

    # ---- jobs --------------------------------------------------------------------------------------------------------
    def _on_debounce(self) -> None:
        # a paste going in a piece at a time refreshes at its last piece: not for a part of it (a second stall)
        if not (self.decode.ids_edit if self.decode_mode else self.editor).inserting:
            self.refresh()

    def refresh(self) -> None:
        """Tokenize (or decode) the current input now, in a worker thread."""
        self._debounce.stop()
        key = self.encoding_key()
        if key is None:
            return
        allowed = "all" if self.allow_special.isChecked() else ()
        show_ws = self.show_whitespace.isChecked()
        if self.decode_mode:
            ids_text = self.decode.ids_edit.toPlainText()
            self._runner.submit("main", lambda job: (-1, decode_job(key, ids_text, job.is_stale, show_ws)))
        else:
            text, edits = self.text(), self._edits
            self._runner.submit("main", lambda job: (edits, encode_job(key, text, allowed, job.is_stale, show_ws)))
            self._compare_dirty = True
            if self.side_tabs.currentIndex() == COMPARE_TAB:
                self.refresh_compare(text)
        self._busy_note.start()

    def refresh_compare(self, text: str | None = None) -> None:
        """Count the text with every checked encoding, in a worker thread."""
        self._compare_dirty = False
        keys = self.compare.checked()
        names = {e.key: e.name for e in self.encodings()}
        entries = [(names.get(key, key), key) for key in keys]
        text = self.text() if text is None else text
        allowed = "all" if self.allow_special.isChecked() else ()
        self.compare.show_busy()
        self._runner.submit("compare", lambda job: compare_job(entries, text, allowed, job.is_stale))

    def _on_busy_note(self) -> None:
        if self._runner.busy_with("main"):
            self.status.setText(f"<span style='color:{hint_color(self)}'>tokenizing…</span>")

    def _on_job_done(self, kind: str, result) -> None:
        if kind == "models":
            if isinstance(result, JobFailed):  # model_encodings never raises: this is a bug
                self._report(result, "Listing the Hugging Face cache failed")
                return
            current = self.encoding_key()
            self.encoding.set_models(result)
            self.compare.set_encodings(self.encodings())
            if self.encoding_key() != current:
                self.refresh()
            return
        if kind == "compare":
            if isinstance(result, JobFailed):
                self._report(result, "Comparison failed")
                result = []
            self._compare_results = result
            self.compare.show_results(result, self.show_whitespace.isChecked())
            return
        self._busy_note.stop()
        if isinstance(result, JobFailed):
            self.analysis, self.tokenizer = None, None
            self.render()
            self._set_status(f"Could not {'decode' if self.decode_mode else 'tokenize'} with "
                             f"{self.encoding.currentText()}: {result.message}", error=True)
            self._report(result, "Tokenization failed")
            return
        self._shown_edits, result = result
        if result is None:
            return  # went stale while running
        self.tokenizer, self.analysis, decoded = result
        if decoded is not None:
            self.decode.show_result_soon(*decoded, self.analysis.bad_ids)  # after the views: not in one stall
        self.render(staged=len(self.analysis.spans) > STAGED_TOKENS)

    def _report(self, failure: JobFailed, what: str) -> None:
        if not failure.expected and self.reporter is not None:
            self.reporter.report_message(f"{what}: {failure.message}", failure.traceback)

    # ---- drawing -----------------------------------------------------------------------------------------------------
    def render(self, *, staged: bool = False) -> None:
        """Push self.analysis into the views, the counts and the status line; ``staged``: the ids view and the rest
        on the next turn of the event loop (a long result, see STAGED_TOKENS)."""
        a = self.analysis
        self._render_rest.stop()
        if a is None:
            self.token_view.set_tokens([])
            self.ids_view.set_tokens([])
            self.counts.setText("")
            self.inspector.clear()
            return
        self.token_view.set_tokens(a.labels_for(self.show_whitespace.isChecked()), token_styles(a, self.tokenizer))
        if staged:
            self._render_rest.start()
        else:
            self._render_ids()

    def _render_ids(self) -> None:  # self.analysis is set: render() stops the timer whenever it changes
        a = self.analysis
        self.ids_view.set_tokens([str(s.id) for s in a.spans], token_styles(a, self.tokenizer))
        self.counts.setText(a.counts_html())
        self._set_status(a.notes(self.decode_mode))
        self._follow_selection()

    def _follow_selection(self) -> None:
        """Select again the token the user had selected, wherever the edit moved it; clear if it is gone."""
        index = -1
        if self._selection is not None:
            span, data = self._selection
            index = follow_token(data, self._shown_data(), span, self.analysis.spans)
        if index >= 0:
            self.select_token(index)
        else:
            self._selection = None
            self.inspector.clear()
            self.editor.setExtraSelections([])

    def _shown_data(self) -> bytes:
        """The bytes the shown spans' byte ranges index (decode mode: the ids' bytes, not the U+FFFD text)."""
        a = self.analysis
        return b"".join(s.bytes for s in a.spans) if self.decode_mode else a.text.encode("utf-8", "surrogatepass")

    def copy_ids(self) -> str:
        """Put every id of the text (or of the decoded ids) on the clipboard as a list; returns what was copied."""
        a = self.analysis
        if a is None or not a.n_tokens:
            self._set_status("No ids to copy.")
            return ""
        text = a.ids_text()
        QGuiApplication.clipboard().setText(text)
        self._set_status(f"Copied {a.n_tokens:,} {plural(a.n_tokens, 'id')} as a list.")
        return text

    def export_token_table(self, path: str) -> bool:
        """Write the shown tokens as CSV (see ``write_token_table``; File ▸ Export)."""
        a = self.analysis
        spans = a.spans if a is not None else []
        try:
            write_token_table(path, spans)
        except OSError as err:
            self._set_status(f"Could not write {path}: {err.strerror or err}", error=True)
            return False
        total = a.n_tokens if a is not None else 0
        more = f" (the first {len(spans):,} of {total:,}, as shown)" if len(spans) < total else ""
        self._set_status(f"Wrote {len(spans):,} {plural(len(spans), 'token')}{more} to {path}.")
        return True

    def _set_status(self, text: str, error: bool = False) -> None:
        """Show plain ``text`` (escaped here) in the status line, in red for an error."""
        self.status.setStyleSheet(f"color: {error_color(self)};" if error else "color: palette(window-text);")
        self.status.setText(escape(text))

    def _on_whitespace_toggled(self, _on: bool) -> None:
        self.render()
        if self._compare_results:
            self.compare.show_results(self._compare_results, self.show_whitespace.isChecked())

    def token_tooltip(self, index: int) -> str:
        """The tooltip of token ``index`` in either view ("" for none)."""
        return token_tooltip(self.analysis, index) if self.analysis is not None else ""

    # ---- selection ---------------------------------------------------------------------------------------------------
    def select_token(self, index: int) -> None:
        """Select token ``index`` in both views, show it in the inspector and mark its characters in the editor."""
        a = self.analysis
        if a is None or not 0 <= index < len(a.spans):
            return
        self._selection = (a.spans[index], self._shown_data())
        self.token_view.set_selected(index)
        self.ids_view.set_selected(index)
        self.inspector.show_token(self.tokenizer, a.text, a.spans, index)
        if self.side_tabs.currentIndex() != INSPECTOR_TAB and self.sender() in (self.token_view, self.ids_view):
            self.side_tabs.setCurrentIndex(INSPECTOR_TAB)
        if not self.decode_mode:
            self._mark_characters(a.spans[index])

    def _mark_characters(self, span) -> None:
        if self._shown_edits != self._edits:
            return  # the editor changed since; the next result will re-select
        selection = marked_characters(self.editor, self.analysis.text, span)
        self.editor.setExtraSelections([selection])

    # ---- comparison, training ------------------------------------------------------------------------------------
    def _on_side_tab(self, index: int) -> None:
        if index == COMPARE_TAB and self._compare_dirty:
            self.refresh_compare()

    def _on_compare_selection(self) -> None:
        self._compare_dirty = True
        self._on_side_tab(self.side_tabs.currentIndex())

    def _on_tokenizer_trained(self, path: str) -> None:
        self.refresh_encodings()
        self.set_encoding(path)
        self.sig_tokenizer_saved.emit(path)

    # ---- pane contract -----------------------------------------------------------------------------------------------
    def save_settings(self, s) -> None:
        if self._text_dirty:  # the window autosaves every few seconds: skip 10 MB copies when nothing changed
            write_state(TEXT_STATE, self.text())
            self._text_dirty = False
        if self._ids_dirty:
            write_state(IDS_STATE, self.decode.ids_edit.toPlainText())
            self._ids_dirty = False
        s.setValue("encoding", self.encoding_key() or "")
        s.setValue("show_whitespace", self.show_whitespace.isChecked())
        s.setValue("allow_special", self.allow_special.isChecked())
        s.setValue("compare", "\n".join(self.compare.checked()))  # lines: a folder's path may hold a comma
        s.setValue("model_folders", "\n".join(e.key for e in self.encoding.folders))
        s.setValue("input_tab", self.input_tabs.currentIndex())
        s.setValue("side_tab", self.side_tabs.currentIndex())
        s.setValue("main_split", self.main_split.saveState())
        s.setValue("left_split", self.left.saveState())
        self.bpe.save_settings(s)

    def restore_settings(self, s) -> None:
        self.show_whitespace.setChecked(read(s, "show_whitespace", True))
        self.allow_special.setChecked(read(s, "allow_special", False))
        compare = read(s, "compare", ",".join(DEFAULT_COMPARE))
        encoding = read(s, "encoding", "gpt2")
        self.encoding.restore_folders(read(s, "model_folders", "").split("\n") + [encoding])
        self.compare.set_encodings(self.encodings(), checked=[k for k in compare.replace("\n", ",").split(",") if k])
        if not self.set_encoding(encoding):
            self.set_encoding("gpt2")
        for key, splitter in (("main_split", self.main_split), ("left_split", self.left)):
            state = s.value(key)
            if isinstance(state, QByteArray) and not state.isEmpty():
                splitter.restoreState(state)
        self.side_tabs.setCurrentIndex(read(s, "side_tab", INSPECTOR_TAB))
        self.input_tabs.setCurrentIndex(read(s, "input_tab", TEXT_TAB))
        self.bpe.restore_settings(s)
        self.decode.ids_edit.setPlainText(read_state(IDS_STATE, ""))
        self.set_text(read_state(TEXT_STATE, SAMPLE_TEXT))
        self._text_dirty = self._ids_dirty = False
        self.refresh()

    def confirm_close(self) -> bool:
        return True

    def shutdown(self) -> None:
        self._debounce.stop()
        self._busy_note.stop()
        self._runner.close()
        self._listing.close()
        self.bpe.shutdown()

