"""The longest UI-thread stall of the Tokenization pane in three heavy moments a user can cause.

Run headless:  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_tokenization_stalls.py [--repeat 3]

  paste 1 MB        1 MB of mixed text pasted into the editor, until the pane shows its tokens
  decode 300k ids   300 000 ids pasted into Decode ids, until the pane shows the decoded text
  train BPE 24 MB   a BPE (vocabulary 512) trained on a 24 MB text file, from Train until the result is shown

For each it prints the longest gap between the ticks of a 5 ms timer on the UI thread (what a user feels as a
freeze; the goal is under 100 ms), the 99th percentile of the gaps, and how long the whole thing took. The same timer
on an idle event loop is the baseline, measured in the same run. The paste itself is part of the measurement: it runs
inside the event loop, as a real paste does. What the program copied from makes (the text, the list of ids as text) is
made before the clock starts: until 2026-12 the ids were joined inside the measured paste, which added ~150 ms of the
bench's own work to the "decode 300k ids" stall.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PySide6.QtCore import QElapsedTimer, QMimeData, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PARAGRAPH = ("The quick brown fox jumps over the lazy dog; tokenizers split this text into pieces.\n"
             "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # café, naïve, über\n"
             "東京は日本の首都です。 Emoji: 🤗👩‍💻🚀  numbers 1234567890\n\n")


def text_of(n_bytes: int, seed: int = 0) -> str:
    unit = (PARAGRAPH + f"{seed}\n").encode()
    return (unit * (n_bytes // len(unit) + 1))[:n_bytes].decode("utf-8", errors="ignore")


class Ticker:
    """A 5 ms timer on the UI thread; the gaps between its ticks are the stalls."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.gaps: list[float] = []
        self.last = None
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = self.clock.nsecsElapsed() / 1e6
        if self.last is not None:
            self.gaps.append(now - self.last)
        self.last = now

    def run(self, app, start, done, timeout=600.0) -> dict:
        """Tick while ``start()`` (run inside the event loop) sets off the work, until ``done()``."""
        self.gaps, self.last = [], None
        self.clock.start()
        self.timer.start()
        t0 = time.perf_counter()
        QTimer.singleShot(20, start)
        end = t0 + timeout
        started = [False]
        QTimer.singleShot(20, lambda: started.__setitem__(0, True))
        while not (started[0] and done()):
            if time.perf_counter() > end:
                raise TimeoutError("the pane did not finish in time")
            app.processEvents()
            time.sleep(0.001)
        total = time.perf_counter() - t0
        for _ in range(5):  # the last repaint counts too
            app.processEvents()
            time.sleep(0.006)
        self.timer.stop()
        gaps = sorted(self.gaps)
        return {"max": gaps[-1], "p99": gaps[int(0.99 * (len(gaps) - 1))], "total": total}


def idle(app, ticker) -> dict:
    end = [time.perf_counter() + 1.0]
    return ticker.run(app, lambda: None, lambda: time.perf_counter() > end[0])


def paste_text(app, ticker, pane, k) -> dict:
    from app.tokenization.pane import TEXT_TAB

    text = text_of(1_000_000, k)
    pane.input_tabs.setCurrentIndex(TEXT_TAB)
    pane.set_text("")
    wait(app, lambda: pane.analysis is not None and pane.analysis.text == "")

    def start():
        mime = QMimeData()
        mime.setText(text)
        QGuiApplication.clipboard().setMimeData(mime)
        pane.editor.setFocus()
        pane.editor.paste()

    return ticker.run(app, start, lambda: pane.analysis is not None and pane.analysis.n_chars == len(text))


def paste_ids(app, ticker, pane, k) -> dict:
    from app.tokenization.pane import DECODE_TAB

    ids = [(i * 7919 + k) % 50000 for i in range(300_000)]
    copied = ", ".join(map(str, ids))  # built before the clock: the other program's copy (150 ms of join here)
    pane.decode.ids_edit.setPlainText("")
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    wait(app, lambda: pane.analysis is not None and pane.analysis.n_tokens == 0)

    def start():
        QGuiApplication.clipboard().setText(copied)
        pane.decode.ids_edit.setFocus()
        pane.decode.ids_edit.paste()

    return ticker.run(app, start, lambda: pane.analysis is not None and pane.analysis.n_tokens == len(ids))


def train_bpe(app, ticker, pane, k, path) -> dict:
    bpe = pane.bpe
    bpe.set_corpus_file(path)
    bpe.vocab.setValue(512)
    bpe.name.setText(f"stall-bench-{k}")
    before = bpe.last_result
    return ticker.run(app, bpe.train, lambda: not bpe.training and bpe.last_result is not before)


def wait(app, condition, timeout=120.0) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the pane did not settle")
        app.processEvents()
        time.sleep(0.001)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated: paste,decode,train")
    args = parser.parse_args(argv)
    home = tempfile.mkdtemp(prefix="llmp-stall-bench-")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")  # never touch the user's settings or tokenizers
    os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
    corpus = os.path.join(home, "corpus-24mb.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(text_of(24_000_000))

    app = QApplication.instance() or QApplication([])
    import torch  # noqa: F401 - as in the app, whose panes are built once torch has loaded behind the window
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # as the app does: no garbage collection in worker threads
    from app.tokenization.pane import TokenizationPane

    pane = TokenizationPane()
    pane.resize(1280, 820)
    pane.show()
    pane.set_text("warm up")
    wait(app, lambda: pane.analysis is not None and pane.analysis.text == "warm up")
    ticker = Ticker()
    cases = {"idle (baseline)": lambda k: idle(app, ticker),
             "paste 1 MB": lambda k: paste_text(app, ticker, pane, k),
             "decode 300k ids": lambda k: paste_ids(app, ticker, pane, k),
             "train BPE 24 MB": lambda k: train_bpe(app, ticker, pane, k, corpus)}
    only = {"paste": "paste 1 MB", "decode": "decode 300k ids", "train": "train BPE 24 MB"}
    chosen = {only[o] for o in args.only.split(",") if o} or set(cases)
    print(f"{'case':<18} {'max stall ms':>12} {'p99 gap ms':>11} {'total s':>8}   (median of {args.repeat}; "
          f"{os.cpu_count()} CPUs)")
    try:
        for name, case in cases.items():
            if name not in chosen and not name.startswith("idle"):
                continue
            runs = [case(k) for k in range(args.repeat)]
            med = {key: statistics.median(r[key] for r in runs) for key in ("max", "p99", "total")}
            worst = max(r["max"] for r in runs)
            print(f"{name:<18} {med['max']:12.0f} {med['p99']:11.1f} {med['total']:8.2f}   (worst {worst:.0f} ms)",
                  flush=True)
    finally:
        pane.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
