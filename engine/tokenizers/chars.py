"""Character-level tokenizer: one token per character, the vocabulary is a corpus's sorted unique characters.

This is nanoGPT's shakespeare_char set-up (65 tokens for tiny Shakespeare). A character outside the vocabulary is
handled by an explicit policy: ``unknown="error"`` raises (naming the character and its position), ``"replace"``
maps it to the reserved id 0, ``<unk>``::

    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.chars, tok.encode("hello")
    (' dehlorw', [3, 2, 4, 4, 5])
    >>> CharTokenizer.from_text("ab", unknown="replace").encode("abc")
    [1, 2, 0]
"""

import hashlib

import numpy as np

from .base import Tokenizer, TokenizerError, array_to_list, check_format, describe_bytes, load_json, sanitize, save_json

FORMAT = "llm-playground-char"
VERSION = 1
UNK = "<unk>"
UNKNOWN_POLICIES = ("error", "replace")


_CODES_CHUNK = 1 << 20  # characters per UTF-32 encode: a few ms holding the GIL, then other threads may run


def _codes(text: str) -> np.ndarray:
    """(N,) uint32 code points of a surrogate-free str. "aé" -> array([97, 233])"""
    if len(text) <= _CODES_CHUNK:
        return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    out = np.empty(len(text), dtype=np.uint32)  # (N,)
    for i in range(0, len(text), _CODES_CHUNK):
        piece = text[i:i + _CODES_CHUNK]
        out[i:i + len(piece)] = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4")
    return out


class CharTokenizer(Tokenizer):
    """Ids for characters. With ``unknown="replace"`` id 0 is ``<unk>`` and the characters follow from id 1."""

    def __init__(self, chars: str, *, unknown: str = "error", name: str | None = None):
        """
        Args:
            chars: the vocabulary, one token per character, no repeats (``from_text`` sorts them).
            unknown: "error" (encoding an unknown character raises TokenizerError) or "replace" (it becomes ``<unk>``).
            name: shown in the app; defaults to "char:" + the first 8 hex digits of the vocabulary's sha256.
        """
        if unknown not in UNKNOWN_POLICIES:
            raise TokenizerError(f"unknown must be one of {UNKNOWN_POLICIES}, not {unknown!r}")
        if not isinstance(chars, str) or not chars:
            raise TokenizerError("a character vocabulary needs at least one character")
        if sanitize(chars) != chars:
            raise TokenizerError("a character vocabulary cannot hold lone surrogates")
        seen: set[str] = set()
        for c in chars:
            if c in seen:
                raise TokenizerError(f"the character {c!r} appears twice in the vocabulary")
            seen.add(c)
        self.chars = chars
        self.unknown = unknown
        self._offset = 1 if unknown == "replace" else 0  # id 0 is <unk> when unknown characters are replaced
        digest = hashlib.sha256(f"{unknown}\0{chars}".encode("utf-8")).hexdigest()[:8]
        self.name = name or f"char:{digest}"
        self.n_vocab = len(chars) + self._offset
        self.special_tokens = {}
        codes = _codes(chars)  # (V,)
        self._order = np.argsort(codes, kind="stable")  # (V,) sorted position -> index in chars
        self._sorted = codes[self._order]  # (V,) sorted code points, for searchsorted

    @classmethod
    def from_text(cls, text: str, *, unknown: str = "error", name: str | None = None) -> "CharTokenizer":
        """The tokenizer whose vocabulary is the sorted set of characters of ``text``."""
        text = sanitize(text)
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls("".join(sorted(set(text))), unknown=unknown, name=name)

    # -- Tokenizer

    def _encode(self, text, allowed):
        return array_to_list(self._encode_array(text, allowed))

    def _encode_array(self, text, allowed):
        if not text:
            return np.zeros(0, dtype=np.int64)
        codes = _codes(text)  # (N,)
        pos = np.searchsorted(self._sorted, codes)  # (N,) where each code would sit in the sorted vocabulary
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = self._sorted[pos] == codes  # (N,)
        ids = self._order[pos]  # (N,) int64 (argsort's indices)
        ids += self._offset
        if not found.all():
            if self.unknown == "error":
                i = int(np.argmin(found))
                c = text[i]
                raise TokenizerError(f"character {c!r} (U+{ord(c):04X}) at position {i} is not in the vocabulary "
                                     f"of {self.name} ({len(self.chars)} characters, learned from its corpus): remove "
                                     f"it from the text (a tokenizer built with unknown=\"replace\" maps such "
                                     f"characters to {UNK})")
            ids[~found] = 0
        return ids

    def _token_bytes_or_none(self, id):
        if id < self._offset:
            return "\ufffd".encode("utf-8")  # <unk> decodes to the replacement character
        return self.chars[id - self._offset].encode("utf-8")

    def _byte_lengths(self, ids, data):
        # one token per character, <unk> included: each covers its own character's UTF-8 bytes, from the position of
        # its lead byte (not a continuation byte 0b10xxxxxx) to the next one's
        buf = np.frombuffer(data, dtype=np.uint8)  # (B,)
        starts = np.flatnonzero((buf & 0xC0) != 0x80)  # (N,)
        lengths = np.empty_like(starts)  # (N,)
        np.subtract(starts[1:], starts[:-1], out=lengths[:-1])
        if len(lengths):
            lengths[-1] = len(buf) - starts[-1]
        return lengths

    def token_str(self, id: int) -> str:
        if self.unknown == "replace" and id == 0:
            return UNK
        return super().token_str(id)

    def merge_info(self, id: int) -> str:
        data = self.token_bytes(id)
        if id < self._offset:
            return f"{UNK}: stands for any character not in the vocabulary"
        c = data.decode("utf-8")
        return f"character {describe_bytes(data)} (U+{ord(c):04X})"

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "kind": "char", "name": self.name, "unknown": self.unknown,
                "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict, source: str = "the tokenizer data") -> "CharTokenizer":
        check_format(data, FORMAT, VERSION, source)
        chars, unknown, name = data.get("chars"), data.get("unknown", "error"), data.get("name")
        if not isinstance(chars, str):
            raise TokenizerError(f"{source}: the character vocabulary is missing")
        if name is not None and not isinstance(name, str):
            raise TokenizerError(f"{source}: the name must be a string")
        try:
            return cls(chars, unknown=unknown, name=name)
        except TokenizerError as e:
            raise TokenizerError(f"{source}: {e}") from None

    def save(self, path) -> None:
        """Write the tokenizer as a versioned JSON file (``CharTokenizer.load`` or ``get_tokenizer`` read it)."""
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        return cls.from_dict(load_json(path), str(path))
