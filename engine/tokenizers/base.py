"""The one interface every tokenizer has, and the span computation they share.

A tokenizer turns text into ids and back. Besides ``encode``/``decode`` it can say, for each token of a text, which
bytes and which characters of that text it covers (``spans``), which is what the Tokenization pane draws::

    >>> from engine.tokenizers import get_tokenizer
    >>> enc = get_tokenizer("gpt2")
    >>> [(s.id, s.bytes, s.char_start, s.char_end, s.partial) for s in enc.spans("本!")]
    [(17312, b'\\xe6\\x9c', 0, 1, True), (105, b'\\xac', 0, 1, True), (0, b'!', 1, 2, False)]

Spans are computed with numpy over the whole text (a byte -> character map from a cumulative sum over UTF-8 lead
bytes), so 10 MB of text costs one pass, not a Python loop over characters. ``span_table`` runs in worker threads
next to a UI thread, so it never holds the GIL long: ids go straight from the encoder into numpy, numpy does the rest
(its loops release the GIL), and the few conversions between Python lists and arrays go in chunks of ``CHUNK`` items,
letting other threads run in between.
"""

import json
import operator
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from engine.errors import UserError
from engine.fileio import atomic_write

from .text import render_bytes


class TokenizerError(UserError):
    """Bad input for a tokenizer: text it cannot encode, ids it does not have, a file or description it cannot
    read. The message names the problem."""


_SURROGATE = re.compile("[\ud800-\udfff]")
CHUNK = 1 << 16  # items per list <-> array conversion: ~1 ms holding the GIL, then other threads may run


def sanitize(text: str) -> str:
    """Replace lone surrogates (which cannot be UTF-8 encoded) by U+FFFD, one character for one.

    "a\\ud800b" -> "a\\ufffdb"; text without surrogates is returned as is (the common case costs one encode).
    """
    return sanitize_encode(text)[0]


def sanitize_counted(text: str) -> tuple[str, int]:
    """``sanitize(text)`` and how many lone surrogates it replaced, for saying so. "a\\ud800b" -> ("a\\ufffdb", 1)"""
    try:
        text.encode("utf-8")
        return text, 0
    except UnicodeEncodeError:
        return _SURROGATE.subn("\ufffd", text)


def sanitize_encode(text: str) -> tuple[str, bytes]:
    """``sanitize(text)`` and its UTF-8 bytes, for one encode. "a\\ud800" -> ("a\\ufffd", b"a\\xef\\xbf\\xbd")"""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
        return text, text.encode("utf-8")


def ids_to_array(ids) -> np.ndarray:
    """(N,) int64 array of a list of ids, converted ``CHUNK`` ids at a time so the GIL is let go in between.

    [3, 1, 2] -> array([3, 1, 2]); an array is returned as int64 without the chunking (numpy casts without the GIL).
    """
    if isinstance(ids, np.ndarray):
        return ids.astype(np.int64, copy=False)
    out = np.empty(len(ids), dtype=np.int64)  # (N,)
    for i in range(0, len(ids), CHUNK):
        out[i:i + CHUNK] = ids[i:i + CHUNK]
    return out


def array_to_list(arr: np.ndarray) -> list[int]:
    """``arr.tolist()`` for a 1-D array, ``CHUNK`` items at a time so the GIL is let go in between."""
    if len(arr) <= CHUNK:
        return arr.tolist()
    out = []
    for i in range(0, len(arr), CHUNK):
        out += arr[i:i + CHUNK].tolist()
    return out


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """Where one token of an encoded text sits in that text (slots: a 10 MB text has millions of them)."""

    index: int  # position in the token list
    id: int
    byte_start: int  # [byte_start, byte_end) into text.encode("utf-8") of the (surrogate-sanitised) text
    byte_end: int
    char_start: int  # [char_start, char_end): the characters of the original str this token's bytes touch;
    char_end: int  # a partial token covers the whole character it is a piece of, so partial neighbours share it
    partial: bool  # True if the bytes are not a whole sequence of complete UTF-8 characters
    bytes: bytes  # the token's bytes (for an unknown-character token: the bytes of the character it replaced)


