"""How the app draws a token beside its readable text: hex bytes, a Python literal, and the label cut into runs
that cannot shape into each other.

The readable text itself comes from the engine, the one place that makes bytes visible:
``engine.tokenizers.text.render_bytes(data, whitespace="chips")`` ('␣hello↵', '<E2><82>'). Pure functions, no Qt.
"""

import re

_HEX_RUN = re.compile(r"((?:<[0-9A-F]{2}>)+)")


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
    """``shown`` (a label from ``render_bytes``) cut where its text meets its hex bytes, to be drawn as separate runs.

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
