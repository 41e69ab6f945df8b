"""Where the Generation pane's model comes from, and loading it (in a worker thread: no Qt here).

A source is the bundled Shakespeare model, the Training pane's latest checkpoint, a checkpoint file, or a fresh
randomly initialised model of a chosen size and tokenizer, whose probabilities are honestly near-uniform.
"""

import os
from dataclasses import dataclass

import torch

from app.tokentext import visible

KINDS = ("bundled", "latest", "file", "random")
RANDOM_SIZES = {"tiny": 128, "small": 256}  # model size (engine.presets.MODEL_SIZES) -> context length
RANDOM_TOKENIZERS = {"char": "Shakespeare characters", "gpt2": "GPT-2 tokens"}
RANDOM_SEED = 0  # a random model is the same every time it is created


@dataclass(frozen=True)
class ModelSource:
    kind: str  # one of KINDS
    path: str = ""  # checkpoint file for "bundled", "latest" and "file"
    size: str = "tiny"  # "random": a key of RANDOM_SIZES
    tokenizer: str = "char"  # "random": a key of RANDOM_TOKENIZERS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model source {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "random":
            if self.size not in RANDOM_SIZES:
                raise ValueError(f"unknown random model size {self.size!r}; expected one of {', '.join(RANDOM_SIZES)}")
            if self.tokenizer not in RANDOM_TOKENIZERS:
                raise ValueError(f"unknown tokenizer {self.tokenizer!r} for a random model")
        elif not self.path:
            raise ValueError(f"a {self.kind} model source needs a checkpoint path")

    def title(self) -> str:
        if self.kind == "random":
            return f"Random {self.size} model (untrained) · {RANDOM_TOKENIZERS[self.tokenizer]}"
        name = os.path.basename(self.path)
        if self.kind == "bundled":
            return f"Bundled: {name}"
        if self.kind == "latest":
            return f"Latest training checkpoint: {os.path.basename(os.path.dirname(self.path))}/{name}"
        return f"File: {name}"


@dataclass
class LoadedModel:
    source: ModelSource
    model: object  # engine.model.GPT, eval mode
    tokenizer: object  # engine.tokenizers.Tokenizer
    labels: list  # visible text of every id (None for ids that are no token), for the chart and the search
    description: str  # one line: size, vocabulary, context
    untrained: bool  # a random model: its distribution is near-uniform


def load_source(source: ModelSource, progress=lambda text: None) -> LoadedModel:
    """Build the model a source describes. Raises CheckpointError / ValueError with a readable message."""
    from engine.checkpoint import load_model
    from engine.runs import TrainingState

    if source.kind == "random":
        model, tokenizer = _random_model(source, progress)
        step = None
    else:
        progress(f"Reading {os.path.basename(source.path)}…")
        model, tokenizer, payload = load_model(source.path)
        state = TrainingState.from_payload(payload)
        step = state.step if state is not None else None
    progress("Indexing the vocabulary…")
    labels = vocabulary_labels(tokenizer, model.config.vocab_size)
    cfg = model.config
    description = (f"{_count(model.num_params())} parameters · {cfg.n_layer} × {cfg.n_embd} (layers × width) · "
                   f"{cfg.pos} positions · vocabulary {tokenizer.n_vocab} ({tokenizer.name}) · "
                   f"context {cfg.block_size}" + (f" · trained {step} steps" if step is not None else ""))
    return LoadedModel(source, model, tokenizer, labels, description, untrained=source.kind == "random")


def _count(n: int) -> str:
    """12345 -> '12.3 k', 10_700_000 -> '10.7 M'"""
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _random_model(source: ModelSource, progress):
    from engine.model import GPT, GPTConfig
    from engine.presets import MODEL_SIZES

    if source.tokenizer == "gpt2":
        from engine.tokenizers import get_tokenizer

        progress("Loading the GPT-2 tokenizer…")
        tokenizer = get_tokenizer("gpt2")
    else:
        from engine.corpora import load_corpus
        from engine.tokenizers.chars import CharTokenizer

        progress("Reading the Shakespeare corpus for its characters…")
        tokenizer = CharTokenizer.from_text(load_corpus("shakespeare"))
    progress(f"Initialising a random {source.size} model…")
    config = GPTConfig(vocab_size=tokenizer.n_vocab, block_size=RANDOM_SIZES[source.size],
                       **MODEL_SIZES[source.size])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = GPT(config)
    model.eval()
    return model, tokenizer


def vocabulary_labels(tokenizer, vocab_size: int) -> list[str | None]:
    """visible() text of every id the model can output; None for ids that are no token (holes, padding)."""
    get = tokenizer.token_bytes
    labels: list[str | None] = []
    for i in range(vocab_size):
        if i >= tokenizer.n_vocab:
            labels.append(None)
            continue
        try:
            labels.append(visible(get(i)))
        except ValueError:
            labels.append(None)
    return labels
