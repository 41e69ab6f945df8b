"""The per-token inspector: everything about the clicked token, as selectable text."""

from html import escape

from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from app.tokenization.analysis import character_note
from app.tokentext import hex_bytes, isolated_html, python_repr
from engine.errors import UserError
from engine.tokenizers.text import render_bytes


def token_fields(tokenizer, text: str, spans: list, index: int) -> list[tuple[str, str]]:
    """(field, value) rows describing token ``index`` of ``spans`` (character ranges index ``text``)."""
    span = spans[index]
    try:
        made_by = tokenizer.merge_info(span.id)
    except UserError as exc:  # an id the tokenizer cannot explain: say why in its row; a bug is raised
        made_by = str(exc)
    chars = text[span.char_start : span.char_end]
    partial = character_note(text, span, spans) or "no: whole characters"
    same = [s.index for s in spans if s.id == span.id]
    where = ", ".join(f"#{i}" for i in same[:12]) + (" …" if len(same) > 12 else "")
    return [
        ("Token", f"#{span.index} of {len(spans)} shown"),
        ("Id", str(span.id)),
        ("Shown as", render_bytes(span.bytes, whitespace="chips")),
        ("String", python_repr(span.bytes)),
        ("Bytes", f"{hex_bytes(span.bytes)}  ({len(span.bytes)} byte{'s' if len(span.bytes) != 1 else ''})"),
        ("Made by", made_by),
        ("Characters", f"[{span.char_start}, {span.char_end})  {chars!r}"),
        ("Byte range", f"[{span.byte_start}, {span.byte_end})"),
        ("Partial", partial),
        ("In this text", f"{len(same)}× among the tokens shown ({where})"),
    ]


class Inspector(QWidget):
    """Shows :func:`token_fields` for the selected token; a hint when nothing is selected."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.header = QLabel()
        self.header.setStyleSheet("font-size: 15pt; font-family: monospace; padding: 4px;")
        self.header.setWordWrap(True)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.browser, 1)
        self.clear()

    def clear(self) -> None:
        self.rows: list[tuple[str, str]] = []
        self.header.setText("")
        self.browser.setHtml("<p style='color:gray'>Click a token (or an id) to inspect it. "
                             "Arrow keys move through the tokens.</p>")

    def show_token(self, tokenizer, text: str, spans: list, index: int) -> None:
        rows = self.rows = token_fields(tokenizer, text, spans, index)
        span = spans[index]
        shown = isolated_html(render_bytes(span.bytes, whitespace="chips"))
        self.header.setText(f"{shown}  <span style='color:gray'>→ {span.id}</span>")
        table = "".join(f"<tr><td style='color:#555; padding-right:10px'><b>{escape(k)}</b></td>"
                        f"<td style='font-family:monospace'>{escape(v)}</td></tr>" for k, v in rows)
        self.browser.setHtml(f"<table cellspacing='3'>{table}</table>")

    def text(self) -> str:
        """What is shown, as "field: value" lines."""
        return "\n".join(f"{k}: {v}" for k, v in self.rows)
