"""The Tokenization pane's encoding list: the built-in encodings, your tokenizers, the models' (the Hugging Face
cache, listed by the pane in a worker, and the model folders you opened), and "Open model folder…" at the end."""

import os

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog

from app.tokenization.encodings import Encoding, builtin_encodings, folder_encoding, saved_encodings
from engine.errors import UserError

OPEN_FOLDER = "open-model-folder"  # the data of the last item, which opens a model folder's tokenizer


class EncodingPicker(QComboBox):
    """A combo box of :class:`Encoding` keys; ``key()`` is the current one."""

    sig_picked = Signal(str)
    """The user (or ``select``) changed the encoding: its key."""

    sig_folder_refused = Signal(str)
    """A folder the user opened has no usable tokenizer: the message."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumContentsLength(16)
        self.setToolTip("The encoding that splits the text: OpenAI's, the ones you trained, and the tokenizers of "
                        "the models in your Hugging Face cache")
        self.models: list[Encoding] = []  # the models in the HF cache (see set_models)
        self.folders: list[Encoding] = []  # model folders the user opened
        self._index = 0  # the current row before "Open model folder…" was picked
        self.currentIndexChanged.connect(self._on_index)
        self.refresh()

    def encodings(self) -> list[Encoding]:
        """What is offered, in order: built-in, yours, the cache's models, the opened folders."""
        listed = {e.key for e in self.models}  # a folder opened from the cache is listed once, as the cache's
        return builtin_encodings() + saved_encodings() + self.models + [e for e in self.folders if e.key not in listed]

    def key(self) -> str | None:
        return self.currentData()

    def refresh(self) -> None:
        """Re-read the saved tokenizers and rebuild the list, keeping the current choice (no signal)."""
        current = self.key()
        self.blockSignals(True)
        self.clear()
        for entry in self.encodings():
            self.addItem(entry.name, entry.key)
            if entry.tip:
                self.setItemData(self.count() - 1, entry.tip, Qt.ItemDataRole.ToolTipRole)
        self.insertSeparator(self.count())
        self.addItem("Open model folder…", OPEN_FOLDER)
        self.setItemData(self.count() - 1, "Use the tokenizer of a Hugging Face model folder (tokenizer.json)",
                         Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(max(self.findData(current) if current else 0, 0))
        self._index = self.currentIndex()
        self.blockSignals(False)

    def set_models(self, models: list[Encoding]) -> None:
        self.models = list(models)
        self.refresh()

    def select(self, key: str) -> bool:
        """Select an encoding by key; False if it is not offered."""
        index = self.findData(key)
        if index < 0 or key == OPEN_FOLDER:
            return False
        self.setCurrentIndex(index)
        return True

    def open_folder(self, path: str) -> bool:
        """Offer the tokenizer of a model folder and select it; False (sig_folder_refused) if it has none."""
        try:
            entry = folder_encoding(path)
        except UserError as exc:
            self.sig_folder_refused.emit(f"Could not use that folder: {exc}")
            return False
        if all(e.key != entry.key for e in self.encodings()):
            self.folders.append(entry)
            self.refresh()
        return self.select(entry.key)

    def restore_folders(self, paths: list[str]) -> None:
        """Offer again the folders of an earlier session that still hold a tokenizer (a cache model named by the saved
        choice counts too: the cache's listing may not be back yet)."""
        for path in paths:
            if path and os.path.isabs(path) and os.path.isdir(path) and all(e.key != path for e in self.encodings()):
                try:
                    self.folders.append(folder_encoding(path))
                except UserError:
                    pass  # its tokenizer was removed since: no longer offered
        self.refresh()

    def _on_index(self, index: int) -> None:
        if self.itemData(index) != OPEN_FOLDER:
            self._index = index
            self.sig_picked.emit(self.key() or "")
            return
        self.blockSignals(True)  # the list stays on the encoding in use while the dialog is open
        self.setCurrentIndex(self._index)
        self.blockSignals(False)
        QTimer.singleShot(0, self._choose_folder)  # not inside the combo box's own signal

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder's tokenizer", "")
        if path:
            self.open_folder(path)
