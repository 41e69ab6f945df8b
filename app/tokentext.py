"""Showing a token's bytes truthfully: whitespace made visible, partial UTF-8 pieces as hex, never a bare U+FFFD.

Pure functions, no Qt: both the Tokenization and Generation panes use them.

    >>> visible(b" hello\\n")
    '␣hello↵'
    >>> visible(b"\\xe2\\x82")
    '<E2><82>'
"""

import re

WHITESPACE = {" ": "␣", "\n": "↵", "\r": "␍", "\t": "→"}
_HEX_RUN = re.compile(r"((?:<[0-9A-F]{2}>)+)")
# the characters _escape_char may change (space: made visible); text without them is shown as it is
_SPECIAL = re.compile("[\x00-\x20\x7f-\x9f\ufeff\u200b-\u200f\u2028-\u202e]")


def _escape_char(ch: str, show_whitespace: bool) -> str:
    if show_whitespace and ch in WHITESPACE:
        return WHITESPACE[ch]
    code = ord(ch)
    if ch in "\n\t" and not show_whitespace:
        return ch
    if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
        return f"\\x{code:02x}"
    if ch == "\ufeff" or 0x200B <= code <= 0x200F or 0x2028 <= code <= 0x202E:
        return f"\\u{code:04x}"  # invisible format characters
    return ch


def _escape_text(text: str, show_whitespace: bool) -> str:
    """_escape_char over the text, calling it only for the characters that may change (one regex pass in C)."""
    return _SPECIAL.sub(lambda m: _escape_char(m.group(), show_whitespace), text)


def visible(data: bytes, show_whitespace: bool = True) -> str:
    """Readable text for a token's bytes: valid UTF-8 decoded, every byte not part of a whole character as <XX>."""
    out = []
    i = 0
    while i < len(data):
        try:
            # decode the longest valid prefix, then hex the first bad byte
            out.append(_escape_text(data[i:].decode("utf-8"), show_whitespace))
            break
        except UnicodeDecodeError as err:
            good = data[i : i + err.start].decode("utf-8")
            out.append(_escape_text(good, show_whitespace))
            out.append(f"<{data[i + err.start]:02X}>")
            i += err.start + 1
    return "".join(out)


def hex_bytes(data: bytes) -> str:
    """b"\\xe2\\x82" -> 'E2 82'"""
    return " ".join(f"{b:02X}" for b in data)


def python_repr(data: bytes) -> str:
    """The token as a Python literal with escapes: str if whole UTF-8, bytes otherwise."""
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(data)


def shaping_runs(shown: str) -> list[str]:
    """``shown`` (a label from :func:`visible`) cut where its text meets its hex bytes, to be drawn as separate runs.

    Drawn as one run, a mark at the end of the text (a Devanagari virama: U+094D) shapes with the "<" after it:
    the font chosen for the Devanagari run draws the "<" too and the virama attaches to it. Separate runs cannot
    shape into each other.

    >>> shaping_runs("\u094d<E0><A4>x")
    ['\u094d', '<E0><A4>', 'x']
    >>> shaping_runs("plain")
    ['plain']
    """
    if shown.isascii() or "<" not in shown:
        return [shown]
    return [piece for piece in _HEX_RUN.split(shown) if piece]


def isolated_html(shown: str, hex_color: str = "#a0213a") -> str:
    """``shown`` as escaped HTML with its hex runs in their own colour: QTextLayout starts a new run at every change
    of format, so the hex bytes are shaped apart from the text (see :func:`shaping_runs`).

    >>> isolated_html("\u094d<E0>")
    "\u094d<span style='color:#a0213a'>&lt;E0&gt;</span>"
    """
    from html import escape

    runs = shaping_runs(shown)
    return "".join(f"<span style='color:{hex_color}'>{escape(r)}</span>" if _HEX_RUN.fullmatch(r) else escape(r)
                   for r in runs)
