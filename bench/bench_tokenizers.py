"""Tokenizer benchmarks: encode throughput per encoding, span computation, and BPE training against HF tokenizers.

    python bench/bench_tokenizers.py            # ~1 MB of text: tiny Shakespeare if ../shared/data has it
    python bench/bench_tokenizers.py --mb 10    # spans of 10 MB too

Timings are the best of a few repeats (wall clock, this machine, whatever else it is doing).
"""

import argparse
import os
import platform
import sys
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
    args = ap.parse_args(argv)

    source, text = corpus_text()
    mb = len(text.encode("utf-8")) / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"text: {source}, {mb:.2f} MB, {len(text):,} characters\n")

    print(f"{'encoding':<14} {'load s':>7} {'encode MB/s':>12} {'tokens':>9} {'bytes/tok':>9} {'span_table MB/s':>16} "
          f"{'spans() MB/s':>13}")
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
        print(f"{name:<14} {load_s:>7.2f} {mb / t_enc:>12.1f} {len(ids):>9,} {mb * 1e6 / len(ids):>9.2f} "
              f"{mb / t_tab:>16.1f} {mb / t_spans:>13.1f}")

    if args.mb:
        big = (text * int(args.mb * 1e6 / len(text) + 1))[:int(args.mb * 1e6)]
        enc = get_tokenizer("cl100k_base")
        t_tab, table = best_of(lambda: enc.span_table(big), repeats=1)
        t_spans, _ = best_of(lambda: enc.spans(big), repeats=1)
        print(f"\n{args.mb:g} MB with cl100k_base: span_table {t_tab:.2f} s ({len(table):,} tokens), "
              f"spans() {t_spans:.2f} s")

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
