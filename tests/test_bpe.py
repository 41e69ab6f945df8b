"""The trainable byte-level BPE: the fast trainer agrees with a naive one, training is deterministic, progress and
cancel work, encoding (through tiktoken) agrees with a pure-Python merge loop, and the file format round-trips."""

import json
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tokenizers import GPT4_PATTERN, BPETokenizer, Cancelled, get_tokenizer, tokenizer_from_dict
from engine.tokenizers.bpe import count_chunks, learn_merges

FAST = settings(max_examples=60, deadline=None)

TEXT = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people. 1234 + 56789 = 58023!
Ünïcödé: 日本語のテキスト, 한국어, emoji 👨‍👩‍👧 and e\u0301.
""" * 8


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 400, name="test")


# -- references, written the slow and obvious way


def naive_merges(chunk_counts, n_merges):
    """Recount every pair after every merge; the most frequent pair wins, ties to the smallest pair."""
    words = {chunk: list(chunk) for chunk in chunk_counts}
    vocab = [bytes([i]) for i in range(256)]
    merges = []
    while len(merges) < n_merges:
        counts = Counter()
        for chunk, w in words.items():
            for p in zip(w, w[1:]):
                counts[p] += chunk_counts[chunk]
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        data = vocab[pair[0]] + vocab[pair[1]]
        if data in vocab:
            new = vocab.index(data)
        else:
            new = len(vocab)
            vocab.append(data)
            merges.append(pair)
        for chunk, w in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[chunk] = out
    return merges


def naive_encode(tok, text):
    """Pre-split with the pattern, then merge the adjacent pair whose bytes have the lowest rank, until none is left
    (tiktoken's rule)."""
    ranks = {tok.token_bytes(i): i for i in range(256 + len(tok.merges))}
    ids = []
    for chunk in regex.findall(tok.pattern, text):
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], float("inf")))
            if parts[best] + parts[best + 1] not in ranks:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids.extend(ranks[p] for p in parts)
    return ids


# -- training


def test_fast_trainer_equals_naive_trainer_on_text():
    counts = count_chunks(TEXT, GPT4_PATTERN, ["<|endoftext|>"])
    assert learn_merges(counts, 150) == naive_merges(counts, 150)


@FAST
@given(st.dictionaries(st.binary(min_size=1, max_size=8).map(lambda b: bytes(x % 3 + 97 for x in b)),
                       st.integers(1, 5), max_size=6),
       st.integers(0, 30))
def test_fast_trainer_equals_naive_trainer_property(chunk_counts, n_merges):
    assert learn_merges(chunk_counts, n_merges) == naive_merges(chunk_counts, n_merges)


def test_first_merge_is_the_most_frequent_pair():
    tok = BPETokenizer.train("ab ab ab cd cd xy", 258, special_tokens=())
    # "ab" 3 times; then " ab", " c" and "cd" 2 times each: the tie goes to the smallest pair, (32, 99) = " c"
    assert tok.merges == [(97, 98), (32, 99)]


def test_training_is_deterministic(tok):
    again = BPETokenizer.train(TEXT, 400, name="test")
    assert again.merges == tok.merges and again == tok


def test_vocabulary_layout(tok):
    assert tok.n_vocab == 400 and len(tok.merges) == 400 - 256 - 1
    assert tok.special_tokens == {"<|endoftext|>": 399}
    assert tok.name == "bpe:test"
    assert [tok.token_bytes(i) for i in range(3)] == [b"\x00", b"\x01", b"\x02"]
    for i, (a, b) in enumerate(tok.merges):
        assert tok.token_bytes(256 + i) == tok.token_bytes(a) + tok.token_bytes(b)
    assert len({tok.token_bytes(i) for i in range(tok.n_vocab)}) == tok.n_vocab


def test_special_tokens_in_training_text_are_not_learned():
    text = "<|endoftext|>" * 50 + "hello hello"
    tok = BPETokenizer.train(text, 300)
    assert all(b"|" not in tok.token_bytes(256 + i) for i in range(len(tok.merges)))


def test_runs_out_of_pairs():
    tok = BPETokenizer.train("abab", 1000)
    assert tok.merges == [(97, 98), (256, 256)]
    assert tok.n_vocab == 256 + 2 + 1


