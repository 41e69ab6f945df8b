"""Search the whole vocabulary for a token to force next: a line edit whose completer lists matching tokens.

Matching is a plain substring scan over the visible labels of all ids (about 15 ms for o200k's 200k tokens), run
after a short pause in typing; at most ``LIMIT`` matches are listed, exact ones first, then prefixes.

    >>> find(["a", "␣the", "the", "then"], "the")
    [2, 3, 1]
"""

from collections.abc import Sequence

from PySide6.QtCore import QStringListModel, QTimer, Signal
from PySide6.QtWidgets import QCompleter, QLineEdit

from engine.tokenizers.text import render_bytes

LIMIT = 100
DEBOUNCE_MS = 120


def find(labels: Sequence[str | None], query: str, limit: int = LIMIT) -> list[int]:
    """Ids whose label contains ``query`` (typed text; a space matches the visible ␣): exact, prefix, then others.

    ``#123`` finds id 123.
    """
    if not query:
        return []
    if query.startswith("#") and query[1:].isdigit():
        i = int(query[1:])
        return [i] if 0 <= i < len(labels) and labels[i] is not None else []
    needles = {query, render_bytes(query.encode("utf-8", "surrogatepass"), whitespace="chips")}
    exact, prefix, inside = [], [], []
    for i, label in enumerate(labels):
        if label is None:
            continue
        for needle in needles:
            if needle in label:
                if label == needle:
                    exact.append(i)
                elif label.startswith(needle):
                    prefix.append(i)
                else:
                    inside.append(i)
                break
        if len(exact) + len(prefix) >= limit:
            break
    prefix.sort(key=lambda i: len(labels[i]))
    inside.sort(key=lambda i: len(labels[i]))
    return (exact + prefix + inside)[:limit]


def entry(label: str, token_id: int) -> str:
    """How a match is listed: the label, then its id (the id is what choosing it reads back)."""
    return f"{label}    #{token_id}"


class VocabularySearch(QLineEdit):
    sig_token_chosen = Signal(int)
    """The user picked a token id from the search."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.labels: list[str | None] = []
        self.setPlaceholderText("Force a token: search the vocabulary (text or #id)…")
        self.setToolTip("Type part of a token (a space matches ␣) or #id, then pick one: it becomes the next token.\n"
                        "You can also click a bar of the chart.")
        self.setClearButtonEnabled(True)
        self._model = QStringListModel(self)
        self._completer = QCompleter(self._model, self)
        self._completer.setCompletionMode(QCompleter.CompletionMode.UnfilteredPopupCompletion)
        self._completer.setMaxVisibleItems(12)
        self._completer.activated[str].connect(self._on_activated)
        self.setCompleter(self._completer)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)
        self.textEdited.connect(lambda _: self._timer.start())
        self.returnPressed.connect(self._on_return)
        self.matches: list[int] = []
        self._activated = ""

    def set_vocabulary(self, labels: list[str | None]):
        self.labels = labels
        self.clear()
        self._model.setStringList([])
        self.matches = []

    def refresh(self):
        """Recompute the matches for the current text and open the list."""
        self._timer.stop()
        self.matches = find(self.labels, self.text())
        self._model.setStringList([entry(self.labels[i], i) for i in self.matches])
        if self.matches and self.hasFocus():
            self._completer.complete()

    def _on_activated(self, text: str):
        head, sep, tail = text.rpartition("#")
        if sep and tail.isdigit():
            self._activated = text
            self._choose(int(tail))

    def _on_return(self):
        popup = self._completer.popup()
        if popup.isVisible() and popup.currentIndex().isValid():
            return  # the completer activates the highlighted entry itself
        if self.text() == self._activated:
            return  # Enter on the list both activated an entry and reached the line edit
        popup.hide()
        self.refresh()
        if self.matches:
            popup.hide()
            self._choose(self.matches[0])

    def _choose(self, token_id: int):
        QTimer.singleShot(0, self.clear)  # after the completer has written its text into the line edit
        self.sig_token_chosen.emit(token_id)

    def shutdown(self):
        self._timer.stop()
        self._completer.popup().hide()
