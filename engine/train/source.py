"""Where a run's model and tokenizer come from: build_tokenizer() for a new run, open_source() for a fine-tune.

A fine-tune starts from (``init_from``): one of our checkpoints or run folders, a Hugging Face model
folder, or a model in the Hugging Face cache named as on the hub.

    model, tokenizer, origin = open_source("openai-community/gpt2")
    origin["format"], origin["name"]        # ("huggingface", "openai-community/gpt2")

The origin is recorded in the run's checkpoint (``payload["origin"]``), so a fine-tuned model says where it came
from; the model keeps its shape and its own tokenizer, loaded in float32 for training.
"""

import os

from engine.checkpoint import load_model
from engine.runs import RunFolder, TrainingState
from engine.train.config import ConfigError


def open_source(init_from: str):
    """The model to fine-tune -> (GPT in float32 on the CPU, its tokenizer, origin dict).

    origin: {"init_from": as given, "format": "llm-playground-checkpoint" | "huggingface", "name", "path"} plus
    "step" (the source checkpoint's training step) or "architecture" (a Hugging Face model's). A name that is
    neither a path nor a cached model raises ConfigError; a file that cannot be opened, CheckpointError.
    """
    from engine.hf import is_hf_folder, resolve_model

    text = init_from.strip()
    path = os.path.expanduser(text)
    if os.path.isdir(path) and RunFolder(path).has_checkpoint():
        path = os.fspath(RunFolder(path).checkpoint_path)
    if os.path.isfile(path):
        model, tokenizer, payload = load_model(path)
        state = TrainingState.from_payload(payload)
        origin = {"init_from": text, "format": "llm-playground-checkpoint", "name": os.path.basename(path),
                  "path": os.path.abspath(path), "step": state.step if state is not None else None}
        return model.float(), tokenizer, origin
    if os.path.isdir(path) and not is_hf_folder(path):
        raise ConfigError(f"init_from {text!r} is a folder with neither a checkpoint "
                          f"({RunFolder(path).checkpoint_path.name}) nor a Hugging Face model (config.json)")
    try:
        folder = resolve_model(text)
    except ValueError as e:
        raise ConfigError(f"init_from: {e}") from None
    model, tokenizer, info = load_model(folder, dtype="float32")
    origin = {"init_from": text, "format": "huggingface", "name": info["name"], "path": info["path"],
              "architecture": info["architecture"]}
    return model.float(), tokenizer, origin


def build_tokenizer(name: str, text: str):
    """A new run's tokenizer: "char" is built from the corpus text, anything else opened by name or path."""
    from engine.tokenizers import get_tokenizer
    from engine.tokenizers.chars import CharTokenizer

    if name == "char":
        return CharTokenizer.from_text(text)
    try:
        return get_tokenizer(name)
    except (ValueError, OSError) as e:
        raise ConfigError(f"tokenizer {name!r}: {e}") from e
