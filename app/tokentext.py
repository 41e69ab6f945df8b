"""Showing a token's bytes truthfully: whitespace made visible, partial UTF-8 pieces as hex, never a bare U+FFFD.

Pure functions, no Qt: both the Tokenization and Generation panes use them.

    >>> visible(b" hello\\n")
    '␣hello↵'
    >>> visible(b"\\xe2\\x82")
    '<E2><82>'
"""

WHITESPACE = {" ": "␣", "\n": "↵", "\r": "␍", "\t": "→"}


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


def visible(data: bytes, show_whitespace: bool = True) -> str:
    """Readable text for a token's bytes: valid UTF-8 decoded, every byte that is not part of a whole character as <XX>."""
    out = []
    i = 0
    while i < len(data):
        try:
            # decode the longest valid prefix, then hex the first bad byte
            out.append("".join(_escape_char(c, show_whitespace) for c in data[i:].decode("utf-8")))
            break
        except UnicodeDecodeError as err:
            good = data[i : i + err.start].decode("utf-8")
            out.append("".join(_escape_char(c, show_whitespace) for c in good))
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
