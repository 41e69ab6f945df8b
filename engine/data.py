"""Token files: a corpus encoded once with a tokenizer, cached on disk, memory-mapped, split and sampled in batches::

    text = load_text("shakespeare")                      # a built-in corpus name or a text file's path
    data = prepare(text, tokenizer, block_size=64)       # encodes once; later calls map the cached file
    g = torch.Generator().manual_seed(1337)
    x, y = get_batch(data.train, 12, 64, g)              # (12, 64) inputs, (12, 64) next-token targets

The token file is a flat array of ids (uint16 when the vocabulary fits, else uint32) named after the sha256 of the
text and of the tokenizer's identity (its ``to_dict()``), so a changed corpus or tokenizer never reuses a stale file.
It is written to a temporary file and renamed into place: a crash leaves no half-written token file behind.

Batches come from a ``torch.Generator`` the trainer owns and checkpoints, so a resumed run draws the same batches.
With several processes every rank draws the offsets of the whole global batch from its own copy of the same
generator and keeps its slice: 2 processes x B/2 rows see exactly the rows 1 process x B rows sees.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.errors import Cancelled, UserError
from engine.fileio import atomic_write
from engine.tokenizers.text import chunks

FORMAT = 2  # part of the cache key: bump when the way files are encoded changes
CHUNK_CHARS = 1 << 20  # encode ~1 M characters at a time (text.chunks): progress and cancel in between


class DataError(UserError):
    """A corpus cannot be used for training; the message names the problem."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/llm-playground/tokens (~/.cache/... by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-playground" / "tokens"


def load_text(corpus: str) -> str:
    """The text of a built-in corpus ("shakespeare", "kjv") or of a UTF-8 text file; DataError if unusable.

    Files go through engine.corpora.load_corpus, which names empty, binary and invalid UTF-8 files (with the byte
    offset and line of the first bad byte).
    """
    from engine.corpora import CorpusError, load_corpus

    try:
        text = load_corpus(corpus)
    except CorpusError as e:
        raise DataError(str(e)) from e
    check_text(text, corpus)
    return text


def check_text(text: str, name: str = "the corpus") -> None:
    """DataError if text is empty, whitespace only or binary (holds NUL characters)."""
    if not isinstance(text, str):
        raise DataError(f"{name}: expected text, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{name} is empty" if not text else f"{name} holds only whitespace")
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(f"{name} looks binary: it holds a NUL character at character {nul} (line {line}); "
                        f"training needs a text file")


def token_dtype(n_vocab: int, dtype=None) -> np.dtype:
    """The token file's integer type: uint16 if every id fits, else uint32; DataError if the vocabulary cannot fit.

    >>> token_dtype(65), token_dtype(50257), token_dtype(100277)
    (dtype('uint16'), dtype('uint16'), dtype('uint32'))
    """
    if dtype is None:
        dtype = np.uint16 if n_vocab <= 1 << 16 else np.uint32
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise DataError(f"token files hold uint16 or uint32 ids, not {dtype.name}")
    capacity = 1 << (8 * dtype.itemsize)
    if n_vocab > capacity:
        raise DataError(f"the tokenizer's vocabulary ({n_vocab} tokens) is too large for a {dtype.name} token file "
                        f"(at most {capacity} distinct ids)")
    return dtype


def tokenizer_key(tokenizer) -> str:
    """sha256 of the tokenizer's identity (its to_dict() as canonical JSON)."""
    identity = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(identity.encode("ascii")).hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def token_file(text: str, tokenizer, *, cache_dir=None, dtype=None,
               progress: Callable[[int, int], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> Path:
    """Path of text's token file for tokenizer, encoding it first unless cached.

    progress(done_chars, total_chars) is called as encoding goes; cancel() returning True stops it (Cancelled).
    """
    check_text(text)
    dtype = token_dtype(tokenizer.n_vocab, dtype)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"{text_key(text)[:24]}-{tokenizer_key(tokenizer)[:24]}-v{FORMAT}.{dtype.name}"
    if path.exists() and path.stat().st_size % dtype.itemsize == 0 and path.stat().st_size > 0:
        if progress:
            progress(len(text), len(text))
        return path
    with atomic_write(path) as f:
        done = 0
        for piece in chunks(text, CHUNK_CHARS):  # cut where no pre-tokenizer piece crosses: the same ids
            if cancel is not None and cancel():
                raise Cancelled("encoding the corpus was cancelled")
            ids = np.array(tokenizer.encode(piece), dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.n_vocab):
                raise DataError(f"the tokenizer produced an id outside its vocabulary (0..{tokenizer.n_vocab - 1})")
            f.write(ids.astype(dtype).tobytes())
            done += len(piece)
            if progress:
                progress(done, len(text))
    return path


@dataclass
class TokenData:
    """A corpus as token ids: the memory-mapped file and its contiguous train / validation splits (views)."""

    path: Path
    tokens: np.ndarray  # (N,) uint16/uint32 memmap
    train: np.ndarray  # tokens[:n_train]
    val: np.ndarray  # tokens[n_train:]
    n_vocab: int


def prepare(text: str, tokenizer, *, block_size: int, val_fraction: float = 0.1, cache_dir=None, dtype=None,
            progress: Callable[[int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None, name: str = "the corpus") -> TokenData:
    """Encode (or reuse the cached encoding of) text and split it: the first 1 - val_fraction for training.

    Raises DataError when a split is shorter than one context window plus the one token it predicts.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    check_text(text, name)
    path = token_file(text, tokenizer, cache_dir=cache_dir, dtype=dtype, progress=progress, cancel=cancel)
    dtype = token_dtype(tokenizer.n_vocab, dtype)
    tokens = np.memmap(path, dtype=dtype, mode="r")
    n_train = int(len(tokens) * (1.0 - val_fraction))
    need = block_size + 1
    for split, n in (("training", n_train), ("validation", len(tokens) - n_train)):
        if n < need:
            raise DataError(f"{name} is too short: its {split} split has {n} tokens ({len(tokens)} in all, "
                            f"{val_fraction:.0%} for validation) but one context window needs {need} "
                            f"(block_size {block_size} + 1). Use a longer text or a smaller block_size")
    return TokenData(path=path, tokens=tokens, train=tokens[:n_train], val=tokens[n_train:],
                     n_vocab=tokenizer.n_vocab)


def get_batch(data: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator, *,
              rank: int = 0, world_size: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of data -> (x, y), both (batch_size, block_size) int64, y = x shifted by one token.

    Draws the offsets of the global batch (batch_size * world_size rows) and returns rank's rows, so every rank
    advances its generator alike and the ranks together see one global batch.
    """
    n_starts = len(data) - block_size  # a window at i needs data[i : i + block_size + 1]
    draws = torch.randint(n_starts, (batch_size * world_size,), generator=generator)
    ix = draws[rank * batch_size:(rank + 1) * batch_size].numpy()
    rows = np.asarray(data[ix[:, None] + np.arange(block_size + 1)], dtype=np.int64)  # (B, T + 1)
    buf = torch.from_numpy(rows)
    x, y = buf[:, :-1], buf[:, 1:]  # (B, T) each, views of buf
    if device is not None and torch.device(device).type == "cuda":
        buf = buf.pin_memory().to(device, non_blocking=True)
        x, y = buf[:, :-1], buf[:, 1:]
    return x, y
