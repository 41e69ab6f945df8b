"""Decode mode: the user pastes token ids; the panel shows the text they make and names any bad ids."""

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.theme import error_color, hint_color
from app.tokenization.editor import PieceEdit, break_long_lines


SHOWN_CHARS = 50_000  # the decoded text shows at most this much


class DecodePanel(QWidget):
    """An ids editor, a message line for bad ids, and the decoded text (read-only)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.ids_edit = PieceEdit(prepare=break_long_lines)  # 300 000 pasted ids go in without a freeze
        self.ids_edit.setFont(mono)
        self.ids_edit.setPlaceholderText("Paste token ids: 15496, 995  or  [15496, 995]  or one per line")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.PlainText)  # bad ids are shown as typed, '<abc>' included
        self.message.setStyleSheet(f"color: {error_color(self)};")
        self.message.hide()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f"color: {hint_color(self)};")  # a fixed grey vanished on a dark window
        self.note.hide()
        self.decoded = PieceEdit()
        self.decoded.setReadOnly(True)
        self.decoded.setPlaceholderText("The decoded text appears here.")
        self.text = ""  # the whole decoded text (the view shows its start)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.ids_edit, 2)
        layout.addWidget(self.message)
        layout.addWidget(QLabel("Decoded text:"))
        layout.addWidget(self.decoded, 1)
        layout.addWidget(self.note)
        # show_result_soon: the decoded text is laid out on a later turn of the event loop than the token views
        # (a timer, which lets input and painting in first; a posted call could run in the same pass): the two
        # layouts together were one stall of the window after 300 000 ids were pasted (issue 10)
        self._pending: tuple | None = None
        self._show_pending = QTimer(self)
        self._show_pending.setSingleShot(True)
        self._show_pending.setInterval(0)
        self._show_pending.timeout.connect(self._on_show_pending)

    def show_result_soon(self, text: str, n_broken: int, problem: str) -> None:
        """:meth:`show_result` on the next turn of the event loop (a later call replaces a pending one)."""
        self._pending = (text, n_broken, problem)
        self._show_pending.start()

    def _on_show_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.show_result(*pending)

    def show_result(self, text: str, n_broken: int, problem: str) -> None:
        """text: the decoded text; n_broken: byte sequences in it that are not whole UTF-8 characters (each shown as
        U+FFFD); problem: what was wrong with the ids ("" if nothing)."""
        self.text = text
        shown = text[:SHOWN_CHARS]  # Qt lays out a line whole: a megabyte of decoded text in one line froze the UI
        self.decoded.set_text_in_pieces(shown)
        self.message.setText(f"Skipped bad ids — {problem}" if problem else "")
        self.message.setVisible(bool(problem))
        what = "sequence that is" if n_broken == 1 else "sequences that are"
        self.note.setText(f"� marks {n_broken} byte {what} not a whole UTF-8 character (a character split across "
                          "ids with a piece missing, or ids that end inside one): the Tokens view shows the bytes "
                          "in hex." if n_broken else "")
        if len(shown) < len(text):
            self.note.setText(f"Showing the first {len(shown):,} of {len(text):,} characters (Copy ids copies every "
                              f"id). " + self.note.text())
        self.note.setVisible(bool(self.note.text()))
