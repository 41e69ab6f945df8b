"""The form's "Start from" choice: a new model built from the form's settings, or an existing one to fine-tune (with
its own shape and tokenizer): a model in the Hugging Face cache, a Hugging Face model folder, or one of our
checkpoints. Its value is what ``llm-train init_from=`` takes ("" for a new model).
"""

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog

NEW = ""
OPEN_CHECKPOINT = "__checkpoint__"
OPEN_FOLDER = "__folder__"


class StartFrom(QComboBox):
    """A new model, the cache's models (those this engine cannot open greyed, with the reason), and pickers."""

    sig_chosen = Signal(str)
    """The source changed: an ``init_from`` value ("" for a new model)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setToolTip("Train a new model from the settings below, or fine-tune an existing one (it keeps its own "
                        "shape and tokenizer)")
        self._current = NEW
        self._hub: dict[str, object] = {}  # name -> engine.hub.HubModel, of the last scan
        self.refresh()
        self.activated.connect(self._on_activated)

    # ---- the list ------------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List what the Hugging Face cache holds now (no network), keeping the current choice."""
        from engine.errors import size_text
        from engine.hub import hub_models

        try:
            models = hub_models()
        except OSError:
            models = []
        self._hub = {m.name: m for m in models}
        self.blockSignals(True)
        try:
            self.clear()
            self.addItem("a new model (the settings below)", NEW)
            for m in models:
                params = f"{m.n_params / 1e6:,.0f} M parameters, " if m.n_params else ""
                self.addItem(f"{m.name} ({params}{size_text(m.size_bytes)})", m.name)
                i = self.count() - 1
                self.setItemData(i, m.path if m.openable else m.reason, Qt.ItemDataRole.ToolTipRole)
                if not m.openable:
                    self.model().item(i).setEnabled(False)
            self.addItem("Our checkpoint or run folder…", OPEN_CHECKPOINT)
            self.addItem("Hugging Face model folder…", OPEN_FOLDER)
            self._select(self._current)
        finally:
            self.blockSignals(False)

    def value(self) -> str:
        """The ``init_from`` value: "" for a new model."""
        return self._current

    def set_value(self, value: str) -> None:
        """Choose a source by its ``init_from`` value (a path not listed yet is added); no signal."""
        self._current = str(value or NEW)
        self._select(self._current)

    def description(self) -> str:
        """What the chosen model is, for the parameter line: its size when the cache says it."""
        model = self._hub.get(self._current)
        if model is not None and getattr(model, "n_params", None):
            return f"≈ {model.n_params / 1e6:.2f} M parameters ({model.name}, its own tokenizer)"
        if self._current:
            return f"Fine-tunes {Path(self._current).name or self._current} with its own shape and tokenizer"
        return ""

    def choose_path(self, path: str) -> None:
        """Start from a checkpoint, run folder or Hugging Face folder on disk (what the pickers do)."""
        self.set_value(path)
        self.sig_chosen.emit(self._current)

    # ---- internals -----------------------------------------------------------------------------------------------
    def _select(self, value: str) -> None:
        i = self.findData(value)
        if i < 0:
            self.insertItem(self.count() - 2, _path_label(value), value)
            i = self.count() - 3
            self.setItemData(i, value, Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(i)

    def _on_activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == OPEN_CHECKPOINT:
            path, _ = QFileDialog.getOpenFileName(self, "Fine-tune one of our checkpoints", str(Path.home()),
                                                  "Checkpoints (*.pt);;All files (*)")
        elif data == OPEN_FOLDER:
            path = QFileDialog.getExistingDirectory(self, "Fine-tune a Hugging Face model folder", str(Path.home()))
        else:
            path = None
            self._current = str(data)
            self.sig_chosen.emit(self._current)
        if path is not None:
            if path:
                self.choose_path(path)
            else:  # cancelled: the previous choice stays
                self._select(self._current)


def _path_label(path: str) -> str:
    p = Path(path)
    if p.suffix == ".pt":
        return f"{p.parent.name}/{p.name} (checkpoint)"
    if (p / "ckpt.pt").is_file():
        return f"{p.name} (run folder)"
    return f"{p.name or path} (folder)"
