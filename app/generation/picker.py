"""The Generation pane's model picker: bundled models, the latest training checkpoint, the models in the Hugging Face
cache (with their size, and why any of them cannot be opened, greyed out), random models, and "Open…" entries.
"""

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox

from app.generation.model_source import RANDOM_SIZES, RANDOM_TOKENIZERS, ModelSource

OPEN_FOLDER = "open-folder"
OPEN_FILE = "open-file"


def size_text(n_bytes: int) -> str:
    """1_500_000 -> '1.5 MB', 548_000_000 -> '548 MB', 2_200_000_000 -> '2.2 GB'"""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.1f} GB"
    if n_bytes >= 1e7:
        return f"{n_bytes / 1e6:.0f} MB"
    return f"{n_bytes / 1e6:.1f} MB"


def params_text(n: int) -> str:
    """124_439_808 -> '124 M', 1_235_814_400 -> '1.2 B', 52_000 -> '52.0 k'"""
    if n >= 1e9:
        return f"{n / 1e9:.1f} B"
    return f"{n / 1e6:,.0f} M" if n >= 1e7 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def hub_entry(model) -> tuple[str, ModelSource | None, str]:
    """(text, source or None when it cannot be opened, tooltip) for an engine.hub.HubModel."""
    params = f" · {params_text(model.n_params)} parameters" if model.n_params else ""
    text = f"{model.name} · {size_text(model.size_bytes)}{params}"
    if not model.openable:
        return f"{text} — cannot open: {model.reason}", None, f"{model.path}\n{model.reason}"
    return text, ModelSource("hf", path=model.path), f"{model.architecture} in {model.path}"


class ModelPicker(QComboBox):
    """A combo box of model sources; choosing one emits ``sig_chosen(source)``; the Open entries emit
    ``sig_open(OPEN_FOLDER | OPEN_FILE)``."""

    sig_chosen = Signal(object)
    """A ModelSource the user picked."""

    sig_open = Signal(str)
    """OPEN_FOLDER or OPEN_FILE: ask the user for a model on disk."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumContentsLength(22)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setToolTip("Which model predicts the next token: a bundled or trained checkpoint, a Hugging Face model "
                        "from this machine's cache, or a random untrained model (near-uniform probabilities).")
        self.entries: list[tuple[str, object]] = []  # (text, ModelSource | OPEN_* | None for a disabled row)
        self.activated.connect(self._on_activated)

    def set_sources(self, *, bundled=(), latest: str = "", current: ModelSource | None = None, hub=()) -> None:
        """Rebuild the list; ``current`` is selected (and listed, if it is a file or folder opened by hand)."""
        entries: list[tuple[str, object, str]] = [(s.title(), s, s.path) for s in bundled]
        if latest:
            s = ModelSource("latest", path=latest)
            entries.append((s.title(), s, latest))
        hub_paths = set()
        for m in hub:
            text, source, tip = hub_entry(m)
            entries.append((f"Hugging Face: {text}", source, tip))
            hub_paths.add(os.path.normpath(m.path))
        if current is not None and current.kind in ("file", "hf") and \
                os.path.normpath(current.path) not in hub_paths:
            entries.append((current.title() if current.kind == "file" else f"Folder: {current.title()}", current,
                            current.path))
        for size in RANDOM_SIZES:
            for tok in RANDOM_TOKENIZERS:
                s = ModelSource("random", size=size, tokenizer=tok)
                entries.append((s.title(), s, ""))
        entries.append(("Open model folder… (Hugging Face format)", OPEN_FOLDER, ""))
        entries.append(("Open checkpoint file…", OPEN_FILE, ""))

        self.blockSignals(True)
        self.clear()
        self.entries = [(text, what) for text, what, _ in entries]
        selected = -1
        for i, (text, what, tip) in enumerate(entries):
            self.addItem(text)
            if tip:
                self.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
            if what is None:
                item = self.model().item(i)
                item.setEnabled(False)
            if isinstance(what, ModelSource) and what == current:
                selected = i
        self.setCurrentIndex(selected)
        if selected < 0:
            self.setPlaceholderText("choose a model")
        self.blockSignals(False)
        view = self.view()  # the box itself may cut a long title; its list never does
        view.setMinimumWidth(min(view.sizeHintForColumn(0) + 2 * view.frameWidth() + 8, 900))

    def index_of(self, source: ModelSource) -> int:
        """The row of ``source``, or -1."""
        return next((i for i, (_, what) in enumerate(self.entries) if what == source), -1)

    def choose(self, index: int) -> None:
        """Act as if the user picked row ``index`` (a disabled row does nothing)."""
        self._on_activated(index)

    def _on_activated(self, index: int) -> None:
        if not 0 <= index < len(self.entries):
            return
        what = self.entries[index][1]
        if isinstance(what, ModelSource):
            self.sig_chosen.emit(what)
        elif what in (OPEN_FOLDER, OPEN_FILE):
            self.sig_open.emit(what)
