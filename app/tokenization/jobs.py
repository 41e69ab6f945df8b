"""The Tokenization pane's jobs: what runs on a worker thread when the text, the ids or the comparison change.

Each takes an ``is_stale()`` check and returns None when a newer job has made its result useless.
"""

import numpy as np

from app.jobs import is_user_error
from app.tokenization.analysis import MAX_SHOWN_BYTES, MAX_SHOWN_TOKENS, Analysis, analyse, parse_ids, spans_from_ids
from app.tokenization.compare import STRIP_TOKENS
from app.tokenization.encodings import load_tokenizer


def encode_job(key: str, text: str, allowed, is_stale, show_whitespace: bool = True):
    tokenizer = load_tokenizer(key)
    analysis = analyse(tokenizer, text, allowed_special=allowed, is_stale=is_stale)
    if analysis is None:
        return None
    analysis.labels_for(show_whitespace)  # here, not on the UI thread
    return tokenizer, analysis, None


def decode_job(key: str, ids_text: str, is_stale, show_whitespace: bool = True):
    tokenizer = load_tokenizer(key)
    ids, problem = parse_ids(ids_text, tokenizer)
    if is_stale():
        return None
    data = tokenizer.decode_bytes(ids)
    decoded = data.decode("utf-8", errors="replace")
    shown, size = [], 0
    for token in ids[:MAX_SHOWN_TOKENS]:
        size += len(tokenizer.token_bytes(token))
        if size > MAX_SHOWN_BYTES and shown:
            break
        shown.append(token)
    text, spans = spans_from_ids(tokenizer, shown)
    analysis = Analysis(tokenizer.name, text, len(ids), len(decoded), len(data), spans, bad_ids=problem,
                        ids=np.asarray(ids, dtype=np.int64))
    analysis.labels_for(show_whitespace)
    n_broken = decoded.count("\ufffd") - data.count("\ufffd".encode())  # U+FFFD that stand for broken bytes
    return tokenizer, analysis, (decoded, n_broken)


def compare_job(entries, text: str, allowed, is_stale):
    results = []
    for name, key in entries:
        if is_stale():
            return None
        try:
            tokenizer = load_tokenizer(key)
            results.append((name, analyse(tokenizer, text, allowed_special=allowed, max_tokens=STRIP_TOKENS,
                                          max_bytes=4000)))
        except Exception as exc:  # noqa: BLE001 - one broken tokenizer is a row of the table; a bug is raised
            if not is_user_error(exc):
                raise
            results.append((name, str(exc)))
    return results
