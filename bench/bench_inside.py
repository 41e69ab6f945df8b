"""How long the Inside pane takes to fill for a 64, 256 and 1024-token text, on the bundled models and a
GPT-2-small-shaped one (124 M parameters, random weights: the cost does not depend on what the weights learned), each
laid out for decoding as the app's loader lays out every float32 model (engine.incremental.lay_out_for_decoding).

For each model and length it types the text into a real pane (900x600, the tab ``--view`` shown: the logit lens
unless told) and waits for it to fill, reporting
  * fill: from the request to every view showing the text (worker + delivery + the UI's steps),
  * painted: from the request to the end of the repaints that follow (posted events drained): the issue's figure,
  * lens: from the request to the logit lens showing every position (its tab computes the rest a slice per job),
  * worker: the text's job's compute (one forward pass watched through hooks, per-position scores, the current
    layer's attention maps coloured, the lens at the positions in view, the head),
  * UI: the UI thread's share of showing it (the sum of its steps) and its longest step (#: which; 0 the scores,
    1 the text, a piece per turn, 2 attention, 3 lens, 4 head: see InsidePane._on_analysed),
  * late: the longest the event loop was late (a 5 ms timer's lateness, paints and lens slices included),
  * baseline: a plain forward pass over the same ids (logits only) in the same run, and painted / baseline.
Runs alternate fill and baseline (A B A B) and report medians (late: the worst), because the machine may be shared.
Texts longer than a model's context slide to its last block_size tokens, as in the Generation pane. Garbage is
collected on the UI thread by a timer, as in the app.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_inside.py [--repeats 3] [--no-gpt2] [--only gpt2]
        [--lengths 256] [--view 1]
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
    from engine.incremental import lay_out_for_decoding  # as the app's loader lays out every float32 model

    out = []
    for path in sorted((assets_dir() / "models").glob("*.pt")):
        model, tok, _ = load_model(path)
        out.append((path.stem, lay_out_for_decoding(model), tok))
    if with_gpt2:
        from engine.model import GPT, GPTConfig
        from engine.presets import MODEL_SIZES
        from engine.tokenizers import get_tokenizer

        tok = get_tokenizer("gpt2")
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=1024, **MODEL_SIZES["gpt2-small"])).eval()
        out.append(("gpt2-small shape", lay_out_for_decoding(model), tok))
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
    parser.add_argument("--only", default="", help="only the models whose name contains this")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="comma-separated token counts")
    parser.add_argument("--view", type=int, default=2, help="the tab shown (0 predictions, 1 attention, 2 lens...)")
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
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # as the app does
    text = load_corpus("shakespeare")[:200_000]
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores (shared with other work: ratios matter, not seconds)")
    print(f"{'model':<18} {'tokens':>6} {'seen':>5} {'fill s':>7} {'painted s':>9} {'lens s':>7} {'worker s':>8} "
          f"{'UI ms':>6} {'step ms':>7}    {'late ms':>7} {'baseline s':>10} {'ratio':>6}")
    for name, model, tok in models(not args.no_gpt2 and (not args.only or args.only in "gpt2-small shape")):
        if args.only and args.only not in name:
            continue
        pane = InsidePane()
        pane.resize(900, 600)
        pane.show()
        pane.views.setCurrentIndex(args.view)
        pane.set_model(model, tok, name)
        settle = time.perf_counter() + 1.0  # the pane is on screen, its first paint and vocabulary labels done
        while pane.runner.busy or time.perf_counter() < settle:
            app.processEvents()
            time.sleep(0.005)
        all_ids = tok.encode(text)
        for n in lengths:
            ids = all_ids[:n]
            seen = ids[-model.config.block_size:]  # what the pane slides to (one token more on odd repeats)
            rows: dict[str, list] = {k: [] for k in ("fill", "painted", "lens", "worker", "ui", "step", "which",
                                                     "late", "base")}
            for r in range(args.repeats):
                # A: the pane
                marks: dict[str, float] = {}
                pane.sig_filled.connect(lambda: marks.setdefault("fill", time.perf_counter()))
                pane.sig_lens_complete.connect(lambda: marks.setdefault("lens", time.perf_counter()))
                ticks = []
                timer = QTimer()
                timer.setInterval(5)
                timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
                timer.start()
                started = time.perf_counter()
                pane.set_text(tok.decode(ids) + ("" if r % 2 == 0 else " "))  # a changed text each repeat
                pane.refresh()  # now, not after the typing pause
                while "fill" not in marks:
                    app.processEvents()
                    time.sleep(0.001)
                app.sendPostedEvents()  # the repaints the fill asked for
                app.processEvents()
                marks["painted"] = time.perf_counter()
                while "lens" not in marks and args.view == 2:
                    app.processEvents()
                    time.sleep(0.001)
                timer.stop()
                pane.sig_filled.disconnect()
                pane.sig_lens_complete.disconnect()
                for key in ("fill", "painted", "lens"):
                    rows[key].append(marks.get(key, started) - started)
                rows["worker"].append(pane.last_timings["compute_s"])
                rows["ui"].append(pane.last_timings["show_s"])
                rows["step"].append(pane.last_timings["longest_step_s"])
                rows["which"].append(pane.last_timings["longest_step"])
                gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [0.0]
                rows["late"].append(max(gaps) - 0.005)
                # B: the plain forward pass over what the model saw
                with torch.no_grad():
                    t0 = time.perf_counter()
                    model(torch.tensor([seen]))
                    rows["base"].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in rows.items()}
            lens = f"{med['lens']:>7.3f}" if args.view == 2 else f"{'-':>7}"
            print(f"{name:<18} {n:>6} {len(seen):>5} {med['fill']:>7.3f} {med['painted']:>9.3f} {lens} "
                  f"{med['worker']:>8.3f} {1000 * med['ui']:>6.1f} {1000 * max(rows['step']):>7.1f} "
                  f"#{rows['which'][rows['step'].index(max(rows['step']))]} "
                  f"{1000 * max(rows['late']):>7.1f} {med['base']:>10.3f} {med['painted'] / med['base']:>6.2f}",
                  flush=True)
        pane.shutdown()
        pane.deleteLater()


if __name__ == "__main__":
    main()
