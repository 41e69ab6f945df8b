"""What the Tokenization pane shows, computed without Qt: counts, the spans that fit on screen, parsed ids, labels.

Everything here runs in a worker thread (or in a test without a QApplication). The pane only draws the result.

    >>> from engine import get_tokenizer
    >>> a = analyse(get_tokenizer("gpt2"), "Hello world")
    >>> a.n_tokens, a.n_bytes, [s.id for s in a.spans]
    (2, 11, [15496, 995])
"""

import codecs
from bisect import bisect_left
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from engine.errors import UserError
from engine.tokenizers import TokenSpan
from engine.tokenizers.base import sanitize_counted
from engine.tokenizers.text import render_bytes

from app.tokentext import hex_bytes

MAX_SHOWN_TOKENS = 10_000  # the views draw at most this many tokens (30,000 took 60-80 ms to lay out) ...
MAX_SHOWN_BYTES = 100_000  # ... or this many bytes of text; the counts always cover the whole text


@dataclass
class Analysis:
    """One encoding applied to one text: the counts of the whole text and the first spans, for drawing."""

    encoding: str  # the tokenizer's name, e.g. "cl100k_base"
    text: str  # the text the spans' character ranges index (sanitised: no lone surrogates)
    n_tokens: int
    n_chars: int
    n_bytes: int
    spans: list[TokenSpan] = field(default_factory=list)  # the first len(spans) tokens of the whole text
    n_surrogates: int = 0  # lone surrogates replaced by U+FFFD
    bad_ids: str = ""  # decode mode: what was wrong with the ids the user typed ("" when nothing)
    ids: np.ndarray | None = None  # (n_tokens,) every id of the whole text, not only the shown ones
    labels: list[str] | None = None  # label() of each shown span, made in the worker (see labels_for)
    labels_whitespace: bool = True  # the show_whitespace those labels were made with

    def labels_for(self, show_whitespace: bool) -> list[str]:
        """label() of each shown span, kept: the job makes them off the UI thread (10 000 distinct ones took
        ~0.1 s), and the view asks again only when "Show whitespace" changed."""
        if self.labels is None or self.labels_whitespace != show_whitespace:
            self.labels = [label(s.bytes, show_whitespace) for s in self.spans]
            self.labels_whitespace = show_whitespace
        return self.labels

    def ids_text(self) -> str:
        """Every id as a list, the way tiktokenizer copies them: "[15496, 995]"."""
        ids = self.ids.tolist() if self.ids is not None else [s.id for s in self.spans]
        return "[" + ", ".join(map(str, ids)) + "]"

    def counts_html(self) -> str:
        """The counts line: tokens · characters · bytes · bytes/token, numbers in bold."""
        return (f"<b>{self.n_tokens:,}</b> {plural(self.n_tokens, 'token')} · <b>{self.n_chars:,}</b> "
                f"{plural(self.n_chars, 'character')} · <b>{self.n_bytes:,}</b> {plural(self.n_bytes, 'byte')} · "
                f"<b>{self.bytes_per_token:.2f}</b> bytes/token")

    def notes(self, decoded: bool = False) -> str:
        """What the status line says about this result ("" when nothing): truncation, broken pastes, emptiness.

        Bad ids are not repeated here: the decode panel names them beside the ids they came from.
        """
        notes = []
        if self.truncated:
            notes.append(f"Showing the first {len(self.spans):,} of {self.n_tokens:,} tokens (the views draw up to "
                         f"{MAX_SHOWN_TOKENS:,} tokens / {MAX_SHOWN_BYTES // 1000} KB); the counts cover the whole "
                         f"{'ids' if decoded else 'text'}.")
        if self.n_surrogates:
            notes.append(f"{self.n_surrogates} unpaired surrogate(s) from a broken paste were replaced by U+FFFD.")
        if not self.n_tokens:
            notes.append("No ids to decode." if decoded else "Empty text: type or paste something above.")
        return " ".join(notes)

    @property
    def truncated(self) -> bool:
        return len(self.spans) < self.n_tokens

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens if self.n_tokens else 0.0

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.n_tokens if self.n_tokens else 0.0


def analyse(tokenizer, text: str, *, allowed_special=(), max_tokens: int = MAX_SHOWN_TOKENS,
            max_bytes: int = MAX_SHOWN_BYTES, is_stale=lambda: False) -> Analysis | None:
    """Count the whole text; build TokenSpans only for the leading tokens that fit the view (None once stale).

    The engine's span table holds the spans of the whole text as numpy arrays (cheap even for 10 MB); only the
    first ``max_tokens`` tokens (at most ``max_bytes`` of text) become TokenSpan objects.
    """
    clean, n_surrogates = sanitize_counted(text)  # as every encode does
    table = tokenizer.span_table(clean, allowed_special=allowed_special)
    if is_stale():
        return None
    n_shown = min(len(table), max_tokens)
    if n_shown and int(table.byte_ends[n_shown - 1]) > max_bytes:
        n_shown = max(1, int(np.searchsorted(table.byte_ends, max_bytes, side="right")))
    return Analysis(tokenizer.name, clean, len(table), len(clean), len(table.data), table.spans(0, n_shown),
                    n_surrogates=n_surrogates, ids=table.ids)