class SpanTable:
    """The spans of a text as numpy arrays, for texts too long to want millions of TokenSpan objects at once.

    All arrays have shape (n_tokens,). ``table[i]`` builds one TokenSpan; ``table.spans(start, stop)`` a slice.
    """

    def __init__(self, data: bytes, ids, byte_starts, byte_ends, char_starts, char_ends, partial):
        self.data = data  # the UTF-8 bytes of the sanitised text
        self.ids = ids  # (N,) int64
        self.byte_starts, self.byte_ends = byte_starts, byte_ends  # (N,) int64 each
        self.char_starts, self.char_ends = char_starts, char_ends  # (N,) int64 each
        self.partial = partial  # (N,) bool

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> TokenSpan:
        i = range(len(self))[i]  # negative indices, IndexError
        bs, be = int(self.byte_starts[i]), int(self.byte_ends[i])
        return TokenSpan(i, int(self.ids[i]), bs, be, int(self.char_starts[i]), int(self.char_ends[i]),
                         bool(self.partial[i]), self.data[bs:be])

    def spans(self, start: int = 0, stop: int | None = None) -> list[TokenSpan]:
        """TokenSpan objects for tokens [start, stop) (built ``CHUNK`` at a time: a whole 10 MB text is millions)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        out: list[TokenSpan] = []
        data = self.data
        for a in range(start, stop, CHUNK):
            sl = slice(a, min(a + CHUNK, stop))
            bs, be = self.byte_starts[sl].tolist(), self.byte_ends[sl].tolist()
            out += map(TokenSpan, range(sl.start, sl.stop), self.ids[sl].tolist(), bs, be,
                       self.char_starts[sl].tolist(), self.char_ends[sl].tolist(), self.partial[sl].tolist(),
                       [data[i:j] for i, j in zip(bs, be)])
        return out


def span_table(data: bytes, ids, lengths) -> SpanTable:
    """Spans of tokens with the given byte lengths that tile ``data`` (the UTF-8 bytes of a text).

    data=b"a\\xe2\\x82\\xac", lengths=[1, 2, 1] -> bytes [0,1) [1,3) [3,4); chars [0,1) [1,2) [1,2); partial F T T

    ``ids`` and ``lengths`` are best (N,) arrays: lists are converted in chunks. All the work is numpy loops, which
    run without the GIL (casts are done as separate calls: a cast inside ``cumsum`` would hold it).
    """
    ids, lengths = ids_to_array(ids), ids_to_array(lengths)  # (N,) int64 each
    ends = np.cumsum(lengths)  # (N,)
    total = int(ends[-1]) if len(ends) else 0
    if total != len(data):
        raise ValueError(f"the tokens cover {total} of the text's {len(data)} bytes: the tokenizer's pre-split "
                         f"pattern drops characters of this text")
    starts = ends - lengths  # (N,)
    buf = np.frombuffer(data, dtype=np.uint8)  # (B,)
    # a byte starts a character unless it is a UTF-8 continuation byte 0b10xxxxxx
    is_lead = np.empty(len(buf) + 1, dtype=bool)  # (B+1,) the end of the text is a boundary too
    np.not_equal(buf & 0xC0, 0x80, out=is_lead[:-1])
    is_lead[-1] = True
    if len(ids) == 0:
        char_starts = char_ends = np.zeros(0, dtype=np.int64)
        partial = np.zeros(0, dtype=bool)
    elif is_lead.all():  # ASCII: every byte is a character and no token splits one
        char_starts, char_ends = starts, ends
        partial = np.zeros(len(ids), dtype=bool)
    else:
        # (B,) index of the character each byte belongs to: leads counted up to and including the byte, minus one
        char_of_byte: np.ndarray = is_lead[:-1].astype(np.int32 if len(buf) < 2**31 else np.int64)
        np.cumsum(char_of_byte, out=char_of_byte)
        char_of_byte -= 1
        char_starts = char_of_byte[starts].astype(np.int64)
        char_ends = char_of_byte[ends - 1].astype(np.int64)
        char_ends += 1
        partial = ~(is_lead[starts] & is_lead[ends])
    return SpanTable(data, ids, starts, ends, char_starts, char_ends, partial)


class Tokenizer(ABC):
    """Text <-> ids, plus what the app needs to show tokens.

    Subclasses set ``name``, ``n_vocab`` and ``special_tokens`` and implement ``_encode``, ``_token_bytes_or_none``,
    ``merge_info`` and ``to_dict``. Ids are 0..n_vocab-1; a vocabulary may have holes (ids that are no token, as in
    cl100k_base between its special tokens), and those count as bad ids like out-of-range ones.
    """

    name: str
    n_vocab: int
    special_tokens: dict[str, int]
    bos_token: str | None = None  # the model's beginning-of-sequence token, where its tokenizer names one (Llama)

    @property
    def start_id(self) -> int:
        """The token a text starts from when there is no prompt: the one rule for samples during training and an
        empty prompt in Generation.

        The beginning-of-sequence token when the tokenizer names one (Llama's ``<s>``, ``<|begin_of_text|>``), else
        ``<|endoftext|>`` (what GPT-2 saw between documents), else a newline when it is one token (a character
        tokenizer), else id 0.

        >>> from engine.tokenizers import CharTokenizer, get_tokenizer
        >>> get_tokenizer("gpt2").start_id, CharTokenizer("ab\\n").start_id, CharTokenizer("ab").start_id
        (50256, 2, 0)
        """
        for token in (self.bos_token, "<|endoftext|>"):
            if token is not None and 0 <= self.special_tokens.get(token, -1) < self.n_vocab:
                return self.special_tokens[token]
        try:
            ids = self.encode("\n")
        except TokenizerError:  # a character tokenizer without a newline
            ids = []
        return ids[0] if len(ids) == 1 else 0

    # -- what subclasses provide

    @abstractmethod
    def _encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        """Ids of sanitised ``text``, turning only the special tokens in ``allowed`` into special ids."""

    def _encode_array(self, text: str, allowed: frozenset[str]) -> np.ndarray:
        """(N,) int64 ids of sanitised ``text``, as ``_encode``; subclasses that can, skip the Python list."""
        return ids_to_array(self._encode(text, allowed))

    @abstractmethod
    def _token_bytes_or_none(self, id: int) -> bytes | None:
        """The bytes of a valid id, None for an id that is no token."""

    @abstractmethod
    def merge_info(self, id: int) -> str:
        """Human text saying where a token comes from: "byte 0x41", "merge of 'th' + 'e' (rank 1234)", ..."""

    @abstractmethod
    def to_dict(self) -> dict:
        """JSON-serialisable identity; ``tokenizer_from_dict`` rebuilds an equal tokenizer from it."""

    def save(self, path) -> None:
        raise TokenizerError(f"{self.name} is a built-in tokenizer: there is nothing to save, use its name")

    # -- the interface

    def encode(self, text: str, *, allowed_special: Collection[str] | str = ()) -> list[int]:
        """Ids of ``text``. Special-token text is ordinary text unless allowed (``"all"`` allows every one).

        Lone surrogates are replaced by U+FFFD first (one character for one, so character offsets stay valid).
        """
        return self._encode(sanitize(text), self._allowed(allowed_special))

    def decode_bytes(self, ids) -> bytes:
        """The bytes of a sequence of ids; TokenizerError naming the first bad id."""
        return b"".join(self._all_token_bytes(ids))

    def decode(self, ids) -> str:
        """The text of a sequence of ids (invalid UTF-8 from partial tokens becomes U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, id: int) -> bytes:
        """The bytes of one token; TokenizerError for an id that is no token."""
        return self._all_token_bytes([id], single=True)[0]

    def token_str(self, id: int) -> str:
        """One token, readable: control characters escaped (\\n, \\x00), bytes of partial characters as <E2> (as the
        app shows them)."""
        return render_bytes(self.token_bytes(id))

    def spans(self, text: str, *, allowed_special: Collection[str] | str = ()) -> list[TokenSpan]:
        """Every token of ``text`` with its byte range, character range and partial flag.

        The spans' bytes concatenate to ``text.encode("utf-8")`` (after lone surrogates became U+FFFD).
        """
        return self.span_table(text, allowed_special=allowed_special).spans()

    def span_table(self, text: str, *, allowed_special: Collection[str] | str = ()) -> SpanTable:
        """Like ``spans`` but as numpy arrays (cheap for 10 MB of text); build TokenSpans for what you show."""
        text, data = sanitize_encode(text)
        ids = self._encode_array(text, self._allowed(allowed_special))  # (N,) int64
        return span_table(data, ids, self._byte_lengths(ids, data))

    def is_special(self, id: int) -> bool:
        return id in self._special_ids

    # -- shared helpers

    @property
    def _special_ids(self) -> frozenset[int]:
        ids = self.__dict__.get("_special_id_set")
        if ids is None:
            ids = self.__dict__["_special_id_set"] = frozenset(self.special_tokens.values())
        return ids

    def _byte_lengths(self, ids: np.ndarray, data: bytes) -> np.ndarray:
        """(N,) byte length of each token (``ids`` (N,) int64 encode ``data``); looked up in a per-id table built
        once."""
        table = self.__dict__.get("_length_table")
        if table is None:
            table = np.array([len(self._token_bytes_or_none(i) or b"") for i in range(self.n_vocab)], dtype=np.int64)
            self.__dict__["_length_table"] = table
        return table[ids]

    def _allowed(self, allowed_special) -> frozenset[str]:
        if allowed_special == "all":
            return frozenset(self.special_tokens)
        if isinstance(allowed_special, str):
            raise TokenizerError(f'allowed_special must be "all" or a set of special tokens, not the string '
                             f'{allowed_special!r}')
        allowed = frozenset(allowed_special)
        unknown = allowed - self.special_tokens.keys()
        if unknown:
            known = ", ".join(sorted(self.special_tokens)) or "none"
            raise TokenizerError(f"{self.name} has no special token {sorted(unknown)[0]!r} (it has: {known})")
        return allowed

    def _all_token_bytes(self, ids, single: bool = False) -> list[bytes]:
        out = []
        get = self._token_bytes_or_none
        for pos, raw in enumerate(ids):
            try:
                i = operator.index(raw)
            except TypeError:
                raise TokenizerError(f"token id at position {pos} is {raw!r}, not an integer") from None
            b = get(i) if 0 <= i < self.n_vocab else None
            if b is None:
                where = "" if single else f"at position {pos} "
                raise TokenizerError(f"token id {i} {where}is not in the {self.name} vocabulary "
                                 f"(ids are 0..{self.n_vocab - 1}{self._holes_note()})")
            out.append(b)
        return out

    def _holes_note(self) -> str:
        return ""

    def __eq__(self, other):
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self):
        return hash((type(self).__name__, self.name))

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} n_vocab={self.n_vocab}>"


