"""The run form: corpus, tokenizer, model, optimisation and the run folder; explains what is wrong before Start.

The form only collects values; :func:`check`, a plain function, says what is wrong with them, using the engine's
own config validation so the form and the trainer never disagree.
"""

import math
import os
import time
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QSpinBox,
                               QToolButton, QWidget)

from app.paths import runs_dir, tokenizers_dir
from app.settings import read
from engine.runs import RunFolder

OPEN_FILE = "__open__"
CUSTOM = "__custom__"
NO_PRESET = ""
BUILTIN_TOKENIZERS = ("char", "gpt2", "p50k_base", "cl100k_base", "o200k_base")
# vocabulary sizes of the built-in encodings, for the parameter estimate (the char vocabulary depends on the corpus)
ENCODING_VOCAB = {"gpt2": 50257, "p50k_base": 50281, "cl100k_base": 100277, "o200k_base": 200019}
PRECISIONS = ("fp32", "bf16", "fp16")
POSITIONS = ("learned", "rope", "alibi")
CHAR_VOCAB_GUESS = 65  # a char tokenizer's vocabulary depends on the corpus: tiny Shakespeare's, for the estimate

# the form's fields, their settings keys and defaults (a tiny model that learns something in a few hundred steps)
DEFAULTS = {
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


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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


_saved_vocab_cache: dict[tuple, int] = {}


def tokenizer_vocab(tokenizer: str) -> int | None:
    """Vocabulary size of a tokenizer the form offers: None for "char" (it depends on the corpus), the size of a
    built-in encoding, or read from a saved tokenizer file (cached while the file is unchanged). ValueError saying
    why for a file that is not a saved tokenizer."""
    if tokenizer == "char":
        return None
    if tokenizer in ENCODING_VOCAB:
        return ENCODING_VOCAB[tokenizer]
    try:
        st = os.stat(tokenizer)
    except OSError:
        raise ValueError(f"The tokenizer file {tokenizer} is gone: choose another tokenizer.") from None
    key = (tokenizer, st.st_mtime_ns, st.st_size)
    if key not in _saved_vocab_cache:
        from engine.tokenizers.base import load_json

        data = load_json(tokenizer)
        if data.get("kind") == "bpe" and isinstance(data.get("n_vocab"), int):
            vocab = data["n_vocab"]
        elif data.get("kind") == "char" and isinstance(data.get("chars"), str):
            vocab = len(data["chars"])
        else:
            raise ValueError(f"{tokenizer} is not a saved character or BPE tokenizer.")
        _saved_vocab_cache[key] = vocab
    return _saved_vocab_cache[key]


def estimate_params(values: dict, vocab_size: int, bias: bool = False) -> int:
    """Parameters of the GPT these values build: tied embedding/head, position table, blocks, final LayerNorm."""
    C, L, T = values["n_embd"], values["n_layer"], values["block_size"]
    # qkv + proj + 4x MLP weights, two LayerNorm weights (+ the biases of all of them)
    per_layer = 12 * C * C + 2 * C + (11 * C if bias else 0)
    pos = T * C if values["pos"] == "learned" else 0
    return vocab_size * C + pos + L * per_layer + C * (2 if bias else 1)


def check(values: dict, extra: dict | None = None, *, cuda: bool | None = None,
          corpus_bytes: int | None = None) -> tuple[list[str], list[str]]:
    """(errors, notes) for the form's values (and a preset's other settings). Errors block Start; notes are advice.

    ``corpus_bytes`` is the size of an opened corpus file (None for a built-in corpus): every token holds at least
    one byte, so a file smaller than a training window plus its validation part cannot train.
    """
    errors: list[str] = []
    notes: list[str] = []
    from engine.model import GPTConfig

    try:
        lr = float(values["lr"])
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError
    except (TypeError, ValueError):
        errors.append(f"Learning rate must be a positive number like 1e-3, not {values['lr']!r}.")
        lr = None
    try:
        GPTConfig(vocab_size=values.get("vocab_size", 256), block_size=values["block_size"],
                  n_layer=values["n_layer"], n_head=values["n_head"], n_embd=values["n_embd"], pos=values["pos"])
    except ValueError as err:
        text = str(err).removeprefix("GPTConfig.")
        heads, width = values["n_head"], values["n_embd"]
        if "divisible" in text:
            text = (f"Width {width} does not split evenly among {heads} heads: choose a width that is a multiple "
                    f"of the heads (e.g. {heads * max(1, round(width / heads))}).")
        elif "RoPE" in text:
            text = (f"RoPE rotates pairs of numbers, so each head needs an even size; width {values['n_embd']} / "
                    f"{values['n_head']} heads = {values['n_embd'] // values['n_head']}.")
        errors.append(text)
    if values["precision"] == "fp16" and not (cuda_available() if cuda is None else cuda):
        errors.append("fp16 needs a CUDA GPU (it trains with a gradient scaler there); "
                      "on this machine use bf16 or fp32.")
    if values["processes"] > (os.cpu_count() or 1):
        errors.append(f"{values['processes']} processes, but this machine has {os.cpu_count()} CPU cores.")
    if corpus_bytes is not None:
        need = _min_corpus_tokens(values["block_size"])
        if corpus_bytes < need:
            errors.append(f"The corpus file holds {corpus_bytes:,} bytes: too short for a context of "
                          f"{values['block_size']} tokens (training and validation each need at least one window "
                          f"plus a token; that takes at least {need:,} tokens). "
                          f"Use a longer text or a shorter context.")
    try:
        vocab = tokenizer_vocab(values["tokenizer"])
    except ValueError as err:
        errors.append(str(err))
        vocab = None
    if vocab is not None:
        embed = vocab * values["n_embd"]
        body = estimate_params(values, 0)
        if embed > 4 * body:
            name = Path(values["tokenizer"]).stem if values["tokenizer"] not in ENCODING_VOCAB else values["tokenizer"]
            notes.append(f"The {name} vocabulary ({vocab:,} tokens) makes the embedding "
                         f"{embed / 1e6:.1f} M parameters, {embed / max(body, 1):.0f}x the transformer itself: "
                         f"'char' or a smaller trained tokenizer learns faster on a small model.")
    vocab_est = vocab if vocab is not None else 256
    n_params = estimate_params(values, vocab_est)
    memory = _memory_bytes()
    need = n_params * 16 * values["processes"]  # fp32 weights, gradients and AdamW's two moments, per process
    if memory and need > memory:
        errors.append(f"The model has about {n_params / 1e6:,.0f} M parameters: training it needs about "
                      f"{need / 2**30:,.1f} GiB for weights, gradients and optimizer state, more than this machine's "
                      f"{memory / 2**30:,.1f} GiB. Choose a smaller width, fewer layers or a smaller vocabulary.")
    if values["precision"] == "bf16" and not (cuda_available() if cuda is None else cuda):
        notes.append("bf16 on CPU saves memory but is often slower than fp32.")
    if values["processes"] > 1:
        notes.append(f"{values['processes']} processes train one model with DistributedDataParallel, each on "
                     f"{values['batch_size'] // values['processes']} of the batch's {values['batch_size']} rows.")
    if values["batch_size"] % values["processes"]:
        errors.append(f"A batch of {values['batch_size']} rows does not split evenly over {values['processes']} "
                      f"processes: use a multiple of {values['processes']}.")
    out_dir = values["out_dir"].strip()
    if not out_dir:
        errors.append("Choose a run folder.")
    elif RunFolder(out_dir).checkpoint_path.exists():
        errors.append("The run folder already holds a checkpoint: press Resume to continue it, or pick a new folder.")
    elif RunFolder(out_dir).has_metrics():
        errors.append("The run folder already holds a run's metrics: pick a new folder (“New”).")
    if not errors:
        from engine.train import TrainConfig

        try:
            TrainConfig.from_dict(config_kwargs(values, extra))
        except ValueError as err:
            errors.append(str(err))
    return errors, notes


def config_kwargs(values: dict, extra: dict | None = None) -> dict:
    """``TrainConfig`` keyword arguments for the form's values, over a preset's other settings (``extra``).

    The schedule spans the run: cosine decay ends at the last step, warmup takes at most a tenth of the run, and the
    final learning rate is a tenth of the peak (nanoGPT's choices). A checkpoint is saved at every evaluation.
    """
    extra = dict(extra or {})
    max_iters = values["max_iters"]
    lr = float(values["lr"])
    warmup = int(extra.get("warmup_iters", 100))
    return {
        **extra,
        "corpus": values["corpus"], "tokenizer": values["tokenizer"], "out_dir": values["out_dir"],
        "n_layer": values["n_layer"], "n_head": values["n_head"], "n_embd": values["n_embd"], "pos": values["pos"],
        "block_size": values["block_size"], "batch_size": values["batch_size"], "lr": lr, "min_lr": lr / 10,
        "max_iters": max_iters, "lr_decay_iters": max_iters, "warmup_iters": min(warmup, max_iters // 10),
        "eval_interval": values["eval_interval"], "checkpoint_interval": values["eval_interval"],
        "precision": values["precision"],
    }


def _min_corpus_tokens(block_size: int) -> int:
    """Tokens a corpus needs so that both splits hold a window plus the token it predicts (10% is validation)."""
    return 10 * (block_size + 1)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
        layout.addRow("Precision", self.precision)
        self.processes = _spin(1, os.cpu_count() or 1)
        self.processes.setToolTip("Training processes (DistributedDataParallel over gloo on CPU)")
        layout.addRow("Processes", self.processes)
        self.out_dir = QLineEdit()
        self.out_dir.setToolTip("The run folder: config.json, metrics.jsonl and ckpt.pt go here")
        browse = QToolButton(text="…")
        browse.setToolTip("Choose a run folder")
        browse.clicked.connect(self._browse_out_dir)
        fresh = QToolButton(text="New")
        fresh.setToolTip("A new dated folder under the app's runs folder")
        fresh.clicked.connect(lambda: self.out_dir.setText(new_run_dir()))
        row = QHBoxLayout()
        row.addWidget(self.out_dir, 1)
        row.addWidget(browse)
        row.addWidget(fresh)
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

    # ---- values ------------------------------------------------------------------------------------------------
    def values(self) -> dict:
        return {
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
        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "eval_interval",
                     "processes"):
            spin = getattr(self, name)
            try:
                spin.setValue(int(v[name]))
            except (TypeError, ValueError):
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
            for name in BUILTIN_TOKENIZERS:
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

    # ---- slots -------------------------------------------------------------------------------------------------
    def _on_preset(self, index: int) -> None:
        name = self.preset.itemData(index)
        if not name:
            self._extra = {}
            return
        preset = training_presets()[name]
        self._extra = self._preset_extras(preset)
        values = {key: preset[key] for key in DEFAULTS if key in preset and key not in ("corpus", "out_dir")}
        values["lr"] = repr(float(preset.get("lr", DEFAULTS["lr"])))
        values["size"] = CUSTOM
        for size_name, size in model_size_presets().items():
            if all(preset.get(k) == size[k] for k in ("n_layer", "n_head", "n_embd")):
                values["size"] = size_name
        current = self.values()
        self.set_values({**current, **values, "out_dir": current["out_dir"]})

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


def _select(combo: QComboBox, data) -> None:
    i = combo.findData(data)
    if i >= 0:
        combo.setCurrentIndex(i)


def _select_text(combo: QComboBox, text: str) -> None:
    i = combo.findText(text)
    if i >= 0:
        combo.setCurrentIndex(i)
