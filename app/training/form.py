"""The run form: corpus, tokenizer, model, optimisation and the run folder.

The form only collects values; :func:`app.training.checks.check`, a plain function, says what is wrong with them.
"""

import os
import time
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QSpinBox,
                               QToolButton, QWidget)

from app.paths import runs_dir, tokenizers_dir
from app.settings import read
from app.training.checks import POSITIONS, PRECISIONS, TRAIN_TOKENIZERS, config_kwargs
from app.training.start_from import StartFrom

OPEN_FILE = "__open__"
CUSTOM = "__custom__"
NO_PRESET = ""
EDITED = " (edited)"  # after a preset's name once the form no longer holds what the preset set

# the form's fields, their settings keys and defaults (a tiny model that learns something in a few hundred steps)
DEFAULTS = {
    "init_from": "",
    "corpus": "shakespeare",
    "tokenizer": "char",
    "size": CUSTOM,
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "pos": "learned",
    "block_size": 64,
    "batch_size": 12,
    "lr": "1e-3",
    "max_iters": 2000,
    "eval_interval": 250,
    "precision": "fp32",
    "processes": 1,
    "out_dir": "",
}


def new_run_dir() -> str:
    """A fresh, dated folder name under the app's runs folder (not created until the run starts)."""
    base = runs_dir() / time.strftime("run-%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return str(path)


def model_size_presets() -> dict[str, dict]:
    from engine.presets import MODEL_SIZES

    return dict(MODEL_SIZES)


def training_presets() -> dict[str, dict]:
    from engine.presets import TRAIN_PRESETS

    return dict(TRAIN_PRESETS)


def builtin_corpora():
    from engine.corpora import corpora

    return corpora()


class TrainingForm(QWidget):
    """Widgets for the run's settings; ``values()`` gives them as a dict, ``sig_changed`` fires on any edit."""

    sig_changed = Signal()
    """Some value changed (the pane re-checks the form)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._extra: dict = {}  # a training preset's settings the form has no field for (dropout, warmup, ...)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.preset = QComboBox()
        self.preset.setToolTip("Fill the form from a training preset of llm-train")
        self.preset.addItem("—", NO_PRESET)
        for name in training_presets():
            self.preset.addItem(name, name)
        layout.addRow("Preset", self.preset)

        self.start_from = StartFrom()
        layout.addRow("Start from", self.start_from)

        self.corpus = QComboBox()
        for info in builtin_corpora():
            self.corpus.addItem(info.title, info.name)
            self.corpus.setItemData(self.corpus.count() - 1, info.description, Qt.ItemDataRole.ToolTipRole)
        self.corpus.addItem("Open text file…", OPEN_FILE)
        layout.addRow("Corpus", self.corpus)

        self.tokenizer = QComboBox()
        layout.addRow("Tokenizer", self.tokenizer)
        self.refresh_tokenizers()

        self.size = QComboBox()
        for name, size in model_size_presets().items():
            self.size.addItem(f"{name} ({size['n_layer']}×{size['n_head']}×{size['n_embd']})", name)
        self.size.addItem("Custom", CUSTOM)
        layout.addRow("Model", self.size)
        self.n_layer, self.n_head, self.n_embd = (_spin(1, 64), _spin(1, 64), _spin(8, 4096, step=8))
        self.n_layer.setToolTip("Transformer blocks")
        self.n_head.setToolTip("Attention heads per block")
        self.n_embd.setToolTip("Width of the residual stream (a multiple of the heads)")
        row = QHBoxLayout()
        for label, spin in (("layers", self.n_layer), ("heads", self.n_head), ("width", self.n_embd)):
            row.addWidget(spin, 1)
            row.addWidget(QLabel(label))
        layout.addRow("", row)

        self.pos = QComboBox()
        self.pos.addItems(POSITIONS)
        self.pos.setToolTip("learned: GPT-2 position table; rope: rotary; alibi: distance penalty in attention")
        layout.addRow("Positions", self.pos)
        self.block_size = _spin(2, 8192)
        layout.addRow("Context length", self.block_size)
        self.batch_size = _spin(1, 4096)
        layout.addRow("Batch", self.batch_size)
        self.lr = QLineEdit()
        self.lr.setToolTip("Peak learning rate (warmup, then cosine decay)")
        layout.addRow("Learning rate", self.lr)
        self.max_iters = _spin(1, 10_000_000)
        layout.addRow("Steps", self.max_iters)
        self.eval_interval = _spin(1, 1_000_000)
        self.eval_interval.setToolTip("Evaluate the validation loss and write a sample every N steps")
        layout.addRow("Evaluate every", self.eval_interval)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("fp32: every number in float32. bf16: autocast, matrix multiplies in bf16 while the "
                                  "weights, the optimizer and the norms stay float32 (and on a CPU, attention over "
                                  "short contexts); faster on GPUs and on CPUs with bf16 matrix units (AMX). "
                                  "fp16: CUDA only, with a loss scaler")
        layout.addRow("Precision", self.precision)
        self.processes = _spin(1, os.cpu_count() or 1)
        self.processes.setToolTip("Training processes (DistributedDataParallel over gloo on CPU)")
        layout.addRow("Processes", self.processes)
        self.out_dir = QLineEdit()
        self.out_dir.setToolTip("The run folder: config.json, metrics.jsonl and ckpt.pt go here")
        browse = QToolButton(text="…")
        browse.setToolTip("Choose a run folder")
        browse.clicked.connect(self._browse_out_dir)
        self.new_button = QToolButton(text="New")
        self.new_button.setToolTip("A new dated folder under the app's runs folder")
        self.new_button.clicked.connect(lambda: self.out_dir.setText(new_run_dir()))
        row = QHBoxLayout()
        row.addWidget(self.out_dir, 1)
        row.addWidget(browse)
        row.addWidget(self.new_button)
        layout.addRow("Run folder", row)

        self._last_corpus_index = 0  # where the corpus choice returns when "Open text file…" is cancelled
        self.set_values(DEFAULTS)
        self.preset.activated.connect(self._on_preset)
        self.corpus.activated.connect(self._on_corpus_activated)
        self.size.activated.connect(self._on_size)
        for spin in (self.n_layer, self.n_head, self.n_embd):
            spin.valueChanged.connect(self._on_dims_edited)
        for combo in (self.corpus, self.tokenizer, self.pos, self.precision):
            combo.currentIndexChanged.connect(self.sig_changed)
        for spin in (self.n_layer, self.n_head, self.n_embd, self.block_size, self.batch_size, self.max_iters,
                     self.eval_interval, self.processes):
            spin.valueChanged.connect(self.sig_changed)
        for edit in (self.lr, self.out_dir):
            edit.textChanged.connect(self.sig_changed)
        self.sig_changed.connect(self._mark_preset_edited)
        self.start_from.sig_chosen.connect(self._show_source)
        self.start_from.sig_chosen.connect(self.sig_changed)

    # ---- values ------------------------------------------------------------------------------------------------
    def values(self) -> dict:
        return {
            "init_from": self.start_from.value(),
            "corpus": self.corpus.currentData(),
            "tokenizer": self.tokenizer.currentData(),
            "size": self.size.currentData(),
            "n_layer": self.n_layer.value(),
            "n_head": self.n_head.value(),
            "n_embd": self.n_embd.value(),
            "pos": self.pos.currentText(),
            "block_size": self.block_size.value(),
            "batch_size": self.batch_size.value(),
            "lr": self.lr.text().strip(),
            "max_iters": self.max_iters.value(),
            "eval_interval": self.eval_interval.value(),
            "precision": self.precision.currentText(),
            "processes": self.processes.value(),
            "out_dir": self.out_dir.text().strip(),
        }

    def set_values(self, values: dict) -> None:
        blockers = [QSignalBlocker(w) for w in self.findChildren(QWidget)]
        v = {**DEFAULTS, **values}
        corpus = str(v["corpus"])
        if self.corpus.findData(corpus) < 0 and os.path.isfile(corpus):
            self._add_corpus_file(corpus)
        _select(self.corpus, corpus)
        self._last_corpus_index = self.corpus.currentIndex()
        tokenizer = str(v["tokenizer"])
        if self.tokenizer.findData(tokenizer) < 0 and os.path.isfile(tokenizer):
            self.tokenizer.addItem(Path(tokenizer).name, tokenizer)
        _select(self.tokenizer, tokenizer)
        _select(self.size, str(v["size"]))
        self.start_from.set_value(str(v["init_from"] or ""))
        self._show_source()
        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "eval_interval",
                     "processes"):
            spin = getattr(self, name)
            try:  # clamped: a followed run's config may say anything
                spin.setValue(min(max(int(v[name]), spin.minimum()), spin.maximum()))
            except (TypeError, ValueError, OverflowError):
                spin.setValue(int(DEFAULTS[name]))
        _select_text(self.pos, str(v["pos"]))
        _select_text(self.precision, str(v["precision"]))
        self.lr.setText(str(v["lr"]))
        self.out_dir.setText(str(v["out_dir"]) or new_run_dir())
        self._on_dims_edited()
        del blockers
        self.sig_changed.emit()

    @property
    def extra(self) -> dict:
        """The chosen training preset's settings that have no field in the form (dropout, warmup, ...)."""
        return dict(self._extra)

    def config_kwargs(self) -> dict:
        """The values as ``TrainConfig`` keyword arguments (over the chosen preset's other settings)."""
        return config_kwargs(self.values(), self._extra)

    def corpus_file_size(self) -> int | None:
        """Bytes of an opened corpus file; None for a built-in corpus or a file that is gone."""
        corpus = self.corpus.currentData()
        if corpus in {info.name for info in builtin_corpora()}:
            return None
        try:
            return os.path.getsize(corpus)
        except OSError:
            return None

    def save_settings(self, s) -> None:
        for key, value in self.values().items():
            s.setValue(f"form/{key}", value)
        s.setValue("form/preset", self.preset.currentData())
        s.setValue("form/corpus_files", [self.corpus.itemData(i) for i in range(self.corpus.count())
                                         if os.path.isabs(str(self.corpus.itemData(i)))])

    def restore_settings(self, s) -> None:
        files = s.value("form/corpus_files", [])
        for path in [files] if isinstance(files, str) else (files or []):
            if os.path.isfile(path) and self.corpus.findData(path) < 0:
                self._add_corpus_file(path)
        values = {key: read(s, f"form/{key}", default) for key, default in DEFAULTS.items()}
        preset = read(s, "form/preset", NO_PRESET)
        if preset in training_presets():
            _select(self.preset, preset)
            self._extra = self._preset_extras(training_presets()[preset])
        self.set_values(values)

    # ---- tokenizers ----------------------------------------------------------------------------------------------
    def refresh_tokenizers(self) -> None:
        """Offer the built-in encodings plus every tokenizer saved in the app's tokenizers folder."""
        current = self.tokenizer.currentData()
        with QSignalBlocker(self.tokenizer):
            self.tokenizer.clear()
            for name in TRAIN_TOKENIZERS:
                self.tokenizer.addItem(name if name != "char" else "char (one token per character)", name)
            for path in sorted(tokenizers_dir().iterdir()):
                if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".tmp"):
                    self.tokenizer.addItem(f"{path.stem} (trained)", str(path))
                    self.tokenizer.setItemData(self.tokenizer.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
            if current is not None and self.tokenizer.findData(current) < 0 and os.path.isfile(str(current)):
                self.tokenizer.addItem(Path(current).name, current)
            _select(self.tokenizer, current if current is not None else "char")
        if self.tokenizer.currentData() != current:
            self.sig_changed.emit()

    # ---- presets and runs ----------------------------------------------------------------------------------------
    def choose_preset(self, name: str) -> None:
        """Fill the form from a training preset of ``llm-train`` (what choosing it in the combo box does);
        "" clears the preset's other settings. ValueError for an unknown name."""
        if name and name not in training_presets():
            raise ValueError(f"no training preset {name!r}; the presets are {', '.join(training_presets())}")
        _select(self.preset, name)
        self._on_preset(self.preset.currentIndex())

    def preset_values(self, name: str) -> dict:
        """The form values a training preset sets (not the corpus or the run folder)."""
        preset = training_presets()[name]
        own = ("corpus", "out_dir", "init_from")
        values = {key: preset[key] for key in DEFAULTS if key in preset and key not in own}
        values["lr"] = repr(float(preset.get("lr", DEFAULTS["lr"])))
        values["size"] = CUSTOM
        for size_name, size in model_size_presets().items():
            if all(preset.get(k) == size[k] for k in ("n_layer", "n_head", "n_embd")):
                values["size"] = size_name
        return values

    def show_run_config(self, config: dict, processes: int | None = None) -> None:
        """Show the settings of a run the form did not start (followed or reopened): a ``TrainConfig`` dict."""
        own = {key: config[key] for key in DEFAULTS if key in config and key not in ("lr", "size")}
        try:
            own["lr"] = repr(float(config["lr"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
        if processes:
            own["processes"] = processes
        schedule = ("min_lr", "lr_decay_iters", "checkpoint_interval", "resume")  # derived from the form's values
        self._extra = {k: v for k, v in config.items() if k not in DEFAULTS and k not in schedule}
        with QSignalBlocker(self.preset):
            _select(self.preset, NO_PRESET)
        self.set_values({**self.values(), **own})

    def _on_preset(self, index: int) -> None:
        name = self.preset.itemData(index)
        if not name:
            self._extra = {}
            self._mark_preset_edited()
            return
        self._extra = self._preset_extras(training_presets()[name])
        current = self.values()
        self.set_values({**current, **self.preset_values(name), "out_dir": current["out_dir"]})

    def _show_source(self) -> None:
        """A model to fine-tune brings its own shape and tokenizer: their fields are not used, so not editable."""
        scratch = not self.start_from.value()
        why = "" if scratch else "Fine-tuning keeps the model's own shape and tokenizer"
        for widget in (self.tokenizer, self.size, self.n_layer, self.n_head, self.n_embd, self.pos):
            widget.setEnabled(scratch)
            widget.setStatusTip(why)

    def _mark_preset_edited(self) -> None:
        """The preset's name says "(edited)" once a value it set was changed, and loses it when they match again."""
        for i in range(self.preset.count()):
            name = self.preset.itemData(i)
            if name:
                self.preset.setItemText(i, name)
        name = self.preset.currentData()
        if name:
            current = self.values()
            if any(not _same(current[k], v) for k, v in self.preset_values(name).items() if k != "size"):
                self.preset.setItemText(self.preset.currentIndex(), name + EDITED)

    @staticmethod
    def _preset_extras(preset: dict) -> dict:
        own = set(DEFAULTS) | {"corpus", "out_dir"}
        return {k: v for k, v in preset.items() if k not in own}

    def _on_corpus_activated(self, index: int) -> None:
        if self.corpus.itemData(index) != OPEN_FILE:
            self._last_corpus_index = index
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a text corpus", str(Path.home()),
                                              "Text files (*.txt *.md *.text);;All files (*)")
        if path:
            self._add_corpus_file(path)
            _select(self.corpus, path)
        else:
            self.corpus.setCurrentIndex(self._last_corpus_index)
        self._last_corpus_index = self.corpus.currentIndex()

    def _add_corpus_file(self, path: str) -> None:
        self.corpus.insertItem(self.corpus.count() - 1, Path(path).name, path)
        self.corpus.setItemData(self.corpus.count() - 2, path, Qt.ItemDataRole.ToolTipRole)

    def _on_size(self, index: int) -> None:
        name = self.size.itemData(index)
        if name == CUSTOM:
            return
        size = model_size_presets()[name]
        with QSignalBlocker(self.n_layer), QSignalBlocker(self.n_head), QSignalBlocker(self.n_embd):
            self.n_layer.setValue(size["n_layer"])
            self.n_head.setValue(size["n_head"])
            self.n_embd.setValue(size["n_embd"])
        self.sig_changed.emit()

    def _on_dims_edited(self) -> None:
        dims = (self.n_layer.value(), self.n_head.value(), self.n_embd.value())
        match = CUSTOM
        for name, size in model_size_presets().items():
            if dims == (size["n_layer"], size["n_head"], size["n_embd"]):
                match = name
        with QSignalBlocker(self.size):
            _select(self.size, match)

    def _browse_out_dir(self) -> None:
        start = self.out_dir.text() or str(runs_dir())
        path = QFileDialog.getExistingDirectory(self, "Run folder", start)
        if path:
            self.out_dir.setText(path)


def _spin(lo: int, hi: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setGroupSeparatorShown(hi >= 10_000)
    return spin


def _same(a, b) -> bool:
    """Equal as form values: "3e-4" and "0.0003" are one learning rate."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _select(combo: QComboBox, data) -> None:
    i = combo.findData(data)
    if i >= 0:
        combo.setCurrentIndex(i)


def _select_text(combo: QComboBox, text: str) -> None:
    i = combo.findText(text)
    if i >= 0:
        combo.setCurrentIndex(i)
