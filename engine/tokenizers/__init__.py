"""Tokenizers behind one interface: OpenAI's encodings (offline), a character-level one and a trainable BPE.

    >>> from engine.tokenizers import get_tokenizer
    >>> enc = get_tokenizer("gpt2")
    >>> enc.encode("Hello world"), enc.decode([15496, 995])
    ([15496, 995], 'Hello world')

``get_tokenizer`` also opens a saved character or BPE tokenizer file; ``tokenizer_from_dict`` rebuilds a tokenizer
from ``Tokenizer.to_dict()`` (what checkpoints store).
"""

import os

from .base import SpanTable, Tokenizer, TokenizerError, TokenSpan, load_json
from .bpe import GPT4_PATTERN, BPETokenizer, Cancelled
from .chars import CharTokenizer
from .openai import ALIASES, DESCRIPTIONS, ENCODINGS, OpenAITokenizer, TokenizerDataError
from .openai import load as _load_openai

__all__ = ["ENCODINGS", "DESCRIPTIONS", "GPT4_PATTERN", "Tokenizer", "TokenSpan", "SpanTable", "CharTokenizer",
           "BPETokenizer", "OpenAITokenizer", "Cancelled", "TokenizerError", "TokenizerDataError", "get_tokenizer",
           "tokenizer_from_dict"]


def get_tokenizer(name_or_path) -> Tokenizer:
    """An OpenAI encoding by name ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"; loaded once per
    process), or the tokenizer saved in a file (character or BPE, told apart by the file's content)."""
    if isinstance(name_or_path, str) and (name_or_path in ENCODINGS or name_or_path in ALIASES):
        return _load_openai(name_or_path)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected an encoding name or a file path, not {type(name_or_path).__name__}")
    path = os.fspath(name_or_path)
    if not os.path.exists(path):
        raise TokenizerError(f"unknown tokenizer {path!r}: not one of {', '.join(ENCODINGS)} and no file of that name")
    if os.path.isdir(path):
        raise TokenizerError(f"{path} is a folder, not a saved tokenizer file")
    return tokenizer_from_dict(load_json(path), source=path)


def tokenizer_from_dict(data: dict, source: str = "the tokenizer data") -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.to_dict()``."""
    if not isinstance(data, dict):
        raise TokenizerError(f"{source}: a tokenizer description must be a dict, not {type(data).__name__}")
    kind = data.get("kind")
    fmt = data.get("format")
    if kind == "tiktoken":
        name = data.get("name")
        if not isinstance(name, str) or ALIASES.get(name, name) not in ENCODINGS:
            raise TokenizerError(f"{source}: unknown tiktoken encoding {name!r} (known: {', '.join(ENCODINGS)})")
        return _load_openai(name)
    if kind == "char" or fmt == "llm-playground-char":
        return CharTokenizer.from_dict(data, source)
    if kind == "bpe" or fmt == "llm-playground-bpe":
        return BPETokenizer.from_dict(data, source)
    if kind == "hf":
        from .hf import HFTokenizer  # imports the `tokenizers` library only when needed
        return HFTokenizer.from_dict(data, source)
    raise TokenizerError(f"{source} does not describe a tokenizer this app knows (kind {kind!r}, format {fmt!r})")