def test_training_arguments_are_checked():
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.train("abc", 256)
    with pytest.raises(ValueError, match="no text"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="integer"):
        BPETokenizer.train("abc", 300.0)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        BPETokenizer.train("abc", 300, pattern="(")


def test_progress_and_cancel():
    calls = []
    BPETokenizer.train(TEXT, 400, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 143) and calls[-1] == (143, 143)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))

    seen = []

    def cancel_after_some():
        return len(seen) > 3

    with pytest.raises(Cancelled):
        BPETokenizer.train(TEXT, 400, progress=lambda d, t: seen.append(d), cancel=cancel_after_some)
    assert 0 < seen[-1] < 143
    with pytest.raises(Cancelled):
        BPETokenizer.train(TEXT, 400, cancel=lambda: True)


# -- encoding


@pytest.mark.parametrize("text", ["", " ", "Speak, speak.", "First Citizen:\r\nhello  world\n\n", "👨‍👩‍👧 e\u0301",
                                  "unseen words: zyxwvut qqq 999999", "<|endoftext|>", "\x00\t\n"], ids=repr)
def test_encode_agrees_with_naive_merges(tok, text):
    assert tok.encode(text) == naive_encode(tok, text)
    assert tok.decode(tok.encode(text)) == text


@FAST
@given(st.text())
def test_roundtrip_property(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    spans = tok.spans(text)
    assert b"".join(s.bytes for s in spans) == text.encode("utf-8") and [s.id for s in spans] == ids


def test_special_tokens(tok):
    text = "end<|endoftext|>start"
    assert 399 not in tok.encode(text)
    assert tok.encode(text, allowed_special="all") == tok.encode("end") + [399] + tok.encode("start")
    assert tok.merge_info(399) == "special token <|endoftext|>"
    assert tok.decode([399]) == "<|endoftext|>"


def test_merge_info(tok):
    assert tok.merge_info(65) == "byte 0x41 'A'"
    assert tok.merge_info(0xE6) == "byte 0xE6"
    a, b = tok.merges[0]
    assert tok.merge_info(256) == f"merge of '{chr(a)}' + '{chr(b)}' (rank 256)"
    with pytest.raises(ValueError, match="400"):
        tok.merge_info(400)


def test_compression_curve(tok):
    curve = tok.compression_curve(TEXT, [4096, 256, 300, 350])
    assert [s for s, _ in curve] == [256, 300, 350, 399]
    assert curve[0][1] == 1.0
    assert curve[-1][1] == len(TEXT.encode()) / len(tok.encode(TEXT))
    assert curve[1][1] > 1.0
    with pytest.raises(ValueError, match="at least 256"):
        tok.compression_curve(TEXT, [100])
    with pytest.raises(ValueError, match="needs some text"):
        tok.compression_curve("", [300])


# -- saving


def test_save_load_roundtrip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    again = get_tokenizer(str(path))
    assert isinstance(again, BPETokenizer) and again == tok
    assert again.encode(TEXT) == tok.encode(TEXT)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "llm-playground-bpe" and data["version"] == 1
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=2), "newer LLM Playground"),
    (lambda d: d.update(version="1"), "version is missing or not an integer"),
    (lambda d: d.update(format="minbpe v1"), "not a llm-playground-bpe tokenizer"),
    (lambda d: d.update(merges=[[1, 300]]), "not below its own id 256"),
    (lambda d: d.update(merges=[[1, 2], [1, 2]]), "already is"),
    (lambda d: d.update(merges="1 2"), "merges are missing"),
    (lambda d: d["special_tokens"].update({"<|endoftext|>": 5}), "do not follow"),
    (lambda d: d.update(n_vocab=7), "n_vocab is 7"),
    (lambda d: d.update(pattern="(?P<"), "not a valid regular expression"),
])
def test_load_rejects_bad_files(tok, tmp_path, change, message):
    data = tok.to_dict()
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        get_tokenizer(path)


def test_pre_split_in_pieces_equals_whole_text(monkeypatch):
    import engine.tokenizers.bpe as bpe

    whole = Counter(c.encode() for c in regex.findall(GPT4_PATTERN, TEXT))
    monkeypatch.setattr(bpe, "_PIECE_CHARS", 37)  # cut the text at many newlines
    assert count_chunks(TEXT, GPT4_PATTERN) == whole
