"""Two text primitives the engine and the app share: a token's bytes made readable, and long text cut into pieces.

:func:`render_bytes` is the one place that turns bytes into text a person can read (the inspector, the token views,
the Generation chart's labels, ``merge_info``); :func:`chunks` is the one place that cuts long text where no
pre-tokenizer piece crosses (corpus encoding, BPE training, the editor's piecewise paste).

    >>> render_bytes(b" hello\\n"), render_bytes(b" hello\\n", whitespace="chips")
    (' hello\\\\n', '␣hello↵')
    >>> render_bytes(b"\\xe2\\x82 \\x00\\xe2\\x80\\x8b")
    '<E2><82> \\\\x00\\\\u200b'
"""

import re

# Shown escaped (\x00, \u200b): every character Python's Unicode tables (14.0, Python 3.11) put in Cc (controls),
# Cf (invisible format characters: soft hyphen, zero-width joiner, bidi controls, BOM, tags), Zl, Zp (line and
# paragraph separators) or Zs (spaces) but the plain space. Each draws as nothing or as a blank a reader cannot tell
# from a space. Unassigned and private-use code points are drawn as they are: a newer font may know them (emoji).
# Written out rather than computed (a pass over every code point costs ~0.3 s at import); a test checks it.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u1680\u180e\u2000-\u200f"
    "\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")

# how " ", "\n", "\r" and "\t" are shown in each whitespace mode (a character missing here is escaped)
_WHITESPACE = {
    "escape": {" ": " ", "\n": "\\n", "\r": "\\r", "\t": "\\t"},  # one line: messages, the inspector, merge_info
    "chips": {" ": "␣", "\n": "↵", "\r": "␍", "\t": "→"},  # every blank visible: the token views
    "keep": {" ": " ", "\n": "\n", "\r": "\\r", "\t": "\t"},  # the text's own lines and tabs: a layout of the text
}


def render_bytes(data: bytes, *, whitespace: str = "escape") -> str:
    """A token's bytes as readable text: valid UTF-8 decoded, invisible characters escaped, every byte that is not
    part of a whole character as <E2>, never a bare U+FFFD.

    ``whitespace`` says how " ", "\\n", "\\r" and "\\t" are shown: "escape" (``\\n``, space kept), "chips" (␣ ↵ ␍ →)
    or "keep" (as they are; ``\\r`` escaped).

    >>> render_bytes(b"\\t\\r\\n", whitespace="chips"), render_bytes(b"a\\tb\\r\\n", whitespace="keep")
    ('→␍↵', 'a\\tb\\\\r\\n')
    """
    table = _WHITESPACE[whitespace]
    out = []
    while data:
        try:
            out.append(_escape(data.decode("utf-8"), table))
            break
        except UnicodeDecodeError as e:  # keep the valid prefix, show one bad byte, go on after it
            out.append(_escape(data[:e.start].decode("utf-8"), table))
            out.append(f"<{data[e.start]:02X}>")
            data = data[e.start + 1:]
    return "".join(out)


def _escape(s: str, table: dict[str, str]) -> str:
    if s.isprintable() and (table[" "] == " " or " " not in s):  # the common case: nothing to change (C speed)
        return s
    return _INVISIBLE.sub(lambda m: table.get(m.group()) or _escape_char(m.group()), s.replace(" ", table[" "]))


def _escape_char(c: str) -> str:
    o = ord(c)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


# Pieces end after a newline that a non-space follows. No piece of the GPT-2 / GPT-4 style pre-split patterns spans
# such a boundary (pieces holding a newline end in whitespace), so encoding in pieces gives the ids of the whole text.
_LINE_BOUNDARY = re.compile(r"\n(?=\S)")
# A space after a letter or digit: every such pattern ends its letter / digit piece before it and starts " word".
# The match starts at the space (the cut goes before it): searched from the space, a literal, the scan runs 7x faster
# than a lookbehind tried at every character (2 MB of pasted ids: 17 ms instead of 111).
_WORD_BOUNDARY = re.compile(r" (?<=[^\W_] )")


def chunks(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of at least ``size`` and at most about 2 * ``size`` characters, at safe boundaries
    where it has them.

    A piece ends after a newline followed by a non-space (_LINE_BOUNDARY) found within ``size`` characters past the
    piece's first ``size``; failing that, before a space that follows a letter or digit (_WORD_BOUNDARY: also a
    boundary of every GPT-style pattern, so the ids stay those of the whole text); failing that (a run of one
    repeated character, say) the piece is cut where it stands (never between "\\r" and "\\n"), so that no encoder is
    ever handed a giant piece: such a run gets the ids of its pieces. Memory stays bounded by the piece size,
    whatever the text.

    >>> chunks("ab\\ncd\\nef", size=2)
    ['ab\\n', 'cd\\n', 'ef']
    >>> chunks("xxx\\r\\n\\r\\n", size=4)
    ['xxx\\r\\n', '\\r\\n']
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    pieces, start = [], 0
    while len(text) - start > size:
        window_end = min(start + 2 * size, len(text))
        m = _LINE_BOUNDARY.search(text, start + size - 1, window_end)
        if m is not None:
            end = m.end()  # after the newline
        elif (m := _WORD_BOUNDARY.search(text, start + max(size - 1, 1), window_end)) is not None:
            end = m.start()  # before the space
        else:
            end = start + size
            end += text[end - 1] == "\r" and text[end] == "\n"  # "\r\n" is one line break (and one token)
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces
