"""Which tokenizers the Tokenization pane offers, and loading them: the built-in encodings, the ones trained here, and
the tokenizers of Hugging Face models (those in the HF cache and any model folder the user opened).

Each is an :class:`Encoding` whose ``key`` is what :func:`load_tokenizer` takes: an encoding name ("cl100k_base"), a
saved tokenizer file, or a model folder (a hub-cache repository ``models--org--name`` or a plain folder with
``tokenizer.json``). No Qt here: :func:`model_encodings` scans the cache and runs in a worker thread.
"""

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from app.paths import tokenizers_dir
from engine.errors import UserError
from app.tokenization.analysis import natural_key

BUILTIN = ("gpt2", "p50k_base", "cl100k_base", "o200k_base")  # engine.tokenizers.ENCODINGS, without importing it yet
TOKENIZER_SUFFIX = ".json"


@dataclass(frozen=True)
class Encoding:
    """One tokenizer the pane offers: the name shown, the key to load it by, and a tooltip."""

    name: str
    key: str
    tip: str = ""


def builtin_encodings() -> list[Encoding]:
    return [Encoding(name, name) for name in BUILTIN]


def saved_encodings() -> list[Encoding]:
    """The tokenizers trained in this app, in natural order (my-bpe, my-bpe-2, my-bpe-10)."""
    paths = sorted(tokenizers_dir().glob(f"*{TOKENIZER_SUFFIX}"), key=lambda p: natural_key(p.stem))
    return [Encoding(f"{p.stem} (yours)", str(p), str(p)) for p in paths]


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def model_encodings(cache_dir: str | None = None) -> list[Encoding]:
    """The tokenizers of the models in the Hugging Face cache (``engine.hub_models``): every repository whose snapshot
    holds a tokenizer.json, whether or not this engine can run the model itself. Reads no weights; never raises."""
    from engine.hf import HFModelError, resolve_snapshot
    from engine.hub import hub_models

    out = []
    for model in hub_models(cache_dir):
        try:
            snapshot = resolve_snapshot(model.path)
        except HFModelError:
            continue  # no snapshot at all: nothing to tokenize with
        if not os.path.isfile(os.path.join(snapshot, "tokenizer.json")):
            continue
        runs = "the Generation pane can open it" if model.openable else f"the model itself cannot be opened: " \
                                                                           f"{model.reason}"
        tip = (f"Tokenizer of {model.name} ({model.architecture or 'unknown architecture'}, "
               f"{_size(model.size_bytes)}) in the Hugging Face cache\n{model.path}\n{runs}")
        out.append(Encoding(f"{model.name} (model)", model.path, tip))
    return sorted(out, key=lambda e: natural_key(e.name))


def folder_encoding(path: str) -> Encoding:
    """The tokenizer of a model folder the user picked; UserError (one line) if it has none.

    Checks the files only (the tokenizer loads in a worker when used): the folder, or a hub repository's snapshot,
    must hold tokenizer.json.
    """
    from engine.hf import HFModelError, repo_name, resolve_snapshot

    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isdir(path):
        raise UserError(f"{path} is not a folder")
    try:
        snapshot = resolve_snapshot(path)
    except HFModelError:
        snapshot = path  # a folder with only tokenizer.json (no config.json) is fine for tokenizing
    if not os.path.isfile(os.path.join(snapshot, "tokenizer.json")):
        raise UserError(f"{Path(path).name} has no tokenizer.json: pick a Hugging Face model folder "
                        "(config.json, weights and tokenizer.json)")
    return Encoding(f"{repo_name(path)} (folder)", path, f"Tokenizer of the model folder\n{path}")


_tokenizers: dict = {}
_tokenizers_lock = threading.Lock()


def load_tokenizer(key: str):
    """The tokenizer an :class:`Encoding` key names, cached for the process (files keyed by modification time too).

    Raises a UserError (TokenizerError, HFModelError) with one line for a missing or broken tokenizer.
    """
    from engine.tokenizers import get_tokenizer

    folder = os.path.isdir(key)
    tokenizer_file = key
    if folder:
        tokenizer_file = _folder_tokenizer_file(key)
    cache_key: object = key
    if folder or os.path.sep in key or key.endswith(".json"):
        try:
            cache_key = (key, os.stat(tokenizer_file).st_mtime_ns)
        except OSError:
            pass  # the loader raises the readable error
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(cache_key)
    if tokenizer is None:
        tokenizer = _load_folder(key) if folder else get_tokenizer(key)
        with _tokenizers_lock:
            _tokenizers[cache_key] = tokenizer
    return tokenizer


def _folder_tokenizer_file(folder: str) -> str:
    from engine.hf import HFModelError, resolve_snapshot

    try:
        return os.path.join(resolve_snapshot(folder), "tokenizer.json")
    except HFModelError:
        return os.path.join(folder, "tokenizer.json")


def _load_folder(folder: str):
    from engine.hf import HFModelError, load_hf_tokenizer, repo_name
    from engine.tokenizers.hf import HFTokenizer

    try:
        return load_hf_tokenizer(folder)
    except HFModelError:
        plain = os.path.join(folder, "tokenizer.json")
        if os.path.isfile(plain):  # a folder holding only a tokenizer (no config.json)
            return HFTokenizer.from_file(plain, name=repo_name(folder))
        raise
