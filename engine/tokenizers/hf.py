"""A Hugging Face ``tokenizer.json`` behind the engine's Tokenizer interface, with each token's true bytes.

The ``tokenizers`` library does the splitting (ids equal its ids); this module only works out what bytes each id
stands for, which the library does not say directly:

    byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM)   a token string is bytes spelled with GPT-2's byte -> character
                                                     table ("Ġthe" = b" the"); mapped back exactly
    SentencePiece style (Llama 2, TinyLlama)        "▁" stands for a space and "<0xE2>" is the single byte 0xE2
                                                     (byte fallback), so a split character shows its real bytes
    added / special tokens                          their text, UTF-8

    >>> tok = HFTokenizer.from_file("tokenizer.json")          # doctest: +SKIP
    >>> [tok.token_bytes(i) for i in tok.encode("Hello world")]  # doctest: +SKIP
    [b'Hello', b' world']

Special tokens in text are ordinary text unless allowed (as for every engine tokenizer): the library's
``encode_special_tokens`` mode encodes them as text, and allowed ones are split out first.
"""

import hashlib
import json
import os
import re

import numpy as np

from .base import Tokenizer, TokenizerError, byte_info, describe_bytes, ids_to_array

FORMAT = "hf-tokenizer"
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table. 32 -> 'Ġ', 65 -> 'A', 10 -> 'Ċ'."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def _mentions(node, type_name: str) -> bool:
    """Whether a tokenizer.json component (a dict, possibly a "Sequence" of them) contains a part of this type."""
    if isinstance(node, dict):
        if node.get("type") == type_name:
            return True
        return any(_mentions(v, type_name) for v in node.values() if isinstance(v, (dict, list)))
    if isinstance(node, list):
        return any(_mentions(v, type_name) for v in node)
    return False


def _prepends_space(spec: dict) -> bool:
    """SentencePiece-style tokenizers put a "▁" before the text (the "dummy prefix"), which is no byte of it."""
    for part in (spec.get("pre_tokenizer"), spec.get("normalizer")):
        if _mentions(part, "Prepend"):
            return True
        for node in _iter_nodes(part):
            if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") != "never" \
                    and node.get("add_prefix_space", True):
                return True
    return False


