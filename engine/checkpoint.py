"""Checkpoint files: a model that rebuilds itself, saved atomically, loaded without ever running code from the file.

A checkpoint is one ``torch.save`` file holding plain data only (dicts, lists, str, numbers, tensors)::

    {"format": "llm-playground-checkpoint", "version": 1,
     "model_config": GPTConfig.to_dict(), "tokenizer": Tokenizer.to_dict(),
     "model": state_dict, "train": {...optional, owned by the trainer...}}

Reading uses ``torch.load(weights_only=True)``, whose unpickler only builds tensors and plain containers: a file
that asks for any other object (a pickle with a malicious ``__reduce__``) is refused, never executed. Every failure
to read becomes a ``CheckpointError`` with a one-line message::

    save_model("ckpt.pt", model, tokenizer, extra={"train": {"step": 100}})
    model, tokenizer, payload = load_model("ckpt.pt")
"""

import os
import pickle
import re
import warnings
import zipfile

import torch

from engine.fileio import atomic_write

FORMAT = "llm-playground-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model_config", "tokenizer", "model")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not describe a valid model."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """First non-empty line of an exception message, shortened: torch's messages run for pages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unpickler_reason(exc: BaseException) -> str:
    """What torch's long weights-only refusal refused: "asks for posix.mkdir", "Unsupported operand 149", ..."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks for {found.group(1)}"
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0][:120]
    return "not plain data"


def save_checkpoint(path, payload: dict):
    """Write payload to path atomically: a crash midway leaves the previous file (if any) untouched.

    The data goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over path with
    os.replace (atomic), and the folder is fsync'ed so the rename itself survives a power cut.
    "format" and "version" are filled in when missing.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"a checkpoint payload must be a dict, got {type(payload).__name__}")
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_write(path) as f:
        torch.save(payload, f)


def read_checkpoint(path) -> dict:
    """Load a checkpoint's payload (tensors on the CPU), checking it is one of ours. Raises CheckpointError."""
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint file at {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{name} is empty (0 bytes): not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # torch.save's zip format: check the archive before torch reads it
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError(f"{name} is truncated or corrupt ({_one_line(e)})") from e
        if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            raise CheckpointError(f"{name} is a zip file but not a PyTorch checkpoint")
    elif not head.startswith(b"\x80"):  # nor a pickle (torch's legacy format)
        raise CheckpointError(f"{name} is not a PyTorch checkpoint (it starts with {head!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says enough
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{name} was refused: it contains objects other than plain data and tensors, which "
                              f"are never loaded ({_unpickler_reason(e)})") from e
    except MemoryError as e:
        raise CheckpointError(f"{name} is too large to load into memory") from e
    except Exception as e:  # noqa: BLE001 - whatever else a damaged file makes torch raise
        raise CheckpointError(f"{name} is truncated or corrupt ({type(e).__name__}: {_one_line(e)})") from e

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is a PyTorch file but not an LLM Playground checkpoint "
                              f"(no \"format\": \"{FORMAT}\")")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{name} has no valid format version")
    if version > VERSION:
        raise CheckpointError(f"{name} was written by a newer LLM Playground (format version {version}; "
                              f"this one reads up to {VERSION})")
    return payload


def _unwrap(model):
    """The GPT inside torch.compile (._orig_mod) and DistributedDataParallel (.module) wrappers."""
    for attr in ("_orig_mod", "module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model


def save_model(path, model, tokenizer, extra: dict | None = None):
    """Save model (config + weights) and the identity of its tokenizer; extra adds keys such as "train"."""
    model = _unwrap(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "model": model.state_dict(),
    }
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra cannot replace the checkpoint's own key {key!r}")
        payload[key] = value
    save_checkpoint(path, payload)


def load_model(path, device="cpu"):
    """Rebuild the model and tokenizer a checkpoint describes -> (GPT in eval mode on device, Tokenizer, payload).

    Raises CheckpointError for anything wrong with the file, with a one-line message.
    """
    from engine.model import GPT, GPTConfig
    from engine.tokenizers import tokenizer_from_dict

    payload = read_checkpoint(path)
    name = os.path.basename(os.fspath(path))
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{name} is incomplete: missing {', '.join(missing)}")
    try:
        config = GPTConfig.from_dict(payload["model_config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{name} has an invalid model config: {_one_line(e)}") from e
    try:
        tokenizer = tokenizer_from_dict(payload["tokenizer"])
    except Exception as e:  # noqa: BLE001 - a foreign dict can fail in many ways; all mean "bad tokenizer"
        raise CheckpointError(f"{name} has a tokenizer that cannot be rebuilt: {_one_line(e)}") from e
    if tokenizer.n_vocab > config.vocab_size:
        raise CheckpointError(f"{name}: its tokenizer has {tokenizer.n_vocab} tokens but the model only "
                              f"{config.vocab_size}")

    state = payload["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}: \"model\" is not a state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{name}: \"model\" must map parameter names to tensors")
    state = {(k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k): v
             for k, v in state.items()}
    # check the shapes before allocating: a tiny file claiming a huge config must not build a huge model
    layers = {k.split(".")[2] for k in state if k.startswith("transformer.h.")}
    if len(layers) != config.n_layer:
        raise CheckpointError(f"{name}: the weights do not fit the model config: they hold {len(layers)} "
                              f"layer(s), the config says n_layer={config.n_layer}")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    for key in sorted(set(expected) | set(state)):
        if key not in state or key not in expected or tuple(state[key].shape) != expected[key]:
            what = ("missing" if key not in state else "unexpected" if key not in expected else
                    f"shape {tuple(state[key].shape)}, the config needs {expected[key]}")
            raise CheckpointError(f"{name}: the weights do not fit the model config: {key} ({what})")
    model = GPT(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        details = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        reason = details[0] if details else _one_line(e)
        raise CheckpointError(f"{name}: the weights do not fit the model config: {reason[:200]}") from e
    model.to(device).eval()
    return model, tokenizer, payload
