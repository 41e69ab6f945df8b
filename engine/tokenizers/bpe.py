"""Trainable byte-level BPE: GPT-4-style regex pre-split, merges learned from a corpus, encoding by tiktoken's core.

Tokens 0..255 are the single bytes, token 256 + i is the i-th merge, and the special tokens come after the merges.
Training works on the unique pre-split chunks with their counts and updates pair counts incrementally, so a 4096-token
vocabulary on 1 MB of text takes seconds::

    >>> tok = BPETokenizer.train("the cat sat on the mat " * 50, 262)
    >>> [tok.token_bytes(i) for i in range(256, 261)]
    [b'at', b'he', b'the', b' the', b' c']
    >>> tok.encode("the mat<|endoftext|>", allowed_special="all")
    [258, 32, 109, 256, 261]

The file format is JSON with ``"format": "llm-playground-bpe"`` and ``"version": 1``, checked on load.
"""

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Callable

import regex
import tiktoken

from engine.errors import Cancelled

from .base import TokenizerError, byte_info, check_format, describe_bytes, load_json, sanitize, save_json
from .openai import CL100K_PATTERN, ENDOFTEXT, TiktokenBacked
from .text import chunks

FORMAT = "llm-playground-bpe"
VERSION = 1
GPT4_PATTERN = CL100K_PATTERN  # the pre-split of cl100k_base (GPT-4): letters, 1-3 digit numbers, punctuation runs
_PIECE_CHARS = 1 << 18  # pre-split the training text in pieces of about this many characters (cancel is checked)


# All tokens' bytes together: o200k_base's 200 000 tokens hold 1.4 MB; a merge chain of 100 000 would hold 5 GB.
MAX_VOCAB_BYTES = 64 * 2**20


def _check_pattern(pattern: str) -> regex.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise TokenizerError("the pre-split pattern must be a non-empty regular expression")
    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        raise TokenizerError(f"the pre-split pattern is not a valid regular expression: {e}") from None
    kept = "".join(compiled.findall(_COVERAGE_PROBE)) if compiled.groups == 0 else ""
    if kept != _COVERAGE_PROBE:
        lost = next((c for c, k in zip(_COVERAGE_PROBE, kept + "\0" * len(_COVERAGE_PROBE)) if c != k), "?")
        raise TokenizerError(f"the pre-split pattern must cover all of the text (with no groups): it drops characters "
                         f"such as {lost!r}, which would vanish from every encoding")
    return compiled


# letters, digits, spaces, newlines, punctuation, control characters, CJK, emoji: a pre-split pattern keeps them all
_COVERAGE_PROBE = "Hello, World! It's 1234 x\n\n\tend  of\r\n line\x00\x7f\u3000中文 😀 é_-\\\"'s/ \n"


def count_chunks(text: str, pattern: str, special_tokens=(), cancel: Callable[[], bool] | None = None) -> Counter:
    """Pre-split ``text`` with ``pattern`` and count each chunk's UTF-8 bytes; special-token text separates chunks
    and is not counted. "the cat the" -> {b"the": 1, b" cat": 1, b" the": 1}"""
    compiled = _check_pattern(pattern)
    counts: Counter[str] = Counter()
    if special_tokens:
        parts = re.split("|".join(map(re.escape, sorted(special_tokens, key=len, reverse=True))), text)
    else:
        parts = [text]
    for part in parts:
        for piece in chunks(part, _PIECE_CHARS):
            if cancel is not None and cancel():
                raise Cancelled("BPE training was cancelled")
            counts.update(compiled.findall(piece))
    return Counter({chunk.encode("utf-8"): n for chunk, n in counts.items()})


