"""engine.tokenizers.text: the one renderer of bytes as readable text, and the one text chunker."""

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tokenizers import get_tokenizer
from engine.tokenizers.base import sanitize, sanitize_counted
from engine.tokenizers.text import _INVISIBLE, chunks, render_bytes

ESCAPED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Zs"}


def reference(data: bytes, whitespace: str) -> str:
    """render_bytes written the slow, obvious way: one character or one stray byte at a time."""
    shown = {"escape": {" ": " ", "\n": "\\n", "\r": "\\r", "\t": "\\t"},
             "chips": {" ": "␣", "\n": "↵", "\r": "␍", "\t": "→"},
             "keep": {" ": " ", "\n": "\n", "\r": "\\r", "\t": "\t"}}[whitespace]
    out, i = [], 0
    while i < len(data):
        for n in (4, 3, 2, 1):  # the whole UTF-8 character starting here, if there is one
            try:
                ch = data[i:i + n].decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(ch) == 1:
                break
        else:
            out.append(f"<{data[i]:02X}>")
            i += 1
            continue
        i += n
        if ch in shown:
            out.append(shown[ch])
        elif unicodedata.category(ch) in ESCAPED_CATEGORIES:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else
                       f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


CASES = [
    # (bytes, escape, chips, keep)
    (b"", "", "", ""),
    (b" hello\n", " hello\\n", "␣hello↵", " hello\n"),
    (b"a\tb\r\n", "a\\tb\\r\\n", "a→b␍↵", "a\tb\\r\n"),
    (b"\x00\x1b\x7f", "\\x00\\x1b\\x7f", "\\x00\\x1b\\x7f", "\\x00\\x1b\\x7f"),
    ("\x85\xa0\xad".encode(), "\\x85\\xa0\\xad", "\\x85\\xa0\\xad", "\\x85\\xa0\\xad"),  # NEL, no-break space, SHY
    ("a\u200bb\u200dc\ufeff".encode(), "a\\u200bb\\u200dc\\ufeff", "a\\u200bb\\u200dc\\ufeff",
     "a\\u200bb\\u200dc\\ufeff"),
    ("\u2028\u202e\u2066\u3000".encode(), "\\u2028\\u202e\\u2066\\u3000", "\\u2028\\u202e\\u2066\\u3000",
     "\\u2028\\u202e\\u2066\\u3000"),
    ("\U000e0067".encode(), "\\U000e0067", "\\U000e0067", "\\U000e0067"),  # a tag character (flag sequences)
    (b"\xe2\x82", "<E2><82>", "<E2><82>", "<E2><82>"),  # a character cut short: its bytes, never U+FFFD
    (b"\xe2\x82 \xac", "<E2><82> <AC>", "<E2><82>␣<AC>", "<E2><82> <AC>"),
    (b"\xff\xfeok", "<FF><FE>ok", "<FF><FE>ok", "<FF><FE>ok"),
    ("é本😀\u0301".encode(), "é本😀\u0301", "é本😀\u0301", "é本😀\u0301"),  # printable: as they are
    ("\ue000\U00031350".encode(), "\ue000\U00031350", "\ue000\U00031350", "\ue000\U00031350"),  # private, unassigned
    ("\ufffd".encode(), "\ufffd", "\ufffd", "\ufffd"),  # a real U+FFFD in the text is a character like any other
    (b"it's", "it's", "it's", "it's"),
]


@pytest.mark.parametrize("data, escape, chips, keep", CASES)
def test_render_bytes_cases(data, escape, chips, keep):
    assert render_bytes(data) == escape
    assert render_bytes(data, whitespace="chips") == chips
    assert render_bytes(data, whitespace="keep") == keep
    for mode, want in (("escape", escape), ("chips", chips), ("keep", keep)):
        assert reference(data, mode) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24) | st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
       st.sampled_from(["escape", "chips", "keep"]))
def test_render_bytes_matches_the_slow_reference(data, whitespace):
    assert render_bytes(data, whitespace=whitespace) == reference(data, whitespace)


def test_escape_modes_show_every_blank_and_stay_on_one_line():
    data = bytes(range(0x80)) + "\xa0\u2028\u3000".encode()
    chips = render_bytes(data, whitespace="chips")
    assert " " not in chips and "\n" not in chips and "\t" not in chips
    assert "\n" not in render_bytes(data) and "\r" not in render_bytes(data, whitespace="keep")


def test_unknown_whitespace_mode_is_refused():
    with pytest.raises(KeyError):
        render_bytes(b"a", whitespace="dots")


@pytest.mark.skipif(unicodedata.unidata_version != "14.0.0", reason="the class is written for Unicode 14 tables")
def test_invisible_class_is_exactly_the_escaped_categories():
    """The written-out character class equals Cc, Cf, Zl, Zp and Zs but the space, in Python 3.11's tables."""
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        want = ch != " " and unicodedata.category(ch) in ESCAPED_CATEGORIES
        assert bool(_INVISIBLE.fullmatch(ch)) == want, f"U+{code:04X}"


# -- chunks


def test_chunks_cut_after_a_line_break_before_text():
    assert chunks("ab\ncd\nef", size=2) == ["ab\n", "cd\n", "ef"]
    assert chunks("short", size=100) == ["short"] and chunks("", size=4) == [""]
    text = "line one\n  indented\nline three\n" * 50
    pieces = chunks(text, size=40)
    assert "".join(pieces) == text and len(pieces) > 5
    assert all(p.endswith("\n") and not text[sum(map(len, pieces[:i + 1])):][:1].isspace()
               for i, p in enumerate(pieces[:-1]))


def test_chunks_bounded_without_boundaries_and_keep_crlf_whole():
    pieces = chunks("a" * 10_000, size=1000)
    assert "".join(pieces) == "a" * 10_000 and max(map(len, pieces)) <= 2000
    crlf = "x" * 999 + "\r\n" + "y" * 3000
    pieces = chunks(crlf, size=1000)
    assert "".join(pieces) == crlf and pieces[0].endswith("\r\n")
    assert not any(p.startswith("\n") for p in pieces)
    with pytest.raises(ValueError):
        chunks("abc", size=0)


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_chunks_keep_the_ids_of_the_whole_text(name):
    tok = get_tokenizer(name)
    text = "Hello world,\n it's 12345 x  y\tz.\r\n" * 200 + "naïve café 中文 " * 200
    pieces = chunks(text, size=97)
    assert len(pieces) > 10
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1_ \n\r\t", max_size=60), st.integers(1, 8))
def test_chunks_join_back_and_stay_bounded(text, size):
    pieces = chunks(text, size=size)
    assert "".join(pieces) == text
    assert all(pieces[:-1]) and all(len(p) <= 2 * size + 1 for p in pieces)  # no empty piece: the loop moves on
    assert not any(a.endswith("\r") and b.startswith("\n") for a, b in zip(pieces, pieces[1:]))


def test_one_surrogate_rule_counted_for_the_pane():
    """The Tokenization pane says how many lone surrogates a broken paste had: the engine's rule, counted."""
    broken = "a\ud800b\udfff\U0001f917"
    assert sanitize_counted(broken) == (sanitize(broken), 2) == ("a\ufffdb\ufffd\U0001f917", 2)
    assert sanitize_counted("fine \ufffd") == ("fine \ufffd", 0)
