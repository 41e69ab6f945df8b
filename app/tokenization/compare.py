"""Several encodings over the same text, side by side: counts in a table and the start of each split in colour."""

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QAbstractScrollArea, QFrame, QHeaderView, QLabel, QListView,
                               QListWidget, QListWidgetItem, QScrollArea, QTableWidget, QTableWidgetItem, QVBoxLayout,
                               QWidget)

from app.tokenization.analysis import label
from app.tokenization.token_view import PASTELS
from app.tokentext import isolated_html

STRIP_TOKENS = 80  # tokens drawn per encoding in the compact split
TABLE_ROWS = 6  # the table grows to this many rows, then scrolls
CHOICE_ROWS = 3  # the list of encodings to compare grows to this many lines, then scrolls
TEXT_HEADING = "Compare encodings on the same text:"
DECODE_HEADING = "Compare encodings on the text of the Text tab (not the decoded ids):"
COLUMNS = ("Encoding", "Tokens", "B/tok", "Ch/tok", "vs best")
COLUMN_TIPS = ("", "Tokens in the whole text", "Bytes per token (UTF-8)", "Characters per token",
               "Tokens relative to the encoding that needs the fewest")
AGREED = ("#e6e6e6", "#d2d2d2")  # a token every encoding also made: neutral greys, alternating
LEGEND = "coloured: split differently · grey: the same token in every encoding · faint: not compared"


def split_differences(analyses: list) -> tuple[list[set[int] | None], int]:
    """Per analysis, the indices of its shown tokens that not every other analysis also made (the same byte range),
    and how many bytes of the text were compared: those every strip covers (the strips stop after ``STRIP_TOKENS``).

    None for an entry that is not an analysis (an error message), and for all with fewer than two.

    >>> from engine import get_tokenizer
    >>> from app.tokenization.analysis import analyse
    >>> a, b = (analyse(get_tokenizer(e), " hello 123456") for e in ("gpt2", "cl100k_base"))
    >>> [s.bytes for s in a.spans], [s.bytes for s in b.spans]
    ([b' hello', b' 123', b'456'], [b' hello', b' ', b'123', b'456'])
    >>> split_differences([a, b])
    ([{1}, {1, 2}], 13)
    """
    shown = [r.spans[:STRIP_TOKENS] if hasattr(r, "spans") else None for r in analyses]
    valid = [spans for spans in shown if spans is not None]
    if len(valid) < 2:
        return [None] * len(analyses), 0
    covered = min((spans[-1].byte_end if spans else 0) for spans in valid)
    common = set.intersection(*({(s.byte_start, s.byte_end) for s in spans} for spans in valid))
    return [None if spans is None else {s.index for s in spans if s.byte_end <= covered
                                        and (s.byte_start, s.byte_end) not in common} for spans in shown], covered


def split_html(analysis, show_whitespace: bool = True, differs: set[int] | None = None, compared: int = 0) -> str:
    """The first tokens of an analysis as HTML (a compact version of the main view).

    differs: the tokens to highlight (see :func:`split_differences`): those get the pastel colours, the others within
    the first ``compared`` bytes a neutral grey, those after it no fill; None: every token in colour.
    """
    parts = []
    for span in analysis.spans[:STRIP_TOKENS]:
        text = isolated_html(label(span.bytes, show_whitespace).replace("\n", ""))  # hex bytes in red, shaped apart
        if differs is None or span.index in differs:
            style = f"background:{PASTELS[span.index % len(PASTELS)]};color:#111;"  # dark on light in any palette
        elif span.byte_end <= compared:
            style = f"background:{AGREED[span.index % 2]};color:#111;"
        else:
            style = "color:gray;"  # not compared: beyond what another strip shows
        # a zero-width space after each token lets the line wrap (visible whitespace leaves no other break)
        parts.append(f"<span style='{style}'>{text}</span>\u200b")
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
        # Adjust: re-flow the names at every width (laid out once, they ran off to the right behind a scrollbar
        # that the fixed height hid)
        self.choices.setResizeMode(QListView.ResizeMode.Adjust)
        self.choices.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.choices.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
        self.choices.setFrameShape(QFrame.Shape.NoFrame)
        self.choices.itemChanged.connect(self._on_item_changed)
        self._wanted: set[str] = set()  # keys to check once offered

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long names elide instead
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
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
        self.legend = QLabel("The start of each split:")
        self.legend.setWordWrap(True)
        layout.addWidget(self.legend)
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
        self.choices.doItemsLayout()
        self._fit_choices()
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
                if not col:
                    item.setToolTip(name)  # the column elides long model names
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
        """As tall as its rows (no empty grid below them), up to ``TABLE_ROWS`` rows; more scroll."""
        rows = [self.table.rowHeight(r) for r in range(self.table.rowCount())]
        shown = sum(rows[:TABLE_ROWS]) + (self.table.rowHeight(0) // 2 if len(rows) > TABLE_ROWS else 0)
        height = self.table.horizontalHeader().sizeHint().height() + shown + 2 * self.table.frameWidth() + 2
        self.table.setFixedHeight(height)

    def _fit_choices(self) -> None:
        """As tall as the names need at this width, up to ``CHOICE_ROWS`` lines; more scroll."""
        n = self.choices.count()
        if not n:
            self.choices.setFixedHeight(0)
            return
        tops = sorted({self.choices.visualItemRect(self.choices.item(i)).top() for i in range(n)})
        line = self.choices.visualItemRect(self.choices.item(0)).height()
        lines = min(len(tops), CHOICE_ROWS)
        self.choices.setFixedHeight(lines * line + (lines - 1) * self.choices.spacing() + 2 * self.choices.frameWidth()
                                    + (line // 2 if len(tops) > CHOICE_ROWS else 0))  # half a line says "scroll"

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_choices()

    def _show_strips(self, results, show_whitespace: bool) -> None:
        while self.strips_layout.count() > 1:
            widget = self.strips_layout.takeAt(0).widget()
            widget.deleteLater()
        differs, compared = split_differences([result for _, result in results])
        for row, (name, result) in enumerate(results):
            if isinstance(result, str):
                body = escape(result)
            else:
                body = split_html(result, show_whitespace, differs[row], compared)
            strip = QLabel(f"<b>{escape(name)}</b><br>{body}")
            strip.setWordWrap(True)
            strip.setTextFormat(Qt.TextFormat.RichText)
            strip.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.strips_layout.insertWidget(row, strip)
        self.legend.setText(LEGEND if any(d is not None for d in differs) else "The start of each split:")

    def row_values(self) -> list[list[str]]:
        """The table as text (tests read it)."""
        return [[self.table.item(r, c).text() for c in range(self.table.columnCount())]
                for r in range(self.table.rowCount())]
