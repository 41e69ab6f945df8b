"""Training a BPE for the Train BPE tab, in a process of its own, so the UI never waits for the GIL.

Reading and decoding a 24 MB corpus and pre-splitting it are long calls into C that hold the GIL: run in a thread
of the app, they froze the UI for 1.2 s. :func:`train_in_process` runs :func:`train_bpe` in a spawned process (no Qt
is imported there) and passes its progress, its result or its failure back; Cancel stops it.
"""

import multiprocessing
import os
import pickle
import queue as queue_module
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from app.paths import tokenizers_dir
from app.tokenization.encodings import TOKENIZER_SUFFIX, load_tokenizer

CURVE_CHARS = 1_000_000  # the compression curve is measured on (at most) this much of the corpus
CURVE_POINTS = 12
REFERENCES = ("gpt2", "cl100k_base", "o200k_base")  # drawn beside the curve: what the big vocabularies reach
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class TrainResult:
    path: str
    name: str
    n_vocab: int
    seconds: float
    corpus_chars: int
    curve: list  # (vocab size, bytes per token)
    references: list  # (encoding, n_vocab, bytes per token)
    asked: int = 0  # the vocabulary size asked for (n_vocab is less when the corpus ran out of pairs to merge)


def curve_sizes(n_merged: int, points: int = CURVE_POINTS) -> list[int]:
    """Vocabulary sizes for the compression curve, evenly spaced on a log axis from 256 bytes to the full vocabulary.

    >>> curve_sizes(1024, 3)
    [256, 512, 1024]
    """
    if n_merged <= 256:
        return [n_merged]
    sizes = {round(256 * (n_merged / 256) ** (k / (points - 1))) for k in range(points)}
    return sorted(sizes)


def unique_path(folder: Path, name: str) -> Path:
    """folder/name.json, or name-2.json, name-3.json ... so that training never overwrites a saved tokenizer."""
    path, k = folder / f"{name}{TOKENIZER_SUFFIX}", 2
    while path.exists():
        path, k = folder / f"{name}-{k}{TOKENIZER_SUFFIX}", k + 1
    return path


def train_bpe(source: str, vocab_size: int, name: str, progress, cancel, folder: Path | None = None) -> TrainResult:
    """Load the corpus, train, measure the compression curve, save into ``folder`` (the app's tokenizers folder)."""
    from engine.corpora import load_corpus
    from engine.errors import UserError
    from engine.tokenizers import BPETokenizer, Cancelled

    if not _NAME.fullmatch(name):
        raise UserError(f"name {name!r}: use letters, digits, '.', '_' or '-' (up to 64), starting with a letter "
                         "or digit")
    text = load_corpus(source)
    if cancel():
        raise Cancelled("training cancelled")
    path = unique_path(folder or tokenizers_dir(), name)
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, vocab_size, name=path.stem, progress=progress, cancel=cancel)
    seconds = time.perf_counter() - start
    sample = text[:CURVE_CHARS]
    n_merged = tokenizer.n_vocab - len(tokenizer.special_tokens)
    curve = tokenizer.compression_curve(sample, curve_sizes(n_merged))
    n_bytes = len(sample.encode("utf-8"))
    references = []
    for encoding in REFERENCES:
        if cancel():
            raise Cancelled("training cancelled")
        ref = load_tokenizer(encoding)
        references.append((encoding, ref.n_vocab, n_bytes / max(1, len(ref.encode(sample)))))
    tokenizer.save(path)
    return TrainResult(str(path), path.stem, tokenizer.n_vocab, seconds, len(text), curve, references, vocab_size)


class TrainingProcessError(RuntimeError):
    """The training process ended without a result (killed, crashed)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the training process (its __cause__ in the app)."""


def train_in_process(source: str, vocab_size: int, name: str, progress, cancel, poll: float = 0.05) -> TrainResult:
    """:func:`train_bpe` in a spawned process; blocks this (worker) thread until it is done.

    ``progress(done, total)`` is called here as the child reports; ``cancel()`` is polled every ``poll`` seconds and
    stops the child (its ``Cancelled`` is raised here). Whatever the child raises is raised here, with the child's
    traceback as its cause.
    """
    ctx = multiprocessing.get_context("spawn")  # fork would copy the app's Qt state and threads
    messages, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_child, args=(source, vocab_size, name, str(tokenizers_dir()), messages, stop),
                        name="bpe-training", daemon=True)
    child.start()
    try:
        while True:
            if cancel():
                stop.set()
            try:
                kind, value = messages.get(timeout=poll)
            except queue_module.Empty:
                if not child.is_alive() and messages.empty():
                    raise TrainingProcessError(f"the BPE training process ended without a result (exit code "
                                               f"{child.exitcode})") from None
                continue
            if kind == "progress":
                progress(*value)
            elif kind == "done":
                return value
            else:
                exc, text = value
                raise exc from RemoteTraceback(text)
    finally:
        stop.set()
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        messages.close()  # its pipe and semaphores go now, not at exit (the resource tracker warned of leaks)
        messages.join_thread()


def _child(source: str, vocab_size: int, name: str, folder: str, messages, stop) -> None:
    """The training process: train, then put ("done", result) or ("failed", (exception, traceback text))."""
    try:
        os.nice(5)  # the app's UI thread shares the cores
    except OSError:
        pass
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.05 or done == total:  # at most ~20 messages a second
            last[0] = now
            messages.put(("progress", (done, total)))

    try:
        messages.put(("done", train_bpe(source, vocab_size, name, progress, stop.is_set, Path(folder))))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the app, which shows or reports it
        text = traceback.format_exc()
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot cross processes goes as its text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        messages.put(("failed", (exc, text)))