def spans_from_ids(tokenizer, ids: list[int]) -> tuple[str, list[TokenSpan]]:
    """Decode ids token by token: the text (invalid UTF-8 -> U+FFFD) and each token's span in it.

    A token whose bytes start or finish a character that continues in a neighbour is ``partial``; its character range
    covers that whole character.

    >>> from engine import get_tokenizer
    >>> text, spans = spans_from_ids(get_tokenizer("gpt2"), [8582, 97, 245])  # 🤗 in three pieces
    >>> text, [(s.char_start, s.char_end, s.partial) for s in spans]
    ('🤗', [(0, 1, True), (0, 1, True), (0, 1, True)])
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[str] = []
    n_chars = 0
    pending_before = False
    byte_pos = 0
    spans = []
    for k, token in enumerate(ids):
        data = tokenizer.token_bytes(token)
        piece = decoder.decode(data)
        pending_after = bool(decoder.getstate()[0])
        start = n_chars  # a character begun in an earlier token is the next one out of the decoder
        end = n_chars + len(piece) + (1 if pending_after else 0)
        partial = pending_before or pending_after or "\ufffd" in piece
        spans.append(TokenSpan(k, token, byte_pos, byte_pos + len(data), start, end, partial, data))
        out.append(piece)
        n_chars += len(piece)
        byte_pos += len(data)
        pending_before = pending_after
    out.append(decoder.decode(b"", final=True))
    return "".join(out), spans


class IdsError(UserError):
    """The ids the user typed are not all valid: the message names the bad ones."""


_ID_SEPARATORS = re.compile(r"[\s,;]+")
_PIECE = 65_536  # characters of ids parsed per call into C


def parse_ids(text: str, tokenizer=None) -> tuple[list[int], str]:
    """Ids typed as "1, 2 3", "[1, 2, 3]" (JSON) or one per line -> (valid ids, message naming the bad ones or "").

    Bad entries are skipped, never fatal, so the user sees what the rest decodes to. With a tokenizer, ids outside
    its vocabulary (out of range, or a hole such as cl100k_base's unused ids) are bad too.

    >>> parse_ids("[15496, 995]")
    ([15496, 995], '')
    >>> parse_ids("1, x, 2.5, -3")
    ([1], "not integers: 'x', '2.5'; not token ids: -3")
    """
    stripped = text.strip()
    if stripped.startswith("[") and len(stripped) > _PIECE:
        stripped = stripped.strip("[]")  # a long list: json.loads would hold the GIL for the whole parse
    elif stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError):  # not JSON, or nested past the parser's depth
            values = None
        if isinstance(values, list):
            stripped = " ".join(v if isinstance(v, str) else json.dumps(v) for v in values)
        else:
            stripped = stripped.strip("[]")
    ids, not_ints, negative = [], [], []
    for word in _words(stripped):
        if not word:
            continue
        if not re.fullmatch(r"[+-]?\d+", word):
            not_ints.append(repr(word))
        elif int(word) < 0:
            negative.append(word)
        else:
            ids.append(int(word))
    problems = []
    if not_ints:
        problems.append("not integers: " + _name_some(not_ints))
    if negative:
        problems.append("not token ids: " + _name_some(negative))
    if tokenizer is not None:
        bad = set()
        for token in set(ids):
            try:
                tokenizer.token_bytes(token)
            except UserError:  # TokenizerError: no token of this tokenizer
                bad.add(token)
        if bad:
            problems.append(f"not in the {tokenizer.name} vocabulary (ids 0..{tokenizer.n_vocab - 1}): "
                            + _name_some([str(t) for t in ids if t in bad]))
            ids = [t for t in ids if t not in bad]
    return ids, "; ".join(problems)


def _words(text: str):
    """The words between separators, split a piece at a time: one split of 2 MB of ids held the GIL (and so the UI
    thread) for ~100 ms."""
    start = 0
    while start < len(text):
        end = len(text)
        if start + _PIECE < end:
            m = _ID_SEPARATORS.search(text, start + _PIECE)
            end = m.start() if m else end
        yield from _ID_SEPARATORS.split(text[start:end])
        start = end


def _name_some(items: list[str], limit: int = 8) -> str:
    items = list(dict.fromkeys(items))  # each bad id once, in the order typed
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@lru_cache(maxsize=100_000)
def label(data: bytes, show_whitespace: bool) -> str:
    """A token as drawn in the view: every newline ends a line ("↵" first when whitespace is shown), tabs expanded.

    A token that starts with a combining mark is drawn on a dotted circle (◌́), so it has a width to hover and click
    and cannot join the token before it.

    >>> label(b" a\\n", True), label(b" a\\n", False), label(b"\\xe2\\x82", False)
    ('␣a↵\\n', ' a\\n', '<E2><82>')
    >>> label("\u0301".encode(), False) == "\u25cc\u0301"
    True
    """
    mode = "chips" if show_whitespace else "keep"
    pieces = [render_bytes(piece, whitespace=mode) for piece in data.split(b"\n")]
    if pieces[0] and unicodedata.category(pieces[0][0]) in ("Mn", "Me", "Mc"):
        pieces[0] = "\u25cc" + pieces[0]  # ◌, the dotted circle Unicode shows lone marks on
    text = ("↵\n" if show_whitespace else "\n").join(pieces)
    return text if show_whitespace else text.replace("\t", "    ")


def token_styles(analysis: Analysis, tokenizer) -> list[int]:
    """How the views draw each shown token: 0 plain, 1 a piece of a character, 2 a special token."""
    special = set(tokenizer.special_tokens.values())
    return [2 if s.id in special else 1 if s.partial else 0 for s in analysis.spans]


def plural(n: int, word: str) -> str:
    """plural(1, "token") -> 'token'; plural(2, "token") -> 'tokens'"""
    return word if n == 1 else word + "s"


def natural_key(name: str) -> list:
    """Sort key putting my-bpe before my-bpe-2 before my-bpe-10: digit runs compare as numbers.

    >>> sorted(["my-bpe-10", "my-bpe-2", "my-bpe"], key=natural_key)
    ['my-bpe', 'my-bpe-2', 'my-bpe-10']
    """
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name.lower()) if part]


def write_token_table(path: str, spans: list[TokenSpan]) -> None:
    """Write spans as CSV: index, id, text (undecodable bytes as U+FFFD), bytes as hex, character range."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["index", "id", "text", "bytes", "char_start", "char_end"])
        for span in spans:
            out.writerow([span.index, span.id, span.bytes.decode("utf-8", errors="replace"), span.bytes.hex(" "),
                          span.char_start, span.char_end])


def character_note(text: str, span: TokenSpan, spans: list[TokenSpan]) -> str:
    """For a partial token: each character it holds only a piece of, its bytes, and the tokens that form it together.

    Returns "" for a token made of whole characters.

    >>> from engine import get_tokenizer
    >>> spans = get_tokenizer("gpt2").spans("🤗")
    >>> character_note("🤗", spans[1], spans)
    "'🤗' U+1F917 = F0 9F A4 97 (this token: A4), formed by tokens #0–#2 together"
    """
    if not span.partial:
        return ""
    byte = len(text[: span.char_start].encode("utf-8"))  # where the first touched character starts
    notes = []
    for ch in text[span.char_start : span.char_end]:
        data = ch.encode("utf-8")
        start, end = byte, byte + len(data)
        byte = end
        if span.byte_start <= start and end <= span.byte_end:
            continue  # a whole character of this token
        mine = data[max(span.byte_start, start) - start : min(span.byte_end, end) - start]
        group = [s.index for s in spans if s.byte_start < end and s.byte_end > start]
        tokens = f"tokens #{group[0]}–#{group[-1]}" if len(group) > 1 else f"token #{group[0]}"
        notes.append(f"{ch!r} U+{ord(ch):04X} = {_hex(data)} (this token: {_hex(mine)}), formed by {tokens} together")
    return "; ".join(notes)


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix, by halving (slice comparisons run in C: fast on megabytes)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def follow_token(old: bytes, new: bytes, span: TokenSpan, new_spans: list[TokenSpan]) -> int:
    """Where token ``span`` of the text ``old`` (UTF-8) is after an edit made it ``new``: the index in ``new_spans`` of
    the same token (same id over the same bytes, moved with the text around it), or -1 when the edit touched it, it
    was split differently or it is no longer shown.

    >>> from engine import get_tokenizer
    >>> enc = get_tokenizer("gpt2")
    >>> old, new = "Hello world", "Oh, Hello world"
    >>> follow_token(old.encode(), new.encode(), enc.spans(old)[1], enc.spans(new))  # " world" moved right
    3
    >>> follow_token(old.encode(), b"Hello worlds", enc.spans(old)[1], enc.spans("Hello worlds"))  # edited: gone
    -1
    """
    prefix = _common_prefix(old, new)
    suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])  # the unchanged tail, not overlapping the head
    if span.byte_end <= prefix:
        start = span.byte_start
    elif span.byte_start >= len(old) - suffix:
        start = span.byte_start + len(new) - len(old)
    else:
        return -1
    k = bisect_left(new_spans, start, key=lambda s: s.byte_start)
    while k < len(new_spans) and new_spans[k].byte_start == start:
        candidate = new_spans[k]
        if candidate.id == span.id and candidate.byte_end - candidate.byte_start == span.byte_end - span.byte_start:
            return k
        k += 1
    return -1


def token_tooltip(analysis: Analysis, index: int) -> str:
    """What hovering token ``index`` shows: its position, id, visible text, bytes and, for a piece of a character, the
    character it helps form ("" for an index not shown)."""
    if not 0 <= index < len(analysis.spans):
        return ""
    span = analysis.spans[index]
    shown = render_bytes(span.bytes, whitespace="chips")
    tip = f"#{index}  id {span.id}\n{shown}\nbytes {hex_bytes(span.bytes)}"
    if span.partial:
        tip += "\npiece of " + character_note(analysis.text, span, analysis.spans)
    return tip

