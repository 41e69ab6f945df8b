"""Where the Generation pane's model comes from, and loading it (in a worker thread: no Qt here).

A source is one of the bundled models (every ``assets/models/*.pt``), the Training pane's latest checkpoint, a
checkpoint file, a Hugging Face model (a repository of the hub cache or a model folder, opened by engine.hf), or a
fresh randomly initialised model of a chosen size and tokenizer, whose probabilities are honestly near-uniform.
"""

import os
from dataclasses import dataclass, field

import torch

from engine.tokenizers.text import render_bytes

KINDS = ("bundled", "latest", "file", "hf", "random")
PRECISIONS = ("auto", "float32", "bfloat16")  # of a Hugging Face model; auto: engine.hf's choice by size
RANDOM_SIZES = {"tiny": 128, "small": 256}  # model size (engine.presets.MODEL_SIZES) -> context length
RANDOM_TOKENIZERS = {"char": "Shakespeare characters", "gpt2": "GPT-2 tokens"}
RANDOM_SEED = 0  # a random model is the same every time it is created


@dataclass(frozen=True)
class ModelSource:
    kind: str  # one of KINDS
    path: str = ""  # checkpoint file for "bundled", "latest" and "file"; the model's folder for "hf"
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
            return f"Bundled: {readable_name(name)}"
        if self.kind == "hf":
            from engine.hf import repo_name

            return repo_name(self.path)
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
    info: dict = field(default_factory=dict)  # a Hugging Face model's: dtype, chat_template, bos_token, eos_token

    @property
    def chat_template(self) -> str | None:
        return self.info.get("chat_template")


def readable_name(file_name: str) -> str:
    """'shakespeare-char.pt' -> 'Shakespeare char'"""
    stem = os.path.splitext(file_name)[0].replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else file_name


def bundled_sources(folder) -> list[ModelSource]:
    """Every checkpoint in the bundled-models folder (assets/models/*.pt), by name."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".pt"))
    except OSError:
        return []
    return [ModelSource("bundled", path=os.path.join(folder, n)) for n in names]


def load_source(source: ModelSource, progress=lambda text: None, *, precision: str = "auto",
                cancel=None) -> LoadedModel:
    """Build the model a source describes. Raises CheckpointError / ValueError with a readable message.

    precision applies to Hugging Face models, whose weights are read tensor by tensor with progress; cancel (a
    callable: true stops the load with engine.hf.LoadCancelled) to them and to laying float32 weights out for
    decoding (engine.incremental.lay_out_for_decoding), which every source's model goes through.
    """
    from engine.checkpoint import load_model
    from engine.hf import LoadCancelled
    from engine.incremental import lay_out_for_decoding
    from engine.runs import TrainingState

    info: dict = {}
    if source.kind == "random":
        model, tokenizer = _random_model(source, progress)
        step = None
    elif source.kind == "hf":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        title = source.title()
        progress(f"Reading {title}…")

        def on_bytes(done: int, total: int):
            progress(f"Reading {title}: {done / 2**20:,.0f} of {total / 2**20:,.0f} MB")

        model, tokenizer, info = load_model(source.path, dtype=None if precision == "auto" else precision,
                                            progress=on_bytes, cancel=cancel)
        step = None
    else:
        progress(f"Reading {os.path.basename(source.path)}…")
        model, tokenizer, payload = load_model(source.path)
        state = TrainingState.from_payload(payload)
        step = state.step if state is not None else None
    if next(model.parameters()).dtype == torch.float32:  # before any pane shares it: each step reads them ~7% faster
        progress("Arranging the weights for single-token steps…")
        lay_out_for_decoding(model, stop=cancel)
        if cancel is not None and cancel():
            raise LoadCancelled(f"loading {source.title()} was cancelled")
    progress("Indexing the vocabulary…")
    labels = vocabulary_labels(tokenizer, model.config.vocab_size)
    cfg = model.config
    kind = f"{info['architecture']} · {info['dtype']} · " if info else ""
    description = (f"{kind}{_count(model.num_params())} parameters · {cfg.n_layer} × {cfg.n_embd} (layers × width) · "
                   f"{cfg.pos} positions · vocabulary {tokenizer.n_vocab} ({tokenizer.name}) · "
                   f"context {cfg.block_size}" + (f" · trained {step} steps" if step is not None else ""))
    return LoadedModel(source, model, tokenizer, labels, description, untrained=source.kind == "random", info=info)


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
    """The visible text (render_bytes, as chips) of every id the model can output; None for ids that are no token."""
    get = tokenizer.token_bytes
    labels: list[str | None] = []
    for i in range(vocab_size):
        if i >= tokenizer.n_vocab:
            labels.append(None)
            continue
        try:
            labels.append(render_bytes(get(i), whitespace="chips"))
        except ValueError:
            labels.append(None)
    return labels