def _iter_nodes(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _iter_nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from _iter_nodes(v)


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (from a tokenizer.json) with exact token bytes."""

    def __init__(self, json_text: str, *, name: str = "tokenizer.json", source: str | None = None,
                 bos_token: str | None = None):
        """bos_token: the model's beginning-of-sequence token (tokenizer_config.json names it, not tokenizer.json)."""
        import tokenizers

        source = source or name
        try:
            spec = json.loads(json_text)
            if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
                raise TokenizerError("it has no \"model\" section")
            self._tok = tokenizers.Tokenizer.from_str(json_text)
        except Exception as e:  # noqa: BLE001 - json errors, the library's "data did not match any variant"
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TokenizerError(f"{source} is not a usable tokenizer.json ({text[:160]})") from None
        self._tok.encode_special_tokens = True  # special-token text is text; allowed ones are split out first
        self._json = json_text
        self.name = name
        self.kind = ("byte-level BPE" if _mentions(spec.get("pre_tokenizer"), "ByteLevel")
                     or _mentions(spec.get("decoder"), "ByteLevel") else
                     "SentencePiece-style" if spec["model"].get("byte_fallback") or _mentions(spec, "Metaspace")
                     else spec["model"].get("type", "unknown"))
        self._byte_level = self.kind == "byte-level BPE"
        self._dummy_prefix = not self._byte_level and _prepends_space(spec)
        vocab = self._tok.get_vocab(with_added_tokens=True)  # str -> id
        self.n_vocab = max(vocab.values()) + 1 if vocab else 0
        added = {t["content"]: t for t in spec.get("added_tokens") or [] if isinstance(t, dict) and "content" in t}
        self.special_tokens = {c: vocab[c] for c, t in added.items() if t.get("special") and c in vocab}
        table: list[bytes | None] = [None] * self.n_vocab
        for text, i in vocab.items():
            table[i] = text.encode("utf-8") if text in added else self._piece_bytes(text)
        self._table = table
        self._lengths = np.array([len(b or b"") for b in table], dtype=np.int64)  # (V,)
        self._special_re = None
        self.bos_token = bos_token if isinstance(bos_token, str) else None

    @classmethod
    def from_file(cls, path, name: str | None = None, bos_token: str | None = None) -> "HFTokenizer":
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise TokenizerError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenizerError(f"{path} is not a usable tokenizer.json (not UTF-8 text)") from None
        return cls(text, name=name or os.path.basename(os.path.dirname(os.path.abspath(path))), source=path,
                   bos_token=bos_token)

    def _piece_bytes(self, piece: str) -> bytes:
        if self._byte_level:
            try:
                return bytes(_UNICODE_TO_BYTE[c] for c in piece)
            except KeyError:  # not spelled with the byte table (an odd vocabulary entry): its text
                return piece.encode("utf-8")
        m = _BYTE_TOKEN.fullmatch(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace("\u2581", " ").encode("utf-8")

    # -- Tokenizer interface

    def _encode(self, text: str, allowed: frozenset[str]) -> list[int]:
        return self._encode_array(text, allowed).tolist()

    def _encode_array(self, text: str, allowed: frozenset[str]) -> np.ndarray:
        if not allowed:
            return ids_to_array(self._tok.encode(text, add_special_tokens=False).ids)
        pattern = re.compile("(" + "|".join(map(re.escape, sorted(allowed, key=len, reverse=True))) + ")")
        out: list[int] = []
        for k, piece in enumerate(pattern.split(text)):
            if k % 2:
                out.append(self.special_tokens[piece])
            elif piece:
                out += self._tok.encode(piece, add_special_tokens=False).ids
        return ids_to_array(out)

    def _token_bytes_or_none(self, id: int) -> bytes | None:
        return self._table[id] if 0 <= id < self.n_vocab else None

    def _byte_lengths(self, ids: np.ndarray, data: bytes) -> np.ndarray:
        lengths = self._lengths[ids]  # (N,)
        total = int(lengths.sum())
        if total != len(data) and self._dummy_prefix and len(lengths) and total == len(data) + 1 \
                and (self._table[int(ids[0])] or b"").startswith(b" "):
            lengths = lengths.copy()
            lengths[0] -= 1  # the "▁" SentencePiece put before the text is no byte of it
        return lengths

    def span_table(self, text: str, *, allowed_special=()):
        try:
            return super().span_table(text, allowed_special=allowed_special)
        except AssertionError:
            normalizer = self._tok.normalizer
            if normalizer is None:
                raise TokenizerError(f"{self.name}: its tokens do not cover this text byte for byte") from None
            # a normalizer (e.g. Qwen2's NFC) changed the text before splitting it: show the tokens of the text
            # the model reads
            return super().span_table(normalizer.normalize_str(text), allowed_special=allowed_special)

    def decode_text(self, ids) -> str:
        """The library's own decoding (drops SentencePiece's dummy prefix, joins byte-fallback pieces)."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def merge_info(self, id: int) -> str:
        b = self.token_bytes(id)
        if id in self._special_ids:
            return f"special token {describe_bytes(b)}"
        if len(b) == 1:
            return byte_info(b[0])
        return f"{self.kind} token {describe_bytes(b)} (id {id})"

    def to_dict(self) -> dict:
        return {"kind": "hf", "format": FORMAT, "version": 1, "name": self.name, "bos_token": self.bos_token,
                "sha256": hashlib.sha256(self._json.encode("utf-8")).hexdigest(), "json": self._json}

    @classmethod
    def from_dict(cls, data: dict, source: str = "the tokenizer data") -> "HFTokenizer":
        text = data.get("json")
        if not isinstance(text, str):
            raise TokenizerError(f"{source}: a Hugging Face tokenizer description needs its tokenizer.json text")
        return cls(text, name=str(data.get("name") or "tokenizer.json"), source=source, bos_token=data.get("bos_token"))

    def __eq__(self, other):
        return type(other) is type(self) and other._json == self._json

    def __hash__(self):
        return hash((type(self).__name__, self.name))
