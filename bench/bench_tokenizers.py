"""Tokenizer benchmarks: encode throughput per encoding, span computation, and BPE training against HF tokenizers.

    python bench/bench_tokenizers.py            # ~1 MB of text: tiny Shakespeare if ../shared/data has it
    python bench/bench_tokenizers.py --mb 10    # spans of 10 MB too, with the GIL stall they cause
    python bench/bench_tokenizers.py --mb 10 --no-train

Timings are the best of a few repeats (wall clock, this machine, whatever else it is doing).

"GIL stall" is what the app's UI thread would feel while a worker thread computes spans: a second thread wakes every
5 ms and records how late it woke at worst. Code that holds the GIL (a C call that builds a list of millions of ints)
makes it late by that call's length; numpy loops and tiktoken's encoder let it run. The "idle" figure is the same
measurement while the worker only sleeps: this machine's own noise (other processes, the OS scheduler).
"""

import argparse
import os
import platform
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.corpora import load_corpus  # noqa: E402
from engine.tokenizers import ENCODINGS, BPETokenizer, CharTokenizer, get_tokenizer  # noqa: E402

TINY = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")


def best_of(fn, repeats=3):
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def gil_stall(fn, tick=0.005, repeats=3):
    """(best seconds, smallest worst lateness in ms of a thread ticking every ``tick`` s while ``fn`` runs) over
    ``repeats`` runs (the smallest: the lateness this code causes, less the machine's noise)."""
    best_t, best_late = float("inf"), float("inf")
    for _ in range(repeats):
        stop = threading.Event()
        worst = [0.0]

        def ticker():
            last = time.perf_counter()
            while not stop.is_set():
                time.sleep(tick)
                now = time.perf_counter()
                worst[0] = max(worst[0], now - last - tick)
                last = now

        th = threading.Thread(target=ticker, daemon=True)
        th.start()
        time.sleep(3 * tick)  # let the ticker settle
        t = time.perf_counter()
        fn()
        best_t = min(best_t, time.perf_counter() - t)
        stop.set()
        th.join()
        best_late = min(best_late, worst[0] * 1000)
    return best_t, best_late


def corpus_text(n_bytes=1_115_394):
    if os.path.exists(TINY):
        return "tiny Shakespeare (../shared/data)", load_corpus(TINY)
    return "built-in shakespeare (first ~1.1 MB)", load_corpus("shakespeare")[:n_bytes]


def hf_train(text, vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary size (default 4096)")
    ap.add_argument("--mb", type=float, default=0, help="also time spans on this many MB of text")
    ap.add_argument("--no-train", action="store_true", help="skip the BPE training comparison")
    args = ap.parse_args(argv)

    source, text = corpus_text()
    mb = len(text.encode("utf-8")) / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"text: {source}, {mb:.2f} MB, {len(text):,} characters\n")

    print(f"{'encoding':<14} {'load s':>7} {'encode MB/s':>12} {'tokens':>9} {'bytes/tok':>9} {'span_table MB/s':>16} "
          f"{'spans() MB/s':>13} {'GIL stall ms':>13}")
    tokenizers = []
    for name in ENCODINGS:
        t = time.perf_counter()
        tok = get_tokenizer(name)
        tokenizers.append((name, tok, time.perf_counter() - t))
    char = CharTokenizer.from_text(text)
    tokenizers.append(("char", char, 0.0))
    for name, tok, load_s in tokenizers:
        t_enc, ids = best_of(lambda: tok.encode(text))
        t_tab, _ = best_of(lambda: tok.span_table(text))
        t_spans, _ = best_of(lambda: tok.spans(text), repeats=1)
        _, stall = gil_stall(lambda: tok.span_table(text))
        print(f"{name:<14} {load_s:>7.2f} {mb / t_enc:>12.1f} {len(ids):>9,} {mb * 1e6 / len(ids):>9.2f} "
              f"{mb / t_tab:>16.1f} {mb / t_spans:>13.1f} {stall:>13.1f}")

    if args.mb:
        big = (text * int(args.mb * 1e6 / len(text) + 1))[:int(args.mb * 1e6)]
        _, idle = gil_stall(lambda: time.sleep(0.5))
        print(f"\n{args.mb:g} MB of that text repeated (GIL stall: worst lateness of a 5 ms ticker thread; "
              f"idle {idle:.1f} ms):")
        for name, tok in [("cl100k_base", get_tokenizer("cl100k_base")), ("char", CharTokenizer.from_text(big))]:
            t_enc, stall_enc = gil_stall(lambda: tok.encode(big), repeats=2)
            t_tab, stall_tab = gil_stall(lambda: tok.span_table(big), repeats=2)
            print(f"  {name:<12} encode {t_enc:5.2f} s (GIL stall {stall_enc:5.1f} ms)   span_table {t_tab:5.2f} s "
                  f"(GIL stall {stall_tab:5.1f} ms)")
        enc = get_tokenizer("cl100k_base")
        t_spans, spans = best_of(lambda: enc.spans(big), repeats=1)
        print(f"  cl100k_base  spans() {t_spans:.2f} s ({len(spans):,} TokenSpan objects)")
        del spans

    if args.no_train:
        return 0
    print(f"\nBPE training, vocabulary {args.vocab}, same text:")
    t_ours, ours = best_of(lambda: BPETokenizer.train(text, args.vocab), repeats=2)
    print(f"  engine BPETokenizer.train   {t_ours:6.2f} s  (GPT-4 pre-split, {len(ours.merges)} merges, "
          f"{mb * 1e6 / len(ours.encode(text)):.2f} bytes/token)")
    try:
        t_hf, hf = best_of(lambda: hf_train(text, args.vocab), repeats=2)
    except ImportError:
        print("  HF tokenizers not installed: no comparison")
        return 0
    threads = os.environ.get("RAYON_NUM_THREADS", f"default ({os.cpu_count()} CPUs)")
    print(f"  HF tokenizers BpeTrainer    {t_hf:6.2f} s  (ByteLevel/GPT-2 pre-split, threads {threads}, "
          f"{mb * 1e6 / len(hf.encode(text).ids):.2f} bytes/token)")
    print(f"  ratio engine / HF: {t_ours / t_hf:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
