"""The run library's data: which folders the app knows, their summaries as a table model, and the file operations.

Known folders: every run under the app's runs directory (experiment folders: their arms), plus the folders the user
started, followed or opened elsewhere, remembered in the settings. Summaries are read by
:func:`engine.experiments.summarize` in a worker thread (:func:`scan`); the model only shows them.
"""

import math
import os
import shutil
import time
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QFile, QModelIndex, Qt

from app.paths import runs_dir
from engine.experiments.library import RunSummary, find_runs, is_run_folder, summarize

SETTINGS_KEY = "runs/folders"
MAX_REMEMBERED = 200
COLUMNS = ("Name", "Date", "Model", "Positions", "Tokenizer", "Corpus", "Steps", "Best val", "Tokens/s", "State")
STATE_MARKS = {"running": "● running", "stopped": "■ stopped", "finished": "✓ finished", "crashed": "✖ crashed"}


def remembered_folders(settings) -> list[str]:
    value = settings.value(SETTINGS_KEY, [])
    if isinstance(value, str):  # QSettings gives a lone string for a one-item list
        value = [value]
    return [str(v) for v in value or [] if v]


def remember(settings, folder: str) -> None:
    """Add folder to the remembered ones (most recent first), unless it lies in the runs directory anyway."""
    folder = os.path.abspath(folder)
    folders = [f for f in remembered_folders(settings) if f != folder]
    settings.setValue(SETTINGS_KEY, [folder] + folders[:MAX_REMEMBERED - 1])


def forget(settings, folder: str) -> None:
    settings.setValue(SETTINGS_KEY, [f for f in remembered_folders(settings) if f != os.path.abspath(folder)])


def known_runs(extra_folders: list[str]) -> list[Path]:
    """Run folders under the runs directory and in or under each remembered folder, each once."""
    seen, out = set(), []
    for root in [runs_dir(), *map(Path, extra_folders)]:
        for path in ([root] if is_run_folder(root) else find_runs(root)):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                out.append(path)
    return out


def scan(extra_folders: list[str], is_stale=lambda: False) -> list[RunSummary]:
    """Summaries of every known run, newest first (runs in a worker thread)."""
    summaries = []
    for path in known_runs(extra_folders):
        if is_stale():
            return []
        summaries.append(summarize(path))
    summaries.sort(key=lambda s: -s.date if math.isfinite(s.date) else math.inf)
    return summaries


def rename_run(path: str, new_name: str) -> str:
    """Rename a run folder in place -> its new path; ValueError with a readable reason if it cannot be."""
    new_name = new_name.strip()
    if not new_name or new_name in (".", "..") or "/" in new_name or os.sep in new_name or "\0" in new_name:
        raise ValueError(f"{new_name!r} is not a folder name (no slashes)")
    old = Path(path)
    new = old.with_name(new_name)
    if new.exists():
        raise ValueError(f"{new} already exists")
    try:
        os.rename(old, new)
    except OSError as e:
        raise ValueError(f"cannot rename {old.name}: {e.strerror or e}") from None
    return str(new)


def delete_run(path: str, confirm_permanent) -> str:
    """Move a run folder to the trash; if there is no trash, delete it after confirm_permanent(path) says yes.

    Returns "trashed", "deleted" or "kept"; ValueError if it cannot be removed.
    """
    if QFile.moveToTrash(path):
        return "trashed"
    if not confirm_permanent(path):
        return "kept"
    try:
        shutil.rmtree(path)
    except OSError as e:
        raise ValueError(f"cannot delete {path}: {e.strerror or e}") from None
    return "deleted"


class RunTableModel(QAbstractTableModel):
    """The summaries as rows; the Name column's check box chooses which runs the overlay shows."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summaries: list[RunSummary] = []
        self.checked: set[str] = set()  # paths

    def set_summaries(self, summaries: list[RunSummary]) -> None:
        self.beginResetModel()
        self.summaries = list(summaries)
        paths = {s.path for s in summaries}
        self.checked &= paths
        self.endResetModel()

    def summary(self, row: int) -> RunSummary:
        return self.summaries[row]

    def row_of(self, path: str) -> int:
        for i, s in enumerate(self.summaries):
            if s.path == path:
                return i
        return -1

    def set_checked(self, path: str, on: bool) -> None:
        (self.checked.add if on else self.checked.discard)(path)
        row = self.row_of(path)
        if row >= 0:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.CheckStateRole])

    def checked_summaries(self) -> list[RunSummary]:
        return [s for s in self.summaries if s.path in self.checked]

    # ---- Qt model ------------------------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt override)
        return 0 if parent.isValid() else len(self.summaries)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt override)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 (Qt override)
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index):
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return flags | Qt.ItemFlag.ItemIsUserCheckable if index.column() == 0 else flags

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.summaries[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.CheckStateRole and col == "Name":
            return Qt.CheckState.Checked if s.path in self.checked else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(s, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = s.path
            if s.detail:
                tip += f"\n{s.detail}"
            if s.problem:
                tip += f"\n{s.problem}"
            return tip
        if role == Qt.ItemDataRole.UserRole:  # sort key
            return _sort_key(s, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in ("Steps", "Best val", "Tokens/s"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):  # noqa: N802 (Qt override)
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == 0:
            on = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
            self.set_checked(self.summaries[index.row()].path, on)
            return True
        return False


def _cell(s: RunSummary, col: str) -> str:
    if col == "Name":
        parent = Path(s.path).parent.name
        return f"{parent}/{s.name}" if (Path(s.path).parent / "experiment.json").exists() else s.name
    if col == "Date":
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(s.date)) if math.isfinite(s.date) else ""
    if col == "Model":
        return s.model
    if col == "Positions":
        return s.positions
    if col == "Tokenizer":
        return os.path.basename(s.tokenizer)
    if col == "Corpus":
        return s.corpus
    if col == "Steps":
        return f"{s.steps:,}" + (f" / {s.max_iters:,}" if s.max_iters and s.max_iters != s.steps else "")
    if col == "Best val":
        return f"{s.best_val:.4f}" if math.isfinite(s.best_val) else ""
    if col == "Tokens/s":
        return f"{s.tokens_per_s:,.0f}" if math.isfinite(s.tokens_per_s) else ""
    if col == "State":
        return STATE_MARKS.get(s.state, s.state)
    return ""


def _sort_key(s: RunSummary, col: str):
    numbers = {"Date": s.date, "Steps": s.steps, "Best val": s.best_val, "Tokens/s": s.tokens_per_s}
    if col in numbers:
        value = numbers[col]
        return value if isinstance(value, int) or math.isfinite(value) else -math.inf
    return _cell(s, col).lower()
