"""What is wrong with the Training form's values, without Qt: errors block Start, notes are advice.

The settings themselves are judged by the engine's one validation, :func:`engine.train.problems` (``llm-train`` calls
it too, so the form and the CLI never disagree); the facts shown (vocabulary sizes, parameter counts, the lists of
choices) are :mod:`engine.choices`'. This module adds what only the app can judge before anything starts: the run
folder (a folder this user can write, not a file, not under /proc), the corpus file's length, the machine's cores, a
learning rate that will diverge, and advice (a vocabulary that dwarfs the model, bf16 on a CPU, DDP's split).
"""

import math
import os
from pathlib import Path

from engine.choices import CHAR, ENCODING_VOCAB, POSITIONS, PRECISIONS, TRAIN_TOKENIZERS, estimate_params, vocab_size
from engine.errors import UserError
from engine.flops import cpu_has_bf16_matrix_units
from engine.runs import RunFolder

__all__ = ["CHAR_VOCAB_GUESS", "POSITIONS", "PRECISIONS", "TRAIN_TOKENIZERS", "check", "config_kwargs",
           "estimate_params", "run_folder_problem", "tokenizer_vocab"]

CHAR_VOCAB_GUESS = 65  # a char tokenizer's vocabulary depends on the corpus: tiny Shakespeare's, for the estimate
DIVERGING_LR = 0.1  # AdamW trains transformers at 1e-4 … 3e-3; at or above this the loss blows up within steps
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")  # kernel views: a run folder there cannot hold files


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def tokenizer_vocab(tokenizer: str) -> int | None:
    """The engine's vocabulary size of a tokenizer the form offers (None for "char"); UserError saying why."""
    return vocab_size(tokenizer)


def check(values: dict, extra: dict | None = None, *, cuda: bool | None = None,
          corpus_bytes: int | None = None) -> tuple[list[str], list[str]]:
    """(errors, notes) for the form's values (and a preset's other settings). Errors block Start; notes are advice.

    ``corpus_bytes`` is the size of an opened corpus file (None for a built-in corpus): every token holds at least
    one byte, so a file smaller than a training window plus its validation part cannot train.
    """
    from engine.train import problems

    cuda = cuda_available() if cuda is None else cuda
    errors = [_sentence(p) for p in problems(config_kwargs(values, extra), world_size=values["processes"], cuda=cuda)]
    notes: list[str] = []
    lr = _number(values["lr"])
    if lr is not None and lr >= DIVERGING_LR:
        notes.append(f"⚠ A learning rate of {lr:g} will almost surely make the loss diverge within a few steps "
                     f"(small GPTs train at 1e-4 … 3e-3 with AdamW).")
    if values["processes"] > (os.cpu_count() or 1):
        errors.append(f"{values['processes']} processes, but this machine has {os.cpu_count()} CPU cores.")
    if corpus_bytes is not None:
        need = _min_corpus_tokens(values["block_size"])
        if corpus_bytes < need:
            errors.append(f"The corpus file holds {corpus_bytes:,} bytes: too short for a context of "
                          f"{values['block_size']} tokens (training and validation each need at least one window "
                          f"plus a token; that takes at least {need:,} tokens). "
                          f"Use a longer text or a shorter context.")
    if not values.get("init_from") and not errors:
        note = _vocabulary_note(values)
        if note:
            notes.append(note)
    if values["precision"] == "bf16" and not cuda:
        notes.append("This CPU has bf16 matrix units (AMX): bf16 autocast trains faster than fp32 here; the weights "
                     "and the optimizer stay fp32." if cpu_has_bf16_matrix_units() else
                     "This CPU has no bf16 matrix units (AMX): bf16 saves memory but is often slower than fp32 here.")
    if values["processes"] > 1 and values["batch_size"] % values["processes"] == 0:
        notes.append(f"{values['processes']} processes train one model with DistributedDataParallel, each on "
                     f"{values['batch_size'] // values['processes']} of the batch's {values['batch_size']} rows.")
    out_dir = values["out_dir"].strip()
    problem = run_folder_problem(out_dir, max_iters=values["max_iters"]) if out_dir else None
    if problem:
        errors.append(problem)
    return errors, notes


def _vocabulary_note(values: dict) -> str | None:
    """Advice when the embedding dwarfs the transformer (a 200k vocabulary on a 0.1 M model learns slowly)."""
    try:
        vocab = vocab_size(values["tokenizer"])
    except UserError:
        return None
    if vocab is None:
        return None
    body = estimate_params(values, 1) - values["n_embd"]  # without the embedding (one row of it stays)
    embed = vocab * values["n_embd"]
    if embed <= 4 * body:
        return None
    name = values["tokenizer"] if values["tokenizer"] in ENCODING_VOCAB else Path(values["tokenizer"]).stem
    return (f"The {name} vocabulary ({vocab:,} tokens) makes the embedding {embed / 1e6:.1f} M parameters, "
            f"{embed / max(body, 1):.0f}x the transformer itself: '{CHAR}' or a smaller trained tokenizer learns "
            f"faster on a small model.")


def config_kwargs(values: dict, extra: dict | None = None) -> dict:
    """``TrainConfig`` settings for the form's values, over a preset's other settings (``extra``); a learning rate
    that is not a number is passed as typed, for the engine's check to explain.

    The schedule spans the run: cosine decay ends at the last step, warmup takes at most a tenth of the run, and the
    final learning rate is a tenth of the peak (nanoGPT's choices). A checkpoint is saved at every evaluation.
    """
    extra = dict(extra or {})
    max_iters = values["max_iters"]
    lr = _number(values["lr"])
    warmup = int(extra.get("warmup_iters", 100))
    settings = {
        **extra,
        "corpus": values["corpus"], "tokenizer": values["tokenizer"], "out_dir": values["out_dir"],
        "n_layer": values["n_layer"], "n_head": values["n_head"], "n_embd": values["n_embd"], "pos": values["pos"],
        "block_size": values["block_size"], "batch_size": values["batch_size"],
        "lr": lr if lr is not None else values["lr"], "min_lr": lr / 10 if lr is not None and lr > 0 else 0.0,
        "max_iters": max_iters, "lr_decay_iters": max_iters, "warmup_iters": min(warmup, max_iters // 10),
        "eval_interval": values["eval_interval"], "checkpoint_interval": values["eval_interval"],
        "precision": values["precision"],
    }
    if values.get("init_from"):
        settings["init_from"] = values["init_from"]
    return settings


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _sentence(problem: str) -> str:
    """The engine's problem as the form shows it: ended by a full stop (its first word may be a setting's name, as
    typed on the command line, so it keeps its case)."""
    problem = problem.strip()
    return problem + ("" if problem.endswith((".", "?", "!")) else ".")


def _min_corpus_tokens(block_size: int) -> int:
    """Tokens a corpus needs so that both splits hold a window plus the token it predicts (10% is validation)."""
    return 10 * (block_size + 1)


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
