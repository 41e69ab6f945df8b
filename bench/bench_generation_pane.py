"""How long the Generation pane's chart takes to redraw after a decoding control moves (no model forward).

For a character vocabulary (65 tokens), GPT-2's (50 257), one as large as Qwen2's model vocabulary (151 936
characters, so its row labels are shorter than real tokens') and o200k's (200 019), each with a random tiny model
loaded through a real checkpoint, it moves the controls 50 times (temperature, top-k, top-p,
min-p, repetition penalty in turn) and reports mean and p95 of
  * update: the slot's work (decoding stages over the whole vocabulary + pushing data into the plot items), and
  * with paint: update plus a forced repaint of the chart;
and the UI thread's share of a step: showing a step's result (text, chart, last-draw strip) once the worker has
run the model and the decoding stages. One frame at 60 Hz is 16.7 ms.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_generation_pane.py
"""

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHARS_65 = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny Shakespeare's 65 characters
N_CHANGES = 50
QWEN_VOCAB = 151_936  # Qwen2's model vocabulary (its tokenizer's 151 646 tokens, padded)


def _tokenizer(kind):
    if kind.startswith("char"):
        from engine.tokenizers.chars import CharTokenizer

        if kind == "char":
            return CharTokenizer(CHARS_65)
        # QWEN_VOCAB distinct characters from "\n" on (surrogates skipped): a tokenizer as large as Qwen2's head
        # (the session shows only the tokenizer's tokens, so a larger head under a smaller tokenizer would not do)
        return CharTokenizer("".join(c for c in map(chr, range(10, 10 + QWEN_VOCAB + 2048))
                                     if not "\ud800" <= c <= "\udfff")[:QWEN_VOCAB])
    from engine.tokenizers import get_tokenizer

    return get_tokenizer(kind)  # gpt2: 50 257 tokens; o200k_base: 200 019, more than Qwen's 151 646


def _changes(controls):
    """N_CHANGES (name, action) pairs cycling through the controls, each a real value change."""
    temps = (0.5, 0.8, 1.3, 2.0, 0.3)
    out = []
    for i in range(N_CHANGES):
        which = i % 5
        if which == 0:
            out.append(("temperature", lambda v=temps[(i // 5) % 5]: controls.temperature.setValue(v)))
        elif which == 1:
            out.append(("top_k", lambda v=(i // 5) % 4 * 10 + 5: controls.top_k.setValue(v)))
        elif which == 2:
            out.append(("top_p", lambda v=(0.9, 0.6, 1.0, 0.75)[(i // 5) % 4]: controls.top_p.setValue(v)))
        elif which == 3:
            out.append(("min_p", lambda v=(0.05, 0.0, 0.1)[(i // 5) % 3]: controls.min_p.setValue(v)))
        else:
            out.append(("penalty", lambda v=(1.3, 1.0, 1.8)[(i // 5) % 3]: controls.penalty.setValue(v)))
    return out


def bench(kind, app, folder):
    import torch

    from app.generation.pane import GenerationPane
    from app.generation.state import GenerationState
    from app.jobs import JobRunner
    from engine.checkpoint import save_model
    from engine.model import GPT, GPTConfig
    from engine.presets import MODEL_SIZES

    tok = _tokenizer(kind)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=256, **MODEL_SIZES["tiny"]))
    path = os.path.join(folder, f"{kind}.pt")
    save_model(path, model, tok)

    # The state is built here, so the bench's clock starts before the pane's own handler of each change runs;
    # the pane announces the end of its work with sig_context_changed.
    runner = JobRunner()
    state = GenerationState(runner.submit)
    started = []
    state.events.changed.connect(lambda reason, record: started.append(time.perf_counter()))
    pane = GenerationPane(state=state)
    shown = []
    pane.sig_context_changed.connect(lambda *_: shown.append((time.perf_counter() - started[-1]) * 1e3))
    pane.resize(1280, 780)
    pane.prompt.setPlainText("ROMEO:\nBut soft, what light")
    pane.load_checkpoint(path)
    pane.show()
    _wait(app, lambda: not pane.busy and pane.snapshot is not None)
    assert pane.snapshot is not None, pane.banner.text()
    for _ in range(3):  # a few steps, so the repetition penalty has text to work on
        pane.step()
        _wait(app, lambda: not pane.busy)
    app.processEvents()

    forwards = pane.snapshot.forward_count
    update, painted = [], []
    for _, change in _changes(pane.controls):
        t0 = time.perf_counter()
        change()
        t1 = time.perf_counter()
        pane.chart.view.viewport().repaint()
        t2 = time.perf_counter()
        update.append((t1 - t0) * 1e3)
        painted.append((t2 - t0) * 1e3)
    assert pane.snapshot.forward_count == forwards, "a control change ran the model"

    shown.clear()
    for _ in range(N_CHANGES // 5):  # the UI thread's share of a step: from the result's arrival to its display
        pane.step()
        _wait(app, lambda: not pane.busy)
    pane.shutdown()
    runner.close()
    pane.close()
    return tok.n_vocab, update, painted, shown


def _wait(app, until, timeout=300):
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        app.processEvents()
        time.sleep(0.002)


def _p95(xs):
    return sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)]


def main():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    print(f"Generation pane: chart redraw after a decoding control change ({N_CHANGES} changes, no model forward)")
    print(f"{'vocabulary':>12} | {'update mean':>11} {'p95':>7} | {'with paint mean':>15} {'p95':>7} | "
          f"{'show a step mean':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("char", "gpt2", "char151936", "o200k_base"):
            n_vocab, update, painted, shown = bench(kind, app, folder)
            print(f"{n_vocab:>12} | {statistics.mean(update):>8.2f} ms {_p95(update):>4.2f} ms | "
                  f"{statistics.mean(painted):>12.2f} ms {_p95(painted):>4.2f} ms | "
                  f"{statistics.mean(shown):>13.2f} ms")


if __name__ == "__main__":
    main()
