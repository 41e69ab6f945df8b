"""How fast the Tokenization pane re-renders: text set -> tokenized in the worker -> views laid out and painted.

Run headless:  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_tokenization_pane.py [--repeat 3]

For 1 KB, 100 KB and 1 MB of mixed text (prose, code, accents, CJK, emoji) it prints, per encoding:
  total     from refresh() (the debounce skipped) until the token view has painted the result
  ui        the part spent on the UI thread pushing the result into the views (render)
  paint     one full repaint of the token view's viewport
  stall     the longest gap between 5 ms UI-thread timer ticks while the job ran: what a user would feel
  shown     tokens drawn / tokens counted (the views draw at most MAX_SHOWN_TOKENS / MAX_SHOWN_BYTES)
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog; tokenizers split this text into pieces.\n"
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # café, naïve, über\n"
    "東京は日本の首都です。 Emoji: 🤗👩‍💻🚀  numbers 1234567890\n\n"
)
SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}


def make_text(n_bytes: int) -> str:
    unit = PARAGRAPH.encode("utf-8")
    text = (unit * (n_bytes // len(unit) + 1))[:n_bytes].decode("utf-8", errors="ignore")
    return text


def wait(app, condition, timeout=120.0) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the pane did not render in time")
        app.processEvents()
        time.sleep(0.0005)


def measure(app, pane, text: str) -> dict:
    pane.set_text(text)
    gaps, last = [], [None]
    clock = QElapsedTimer()
    clock.start()

    def tick():
        now = clock.elapsed()
        if last[0] is not None:
            gaps.append(now - last[0])
        last[0] = now

    ticker = QTimer()
    ticker.setInterval(5)
    ticker.timeout.connect(tick)

    render_times = []
    original = pane.render

    def timed_render():
        t = time.perf_counter()
        original()
        render_times.append(time.perf_counter() - t)

    pane.render = timed_render
    pane.analysis = None
    start = time.perf_counter()
    ticker.start()
    pane.refresh()
    wait(app, lambda: pane.analysis is not None and pane.analysis.text == text)
    pane.token_view.viewport().repaint()
    total = time.perf_counter() - start
    ticker.stop()
    pane.render = original
    t = time.perf_counter()
    pane.token_view.viewport().repaint()
    paint = time.perf_counter() - t
    a = pane.analysis
    return {"total": total, "ui": sum(render_times), "paint": paint, "stall": max(gaps, default=0) / 1000,
            "shown": len(a.spans), "tokens": a.n_tokens}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encodings", default="gpt2,o200k_base")
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication([])
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    from app.tokenization.pane import TokenizationPane

    pane = TokenizationPane()
    pane.resize(1280, 820)
    pane.show()
    app.processEvents()
    print(f"{'encoding':<12} {'text':>7} {'total ms':>9} {'ui ms':>7} {'paint ms':>9} {'stall ms':>9}  shown/tokens")
    try:
        for encoding in args.encodings.split(","):
            pane.set_encoding(encoding)
            measure(app, pane, "warm up " + encoding)  # loads the encoding
            for size_name, n_bytes in SIZES.items():
                text = make_text(n_bytes)
                runs = [measure(app, pane, text + f" {k}") for k in range(args.repeat)]
                med = {key: statistics.median(r[key] for r in runs) for key in ("total", "ui", "paint", "stall")}
                ms = {key: value * 1e3 for key, value in med.items()}
                print(f"{encoding:<12} {size_name:>7} {ms['total']:9.1f} {ms['ui']:7.1f} {ms['paint']:9.1f} "
                      f"{ms['stall']:9.1f}  {runs[0]['shown']:,}/{runs[0]['tokens']:,}")
    finally:
        pane.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
