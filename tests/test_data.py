"""Token files and batches: encoding, caching, invalidation, splits, the errors a bad corpus gets, batch sampling."""

import os

import numpy as np
import pytest
import torch

from engine import data
from engine.data import Cancelled, DataError, chunks, get_batch, load_text, prepare, token_dtype, token_file
from engine.tokenizers import get_tokenizer
from engine.tokenizers.chars import CharTokenizer

TEXT = "".join(f"Line {i}: the quick brown fox, it's {i * 7 % 13} o'clock.\n\n  indented  {i}\n" for i in range(200))


class FakeTokenizer:
    """Just what data.py uses: n_vocab, encode, to_dict."""

    def __init__(self, n_vocab, tag="fake"):
        self.n_vocab = n_vocab
        self.tag = tag
        self.calls = 0

    def encode(self, text):
        self.calls += 1
        return [ord(c) % self.n_vocab for c in text]

    def to_dict(self):
        return {"kind": "fake", "n_vocab": self.n_vocab, "tag": self.tag}


def test_token_file_holds_the_encoding(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    path = token_file(TEXT, tok, cache_dir=tmp_path)
    assert path.parent == tmp_path and path.name.endswith(".uint16")
    assert np.fromfile(path, dtype=np.uint16).tolist() == tok.encode(TEXT)


@pytest.mark.parametrize("name", ["char", "gpt2", "cl100k_base"])
def test_chunked_encoding_equals_whole_encoding(tmp_path, monkeypatch, name):
    """Encoding in chunks (for progress and cancel) must not change a single id, even for regex-split BPE."""
    tok = CharTokenizer.from_text(TEXT) if name == "char" else get_tokenizer(name)
    monkeypatch.setattr(data, "CHUNK_CHARS", 97)
    pieces = chunks(TEXT, data.CHUNK_CHARS)
    assert len(pieces) > 10 and "".join(pieces) == TEXT
    path = token_file(TEXT, tok, cache_dir=tmp_path)
    dtype = token_dtype(tok.n_vocab)
    assert dtype == (np.uint32 if tok.n_vocab > 65536 else np.uint16)
    assert np.fromfile(path, dtype=dtype).tolist() == tok.encode(TEXT)


def test_progress_and_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_CHARS", 1000)
    tok = FakeTokenizer(200)
    seen = []
    path = token_file(TEXT, tok, cache_dir=tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 3 and seen[-1] == (len(TEXT), len(TEXT))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    calls = tok.calls
    assert token_file(TEXT, tok, cache_dir=tmp_path) == path
    assert tok.calls == calls  # cached: not encoded again
    assert os.listdir(tmp_path) == [path.name]  # no temporary files left


def test_changed_corpus_or_tokenizer_invalidates_the_cache(tmp_path):
    tok = FakeTokenizer(200)
    a = token_file(TEXT, tok, cache_dir=tmp_path)
    b = token_file(TEXT + "x", tok, cache_dir=tmp_path)
    c = token_file(TEXT, FakeTokenizer(200, tag="other"), cache_dir=tmp_path)
    d = token_file(TEXT, FakeTokenizer(300), cache_dir=tmp_path)
    assert len({a, b, c, d}) == 4
    assert np.fromfile(b, dtype=np.uint16).size == np.fromfile(a, dtype=np.uint16).size + 1


def test_cancel_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_CHARS", 500)
    tok = FakeTokenizer(200)
    with pytest.raises(Cancelled):
        token_file(TEXT, tok, cache_dir=tmp_path, cancel=lambda: tok.calls >= 2)
    assert os.listdir(tmp_path) == []
    assert token_file(TEXT, tok, cache_dir=tmp_path).exists()  # and a later run completes


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = token_file(TEXT, FakeTokenizer(200))
    assert path.parent == tmp_path / "llm-playground" / "tokens"


def test_split_is_contiguous_90_10(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    d = prepare(TEXT, tok, block_size=16, cache_dir=tmp_path)
    ids = tok.encode(TEXT)
    assert len(d.train) == int(len(ids) * 0.9)
    assert d.train.tolist() + d.val.tolist() == ids
    d2 = prepare(TEXT, tok, block_size=16, val_fraction=0.25, cache_dir=tmp_path)
    assert len(d2.val) == len(ids) - int(len(ids) * 0.75)


# --- errors -------------------------------------------------------------------------------------------------------

def test_empty_corpus(tmp_path):
    with pytest.raises(DataError, match="empty"):
        prepare("", FakeTokenizer(10), block_size=4, cache_dir=tmp_path)
    with pytest.raises(DataError, match="only whitespace"):
        prepare(" \n\t ", FakeTokenizer(10), block_size=4, cache_dir=tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_text(str(empty))


def test_binary_corpus(tmp_path):
    with pytest.raises(DataError, match="binary.*NUL"):
        prepare("abc\ndef\x00ghi", FakeTokenizer(10), block_size=2, cache_dir=tmp_path)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="binary"):
        load_text(str(blob))


def test_invalid_utf8_says_where(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first line\nsecond caf".encode() + b"\xe9 au lait\n")
    with pytest.raises(DataError, match=r"UTF-8.*byte 21 \(line 2"):
        load_text(str(bad))


def test_missing_file_and_builtin_name(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_text(str(tmp_path / "nope.txt"))
    assert isinstance(DataError("x"), ValueError)


@pytest.mark.parametrize("val_fraction, split", [(0.1, "validation"), (0.95, "training")])
def test_too_short_for_a_context_window(tmp_path, val_fraction, split):
    text = "abcdefghij" * 10  # 100 tokens
    with pytest.raises(DataError, match=f"too short: its {split} split has .* needs 65"):
        prepare(text, FakeTokenizer(200), block_size=64, val_fraction=val_fraction, cache_dir=tmp_path)
    prepare(text, FakeTokenizer(200), block_size=4, val_fraction=val_fraction, cache_dir=tmp_path)  # fits


def test_vocabulary_too_large_for_the_token_file(tmp_path):
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    with pytest.raises(DataError, match=r"vocabulary \(70000 tokens\) is too large for a uint16"):
        prepare(TEXT, FakeTokenizer(70000), block_size=8, cache_dir=tmp_path, dtype=np.uint16)
    with pytest.raises(DataError, match="too large for a uint32"):
        token_dtype(2**32 + 1)
    with pytest.raises(DataError, match="too large"):
        token_file(TEXT, FakeTokenizer(2**32 + 1), cache_dir=tmp_path)


def test_bad_val_fraction(tmp_path):
    with pytest.raises(DataError, match="val_fraction"):
        prepare(TEXT, FakeTokenizer(200), block_size=8, val_fraction=1.0, cache_dir=tmp_path)


# --- batches ------------------------------------------------------------------------------------------------------

def test_batches_are_shifted_windows_and_reproducible():
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(tokens, 6, 16, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (6, 16) and x.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(6, 15, dtype=torch.long))  # contiguous windows
    x2, _ = get_batch(tokens, 6, 16, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2)
    assert int(y.max()) <= 999  # never past the end


def test_batches_reach_both_ends():
    tokens = np.arange(20, dtype=np.uint16)
    g = torch.Generator().manual_seed(0)
    starts = {int(get_batch(tokens, 8, 4, g)[0][i, 0]) for _ in range(50) for i in range(8)}
    assert starts == set(range(16))  # every window start 0..len-block_size-1


def test_ranks_split_the_global_batch():
    """2 ranks x B/2 rows == 1 rank x B rows, and each rank's generator advances alike."""
    tokens = np.arange(5000, dtype=np.uint32)
    g1, g_r0, g_r1 = (torch.Generator().manual_seed(7) for _ in range(3))
    for _ in range(3):
        x, y = get_batch(tokens, 8, 10, g1)
        x0, y0 = get_batch(tokens, 4, 10, g_r0, rank=0, world_size=2)
        x1, y1 = get_batch(tokens, 4, 10, g_r1, rank=1, world_size=2)
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


# -- issue 13: a file of one repeated character


def test_repeated_character_file_memory_blowup():
    """200 MB of one character was a single piece (no boundary to cut at): every encoder got all of it at once
    (9.8 GB with gpt2). Pieces are now bounded whatever the text."""
    pieces = chunks("a" * 10_000, size=1000)
    assert "".join(pieces) == "a" * 10_000
    assert max(map(len, pieces)) <= 2000 and len(pieces) >= 5
    one_line = "word " * 3000 + "\n\n" + "x" * 5000  # no newline boundary within reach: words are the cuts
    pieces = chunks(one_line, size=1000)
    assert "".join(pieces) == one_line and max(map(len, pieces)) <= 2000


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_repeated_character_file_chunked_ids_identical(name):
    """Cutting at a word boundary keeps the ids of encoding the whole text at once."""
    tok = get_tokenizer(name)
    text = "Hello world, it's 12345 x  y\tz. " * 300 + "naïve café 中文 " * 200
    pieces = chunks(text, size=257)
    assert len(pieces) > 10
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)
