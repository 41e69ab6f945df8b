"""Decode mode: the user pastes token ids; the panel shows the text they make and names any bad ids."""

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget


class DecodePanel(QWidget):
    """An ids editor, a message line for bad ids, and the decoded text (read-only)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.ids_edit = QPlainTextEdit()
        self.ids_edit.setFont(mono)
        self.ids_edit.setPlaceholderText("Paste token ids: 15496, 995  or  [15496, 995]  or one per line")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00020;")
        self.message.hide()
        self.decoded = QPlainTextEdit()
        self.decoded.setReadOnly(True)
        self.decoded.setPlaceholderText("The decoded text appears here.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.ids_edit, 2)
        layout.addWidget(self.message)
        layout.addWidget(QLabel("Decoded text:"))
        layout.addWidget(self.decoded, 1)

    def show_result(self, text: str, problem: str) -> None:
        self.decoded.setPlainText(text)
        self.message.setText(f"Skipped bad ids — {problem}" if problem else "")
        self.message.setVisible(bool(problem))
