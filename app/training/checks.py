"""What is wrong with the Training form's values, without Qt: errors block Start, notes are advice.

:func:`check` uses the engine's own config validation (``TrainConfig``, ``GPTConfig``), so the form and the trainer
never disagree, and adds what only the app can judge before anything starts: the run folder (it must be a folder this
user can write, not a file, not under /proc), the machine's memory and cores, and a learning rate that will diverge.
"""

import math
import os
from pathlib import Path

from engine.runs import RunFolder

BUILTIN_TOKENIZERS = ("char", "gpt2", "p50k_base", "cl100k_base", "o200k_base")
# vocabulary sizes of the built-in encodings, for the parameter estimate (the char vocabulary depends on the corpus)
ENCODING_VOCAB = {"gpt2": 50257, "p50k_base": 50281, "cl100k_base": 100277, "o200k_base": 200019}
PRECISIONS = ("fp32", "bf16", "fp16")
POSITIONS = ("learned", "rope", "alibi")
CHAR_VOCAB_GUESS = 65  # a char tokenizer's vocabulary depends on the corpus: tiny Shakespeare's, for the estimate
DIVERGING_LR = 0.1  # AdamW trains transformers at 1e-4 … 3e-3; at or above this the loss blows up within steps
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")  # kernel views: a run folder there cannot hold files


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
    if lr is not None and lr >= DIVERGING_LR:
        notes.append(f"⚠ A learning rate of {lr:g} will almost surely make the loss diverge within a few steps "
                     f"(small GPTs train at 1e-4 … 3e-3 with AdamW).")
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
    else:
        problem = run_folder_problem(out_dir, max_iters=values["max_iters"])
        if problem:
            errors.append(problem)
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




def run_folder_problem(folder: str, *, max_iters: int | None = None) -> str | None:
    """Why a run cannot start in ``folder`` (None when it can): a file, a place this user cannot write, a kernel
    pseudo-filesystem, or a folder that already holds a run (with what to do about it).

    >>> run_folder_problem("/proc/self/new-run")
    '/proc/self/new-run is inside /proc, which holds no files: choose a run folder elsewhere.'
    """
    path = Path(os.path.abspath(os.path.expanduser(folder)))
    for pseudo in PSEUDO_FILESYSTEMS:
        if path == Path(pseudo) or Path(pseudo) in path.parents:
            return f"{folder} is inside {pseudo}, which holds no files: choose a run folder elsewhere."
    if path.exists() and not path.is_dir():
        return f"{folder} is a file, not a folder: choose a folder for the run (“New” makes one)."
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so {folder} cannot be made: choose another run folder."
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"This user cannot write in {existing}: choose a run folder elsewhere (“New” makes one)."
    run = RunFolder(path)
    if run.has_checkpoint():
        from app.training.state import last_checkpoint_step

        step = last_checkpoint_step(str(path))
        if step is not None and max_iters is not None and step >= max_iters:
            return (f"The run folder holds a run trained to step {step:,}: raise Steps above {step:,} and press "
                    f"Resume to train it further, or pick a new folder (“New”).")
        return "The run folder already holds a checkpoint: press Resume to continue it, or pick a new folder."
    if run.has_metrics():
        return "The run folder already holds a run's metrics: pick a new folder (“New”)."
    return None