def learn_merges(chunk_counts: dict[bytes, int], n_merges: int, *, progress=None, cancel=None) -> list[tuple[int, int]]:
    """Learn up to ``n_merges`` merges from chunk -> count. Deterministic: the most frequent pair wins, ties go to the
    smallest pair of ids. A pair whose bytes an earlier token already has is merged into that token (no new id), so
    every token's bytes are unique, as tiktoken needs. {b"aaab": 1} with 2 merges -> [(97, 97), (256, 97)]"""
    words = [list(chunk) for chunk in chunk_counts if len(chunk) > 1]  # (chunk as ids); 1-byte chunks have no pairs
    counts = [n for chunk, n in chunk_counts.items() if len(chunk) > 1]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words that held it (maybe no longer)
    for wi, w in enumerate(words):
        c = counts[wi]
        for adjacent in zip(w, w[1:]):
            pair_counts[adjacent] += c
            where[adjacent].add(wi)
    heap = [(-c, pair) for pair, c in pair_counts.items()]  # max count first, then the smallest pair
    heapq.heapify(heap)
    vocab = [bytes([i]) for i in range(256)]  # id -> bytes
    id_of = {b: i for i, b in enumerate(vocab)}  # bytes -> id
    merges: list[tuple[int, int]] = []
    step = max(1, n_merges // 200)
    if progress is not None:
        progress(0, n_merges)
    while len(merges) < n_merges:
        if cancel is not None and cancel():
            raise Cancelled("BPE training was cancelled")
        pair: tuple[int, int] | None = None
        while heap:
            neg, p = heapq.heappop(heap)
            if pair_counts.get(p) == -neg:  # else a stale entry: the count changed since it was pushed
                pair = p
                break
        if pair is None:
            break  # every chunk is a single token: nothing left to merge
        a, b = pair
        new_bytes = vocab[a] + vocab[b]
        new_id = id_of.get(new_bytes)
        if new_id is None:
            new_id = len(vocab)
            vocab.append(new_bytes)
            id_of[new_bytes] = new_id
            merges.append(pair)
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for wi in where.pop(pair):
            w = words[wi]
            out, i, n = [], 0, len(w)
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            if len(out) == n:
                continue  # a stale entry of ``where``: the pair had already gone from this word
            c = counts[wi]
            for p in zip(w, w[1:]):
                delta[p] -= c
            for p in zip(out, out[1:]):
                delta[p] += c
                if p[0] == new_id or p[1] == new_id:
                    where[p].add(wi)
            words[wi] = out
        for p, d in delta.items():
            if d:
                c = pair_counts[p] + d
                if c > 0:
                    pair_counts[p] = c
                    heapq.heappush(heap, (-c, p))
                else:
                    del pair_counts[p]
        if progress is not None and (len(merges) % step == 0 or len(merges) == n_merges):
            progress(len(merges), n_merges)
    if progress is not None and len(merges) < n_merges:
        progress(n_merges, n_merges)  # ran out of pairs early: training is done all the same
    return merges


class BPETokenizer(TiktokenBacked):
    """A byte-level BPE tokenizer: 256 byte tokens, then one token per merge, then the special tokens."""

    def __init__(self, merges, *, pattern: str = GPT4_PATTERN, special_tokens=(ENDOFTEXT,), name: str = "bpe"):
        """
        Args:
            merges: (left id, right id) pairs; merge i makes token 256 + i and may only use ids below that.
            pattern: the regular expression that pre-splits text into chunks no token crosses.
            special_tokens: their ids follow the merges, in this order.
            name: a label; the tokenizer's ``name`` is "bpe:" + it.
        """
        _check_pattern(pattern)
        if not isinstance(name, str) or not name.strip():
            raise TokenizerError("a BPE tokenizer needs a non-empty name")
        # validate cheaply first (ids and token lengths only): merges forming a chain make tokens of 1, 2, 3, ...
        # bytes, and building them would take memory quadratic in the number of merges (a 1 MB file, 5 GB)
        clean = []
        lengths = [1] * 256
        total = 256
        for i, m in enumerate(merges):
            try:
                a, b = (int(x) for x in m)
            except (TypeError, ValueError):
                raise TokenizerError(f"merge {i} is {m!r}, not a pair of token ids") from None
            new_id = 256 + i
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise TokenizerError(f"merge {i} ({a}, {b}) uses an id that is not below its own id {new_id}")
            lengths.append(lengths[a] + lengths[b])
            total += lengths[-1]
            if total > MAX_VOCAB_BYTES:
                raise TokenizerError(f"the merges make tokens of {total:,}+ bytes in all by merge {i} (at most "
                                 f"{MAX_VOCAB_BYTES:,}): not a real vocabulary")
            clean.append((a, b))
        vocab = [bytes([i]) for i in range(256)]
        ranks = {b: i for i, b in enumerate(vocab)}
        for i, (a, b) in enumerate(clean):
            new_id = 256 + i
            data = vocab[a] + vocab[b]
            if data in ranks:
                raise TokenizerError(f"merge {i} ({a}, {b}) makes {data!r}, which token {ranks[data]} already is")
            vocab.append(data)
            ranks[data] = new_id
        special_tokens = list(special_tokens)
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise TokenizerError(f"a special token must be a non-empty string, not {s!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise TokenizerError(f"special tokens repeat: {special_tokens}")
        self.merges: list[tuple[int, int]] = clean
        self.pattern = pattern
        self.label = name
        self.name = f"bpe:{name}"
        self.special_tokens = {s: len(vocab) + k for k, s in enumerate(special_tokens)}
        self.n_vocab = len(vocab) + len(special_tokens)
        self._vocab = vocab + [s.encode("utf-8") for s in special_tokens]  # id -> bytes
        self._ranks = ranks
        try:
            self.encoding = tiktoken.Encoding(self.name, pat_str=pattern, mergeable_ranks=ranks,
                                              special_tokens=self.special_tokens)
        except ValueError as e:  # tiktoken's regex engine refused the pattern
            raise TokenizerError(f"tiktoken cannot use the pre-split pattern: {e}") from None

    @classmethod
    def train(cls, text: str, vocab_size: int, *, pattern: str = GPT4_PATTERN, special_tokens=(ENDOFTEXT,),
              progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
              name: str = "bpe") -> "BPETokenizer":
        """Learn a vocabulary of ``vocab_size`` ids (256 bytes + merges + special tokens) from ``text``.

        ``progress(done, total)`` is called as merges are learned; when ``cancel()`` returns True, training stops
        with ``Cancelled``. If the text runs out of pairs first, the vocabulary is smaller (see ``n_vocab``).
        Special-token text inside ``text`` separates chunks and is not learned from.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TokenizerError(f"vocab_size must be an integer, not {vocab_size!r}")
        special_tokens = list(special_tokens)
        smallest = 256 + len(special_tokens)
        if vocab_size < smallest:
            raise TokenizerError(f"vocab_size must be at least {smallest} (256 bytes + {len(special_tokens)} special "
                             f"tokens), not {vocab_size}")
        text = sanitize(text)
        if not text:
            raise TokenizerError("there is no text to train on")
        counts = count_chunks(text, pattern, special_tokens, cancel)
        merges = learn_merges(counts, vocab_size - smallest, progress=progress, cancel=cancel)
        return cls(merges, pattern=pattern, special_tokens=special_tokens, name=name)

    # -- Tokenizer

    def merge_info(self, id: int) -> str:
        data = self.token_bytes(id)
        if id < 256:
            return byte_info(id)
        if id in self._special_ids:
            return f"special token {data.decode()}"
        a, b = self.merges[id - 256]
        return f"merge of {describe_bytes(self._vocab[a])} + {describe_bytes(self._vocab[b])} (rank {id})"

    def compression_curve(self, text: str, sizes) -> list[tuple[int, float]]:
        """Bytes per token of ``text`` with the first ``size`` ids (bytes + that prefix of the merges), per size.

        Sizes above the merged vocabulary are clipped to it; the result is sorted by size with no repeats.
        """
        data = sanitize(text).encode("utf-8")
        if not data:
            raise TokenizerError("the compression curve needs some text")
        full = 256 + len(self.merges)
        clipped = set()
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, int) or s < 256:
                raise TokenizerError(f"vocabulary sizes must be integers of at least 256, not {s!r}")
            clipped.add(min(s, full))
        text = data.decode("utf-8")
        curve = []
        for size in sorted(clipped):
            enc = self.encoding if size == full else tiktoken.Encoding(
                f"{self.name}[:{size}]", pat_str=self.pattern, special_tokens={},
                mergeable_ranks={b: r for b, r in self._ranks.items() if r < size})
            curve.append((size, len(data) / len(enc.encode_ordinary(text))))
        return curve

    # -- saving

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "kind": "bpe", "name": self.label, "pattern": self.pattern,
                "n_vocab": self.n_vocab, "special_tokens": dict(self.special_tokens),
                "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, data: dict, source: str = "the tokenizer data") -> "BPETokenizer":
        check_format(data, FORMAT, VERSION, source)
        merges, special, pattern = data.get("merges"), data.get("special_tokens"), data.get("pattern")
        if not isinstance(merges, list):
            raise TokenizerError(f"{source}: the merges are missing")
        if not isinstance(special, dict) or not all(isinstance(v, int) for v in special.values()):
            raise TokenizerError(f"{source}: special_tokens must map each special token to its id")
        if not isinstance(pattern, str):
            raise TokenizerError(f"{source}: the pre-split pattern must be a non-empty regular expression")
        names = sorted(special, key=lambda token: special[token])
        try:
            tok = cls(merges, pattern=pattern, special_tokens=names, name=data.get("name", "bpe"))
        except TokenizerError as e:
            raise TokenizerError(f"{source}: {e}") from None
        if tok.special_tokens != special:
            raise TokenizerError(f"{source}: special token ids {special} do not follow the {len(merges)} merges "
                             f"(expected {tok.special_tokens})")
        if data.get("n_vocab", tok.n_vocab) != tok.n_vocab:
            raise TokenizerError(f"{source}: n_vocab is {data.get('n_vocab')} but the merges and special tokens make "
                             f"{tok.n_vocab}")
        return tok

    def save(self, path) -> None:
        """Write the tokenizer as a versioned JSON file (``BPETokenizer.load`` or ``get_tokenizer`` read it)."""
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        return cls.from_dict(load_json(path), str(path))
