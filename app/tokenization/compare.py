"""Several encodings over the same text, side by side: counts in a table and the start of each split in colour."""

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHeaderView, QLabel, QListWidget, QListWidgetItem,
                               QScrollArea, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.tokenization.analysis import label
from app.tokenization.token_view import PASTELS

STRIP_TOKENS = 80  # tokens drawn per encoding in the compact split
TEXT_HEADING = "Compare encodings on the same text:"
DECODE_HEADING = "Compare encodings on the text of the Text tab (not the decoded ids):"
COLUMNS = ("Encoding", "Tokens", "Bytes/token", "Chars/token", "vs best")


def split_html(analysis, show_whitespace: bool = True) -> str:
    """The first tokens of an analysis as HTML with pastel backgrounds (a compact version of the main view)."""
    parts = []
    for span in analysis.spans[:STRIP_TOKENS]:
        text = escape(label(span.bytes, show_whitespace).replace("\n", ""))
        style = "color:#a0213a;" if span.partial else ""
        # a zero-width space between tokens lets the label wrap (visible whitespace leaves no other break)
        parts.append(f"<span style='background:{PASTELS[span.index % len(PASTELS)]};{style}'>{text}</span>\u200b")
    if analysis.n_tokens > len(parts):
        parts.append(f" <span style='color:gray'>… +{analysis.n_tokens - len(parts)}</span>")
    return "<span style='font-family:monospace; white-space:pre-wrap'>" + "".join(parts) + "</span>"


class ComparePanel(QWidget):
    """Pick encodings with checkboxes; the pane fills the table with :meth:`show_results`."""

    sig_selection_changed = Signal()
    """The set of checked encodings changed."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choices = QListWidget()
        self.choices.setFlow(QListWidget.Flow.LeftToRight)
        self.choices.setWrapping(True)
        self.choices.setMaximumHeight(52)
        self.choices.setFrameShape(QFrame.Shape.NoFrame)
        self.choices.itemChanged.connect(self._on_item_changed)
        self._wanted: set[str] = set()  # keys to check once offered

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            self.table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.strips = QWidget()
        self.strips_layout = QVBoxLayout(self.strips)
        self.strips_layout.setContentsMargins(0, 0, 0, 0)
        self.strips_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.strips)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.heading = QLabel(TEXT_HEADING)
        layout.addWidget(self.heading)
        layout.addWidget(self.choices)
        layout.addWidget(self.table)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("The start of each split:"))
        layout.addWidget(scroll, 1)
        self._fit_table()

    # ---- the encodings offered ----------------------------------------------------------------------------------
    def set_encodings(self, entries: list, checked: list[str] | None = None) -> None:
        """entries: the pane's Encodings (name, key, tip). Keeps the current checks unless ``checked`` is given; a
        checked key not offered yet (a model the cache listing has not reached) is checked when it appears."""
        if checked is not None:
            self._wanted = set(checked)
        keep = self._wanted | set(self.checked() if checked is None else checked)
        self.choices.blockSignals(True)
        self.choices.clear()
        for entry in entries:
            item = QListWidgetItem(entry.name)
            item.setData(Qt.ItemDataRole.UserRole, entry.key)
            if entry.tip:
                item.setToolTip(entry.tip)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if entry.key in keep else Qt.CheckState.Unchecked)
            self.choices.addItem(item)
        self.choices.blockSignals(False)
        self.sig_selection_changed.emit()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if item.checkState() != Qt.CheckState.Checked:
            self._wanted.discard(item.data(Qt.ItemDataRole.UserRole))
        self.sig_selection_changed.emit()

    def checked(self) -> list[str]:
        return [self.choices.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.choices.count())
                if self.choices.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, key: str, on: bool) -> None:
        for i in range(self.choices.count()):
            item = self.choices.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == key:
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    # ---- results ----------------------------------------------------------------------------------------------------
    def show_busy(self) -> None:
        self.status.setText("<span style='color:gray'>comparing…</span>")

    def show_results(self, results: list, show_whitespace: bool = True) -> None:
        """results: (shown name, Analysis or error message) per checked encoding, in order."""
        counts = [r.n_tokens for _, r in results if not isinstance(r, str) and r.n_tokens]
        best = min(counts) if counts else 0
        self.table.setRowCount(len(results))
        for row, (name, result) in enumerate(results):
            if isinstance(result, str):
                cells = (name, "—", "—", "—", result)
            else:
                ratio = f"{result.n_tokens / best:.2f}×" if best else "—"
                cells = (name, f"{result.n_tokens:,}", f"{result.bytes_per_token:.2f}",
                         f"{result.chars_per_token:.2f}", ratio)
            for col, value in enumerate(cells):
                item = QTableWidgetItem(value)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
        self._fit_table()
        self._show_strips(results, show_whitespace)
        n = len(results)
        self.status.setText("" if n >= 2 else "<span style='color:gray'>Check two or more encodings to compare "
                                              "them.</span>")

    def _fit_table(self) -> None:
        """As tall as its rows (no empty grid below them)."""
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        height = self.table.horizontalHeader().sizeHint().height() + rows + 2 * self.table.frameWidth() + 2
        self.table.setFixedHeight(height)

    def _show_strips(self, results, show_whitespace: bool) -> None:
        while self.strips_layout.count() > 1:
            widget = self.strips_layout.takeAt(0).widget()
            widget.deleteLater()
        for row, (name, result) in enumerate(results):
            body = escape(result) if isinstance(result, str) else split_html(result, show_whitespace)
            strip = QLabel(f"<b>{escape(name)}</b><br>{body}")
            strip.setWordWrap(True)
            strip.setTextFormat(Qt.TextFormat.RichText)
            strip.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.strips_layout.insertWidget(row, strip)

    def row_values(self) -> list[list[str]]:
        """The table as text (tests read it)."""
        return [[self.table.item(r, c).text() for c in range(self.table.columnCount())]
                for r in range(self.table.rowCount())]