def describe_bytes(data: bytes) -> str:
    """How a merge part is shown in ``merge_info``: quoted readable text, e.g. 'th' or '<E2>'."""
    return "'" + render_bytes(data).replace("'", "\\'") + "'"


def byte_info(b: int) -> str:
    """merge_info text of a single-byte token: 65 -> "byte 0x41 'A'", 0xE2 -> "byte 0xE2"."""
    return f"byte 0x{b:02X} {describe_bytes(bytes([b]))}" if b < 0x80 else f"byte 0x{b:02X}"


def save_json(path, data: dict) -> None:
    """Write ``data`` as JSON atomically (engine.fileio.atomic_write): a crash mid-save leaves the old file, never
    half a file."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


def load_json(path) -> dict:
    """Read a saved tokenizer file; TokenizerError with the path for anything that is not a JSON object."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"no tokenizer file at {path}") from None
    except OSError as e:
        raise TokenizerError(f"cannot read the tokenizer file {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{path} is not a saved tokenizer (not a JSON file: {e})") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} is not a saved tokenizer (its JSON is not an object)")
    return data


def check_format(data: dict, fmt: str, version: int, source: str = "the data") -> None:
    """Check the "format" and "version" fields every saved tokenizer starts with."""
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else None
        raise TokenizerError(f"{source} is not a {fmt} tokenizer (format is {found!r})")
    v = data.get("version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise TokenizerError(f"{source}: the {fmt} version is missing or not an integer ({v!r})")
    if v > version:
        raise TokenizerError(f"{source} was saved by a newer LLM Playground ({fmt} version {v}; this one reads up to "
                         f"version {version}): update the app")
    if v < 1:
        raise TokenizerError(f"{source}: invalid {fmt} version {v}")
