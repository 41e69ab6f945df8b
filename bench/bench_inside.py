"""How long the Inside pane takes to fill for a 64, 256 and 1024-token text, on the bundled models and a
GPT-2-small-shaped one (124 M parameters, random weights: the cost does not depend on what the weights learned).

For each model and length it types the text into a real pane and waits for it to fill, reporting
  * fill: from the request to every view showing the text (worker + delivery + UI),
  * worker: the job's compute (one forward pass watched through hooks, per-position scores, the current layer's
    attention maps, the logit lens at the chosen position's columns, the head),
  * UI: the UI thread's share of showing it, and the longest the event loop was late (a 5 ms timer's lateness),
  * baseline: a plain forward pass over the same ids (logits only) in the same run, and fill / baseline.
Runs alternate fill and baseline (A B A B) and report medians, because the machine may be shared.
Texts longer than a model's context slide to its last block_size tokens, as in the Generation pane.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_inside.py [--repeats 3] [--no-gpt2]
    .venv/bin/python bench/bench_inside.py --bpc     # bits per character of the bundled models instead

--bpc scores every bundled model on the same held-out text, the last 10% of the Shakespeare corpus's characters
(what each model's validation split holds, give or take a line), in non-overlapping windows of its context with
engine.interpret.token_losses: bits per character = total loss in bits / characters predicted.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LENGTHS = (64, 256, 1024)


def models(with_gpt2: bool):
    import torch

    from app.paths import assets_dir
    from engine.checkpoint import load_model

    out = []
    for path in sorted((assets_dir() / "models").glob("*.pt")):
        model, tok, _ = load_model(path)
        out.append((path.stem, model, tok))
    if with_gpt2:
        from engine.model import GPT, GPTConfig
        from engine.presets import MODEL_SIZES
        from engine.tokenizers import get_tokenizer

        tok = get_tokenizer("gpt2")
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=1024, **MODEL_SIZES["gpt2-small"])).eval()
        out.append(("gpt2-small shape", model, tok))
    return out


def bits_per_char(fraction: float = 0.1):
    import math

    import torch

    from app.paths import assets_dir
    from engine import interpret
    from engine.checkpoint import load_model
    from engine.corpora import load_corpus

    torch.set_num_threads(1)
    text = load_corpus("shakespeare")
    held_out = text[int(len(text) * (1 - fraction)):]
    print(f"held-out text: the last {len(held_out):,} characters of the Shakespeare corpus")
    for path in sorted((assets_dir() / "models").glob("*.pt")):
        model, tok, _ = load_model(path)
        ids = tok.encode(held_out)
        block = model.config.block_size
        total, chars, scored = 0.0, 0, 0
        for s in range(0, len(ids) - 1, block):
            window = ids[s:s + block]
            if len(window) < 2:
                break
            total += float(interpret.token_losses(model, window).sum())
            chars += len(tok.decode(window[1:]))
            scored += len(window) - 1
        print(f"{path.name:<24} {len(ids):>8,} tokens  {chars / scored:.2f} characters per token  "
              f"loss {total / scored:.3f} nats per token  {total / math.log(2) / chars:.3f} bits per "
              "character", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-gpt2", action="store_true", help="leave out the 124 M model (its load takes a while)")
    parser.add_argument("--bpc", action="store_true", help="bits per character of the bundled models")
    args = parser.parse_args()
    if args.bpc:
        return bits_per_char()

    import torch
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.inside.pane import InsidePane
    from engine.corpora import load_corpus

    torch.set_num_threads(1)  # as the pane's worker runs
    app = QApplication.instance() or QApplication(sys.argv)
    text = load_corpus("shakespeare")[:200_000]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores (shared with other work: ratios matter, not seconds)")
    print(f"{'model':<20} {'tokens':>6} {'seen':>5} {'fill s':>8} {'worker s':>9} {'UI ms':>7} {'late ms':>8} "
          f"{'baseline s':>10} {'ratio':>6}")
    for name, model, tok in models(not args.no_gpt2):
        pane = InsidePane()
        pane.resize(900, 600)
        pane.show()
        pane.set_model(model, tok, name)
        all_ids = tok.encode(text)
        for n in LENGTHS:
            ids = all_ids[:n]
            seen = ids[-model.config.block_size:]  # what the pane slides to (one token more on odd repeats)
            fills, workers, shows, lates, bases = [], [], [], [], []
            for r in range(args.repeats):
                # A: the pane
                done = []
                pane.sig_filled.connect(lambda: done.append(time.perf_counter()))
                ticks = []
                timer = QTimer()
                timer.setInterval(5)
                timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
                timer.start()
                started = time.perf_counter()
                pane.set_text(tok.decode(ids) + ("" if r % 2 == 0 else " "))  # a changed text each repeat
                pane.refresh()  # now, not after the typing pause
                while not done:
                    app.processEvents()
                    time.sleep(0.001)
                timer.stop()
                pane.sig_filled.disconnect()
                fills.append(done[0] - started)
                workers.append(pane.last_timings["compute_s"])
                shows.append(pane.last_timings["show_s"])
                gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [0.0]
                lates.append(max(gaps) - 0.005)
                # B: the plain forward pass over what the model saw
                with torch.no_grad():
                    t0 = time.perf_counter()
                    model(torch.tensor([seen]))
                    bases.append(time.perf_counter() - t0)
            fill, base = statistics.median(fills), statistics.median(bases)
            print(f"{name:<20} {n:>6} {len(seen):>5} {fill:>8.3f} {statistics.median(workers):>9.3f} "
                  f"{1000 * statistics.median(shows):>7.1f} {1000 * max(lates):>8.1f} {base:>10.3f} "
                  f"{fill / base:>6.2f}", flush=True)
        pane.shutdown()
        pane.deleteLater()


if __name__ == "__main__":
    main()
