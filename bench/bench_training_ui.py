"""How responsive the UI stays while the Training pane trains: lateness of a 10 ms timer, idle and during a run.

    python bench/bench_training_ui.py [--steps 300] [--idle 5] [--processes 1]

Opens the real TrainingPane (offscreen unless a display is set), measures how late a 10 ms QTimer fires while
nothing runs, then starts the shakespeare-char-cpu preset (nanoGPT's CPU config) for --steps steps on
../shared/data/tinyshakespeare.txt (or the built-in Shakespeare) through the pane's Start button, and measures
again until the run ends. The pane does all its usual work meanwhile: polling the queue, curves, progress, samples.

Qt is imported inside main() only: the training processes are spawned, and a spawned child re-imports this script.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
TICK_MS = 10


def lateness_stats(late_ms: list[float]) -> str:
    if not late_ms:
        return "no ticks"
    ordered = sorted(late_ms)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"p50 {statistics.median(ordered):6.2f} ms   p99 {p99:6.2f} ms   max {ordered[-1]:6.2f} ms   "
            f"({len(ordered)} ticks)")


def curves_100k_ms(app) -> float:
    """Median time to push 100 000 points into the plots and repaint them."""
    import math

    import numpy as np

    from app.training.curves import CurvesWidget
    from app.training.history import History

    history = History()
    rng = np.random.default_rng(0)
    for step in range(1, 100_001):
        history.add_step(step, step * 768, 4.0 * math.exp(-step / 20_000) + 0.1 * rng.random(), 1e-3, 1.0)
    widget = CurvesWidget(history)
    widget.resize(900, 700)
    widget.show()
    app.processEvents()
    times = []
    for _ in range(20):
        t = time.perf_counter()
        widget.refresh()
        widget.graphics.viewport().repaint()
        times.append(1000 * (time.perf_counter() - t))
    widget.close()
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measurement")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.training.curves import CurvesWidget
    from app.training.pane import TrainingPane
    from app.training.runner import NICE, RunController

    # time the pane's own UI-thread work, apart from what the (shared) machine does to the event loop
    handler_ms: dict[str, list[float]] = {"queue poll + dispatch": [], "curves redraw": []}

    def timed(fn, key):
        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                handler_ms[key].append(1000 * (time.perf_counter() - t))
        return wrapper

    RunController.poll = timed(RunController.poll, "queue poll + dispatch")
    CurvesWidget.refresh = timed(CurvesWidget.refresh, "curves redraw")

    app = QApplication.instance() or QApplication([])
    from app.gcguard import collect_on_ui_thread, freeze_long_lived
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    pane = TrainingPane()
    pane.resize(1280, 820)
    pane.show()
    freeze_long_lived()  # as the app does once its panes are built

    clock = QElapsedTimer()
    clock.start()
    ticks: list[float] = []
    last = [None]

    def on_tick():
        now = clock.nsecsElapsed() / 1e6
        if last[0] is not None:
            ticks.append(max(0.0, now - last[0] - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(on_tick)

    def measure_until(done, limit_s: float) -> list[float]:
        ticks.clear()
        last[0] = None
        timer.start()
        loop = QEventLoop()  # a real event loop: it sleeps until something happens, like the app's
        deadline = time.monotonic() + limit_s
        check = QTimer()
        check.setInterval(100)
        check.timeout.connect(lambda: loop.quit() if done() or time.monotonic() > deadline else None)
        check.start()
        loop.exec()
        check.stop()
        timer.stop()
        return list(ticks)

    corpus = str(TINY_SHAKESPEARE) if TINY_SHAKESPEARE.is_file() else "shakespeare"
    form = pane.form
    form.choose_preset("shakespeare-char-cpu")
    out_dir = Path(tempfile.mkdtemp(prefix="bench-training-ui-")) / "run"
    if corpus != "shakespeare":
        form.set_values({**form.values(), "corpus": corpus})
    form.set_values({**form.values(), "max_iters": args.steps, "processes": args.processes, "out_dir": str(out_dir)})
    pane.recheck()
    if not pane.start_button.isEnabled():
        print("cannot start:", pane.problems.text(), file=sys.stderr)
        return 1

    idle = measure_until(lambda: False, args.idle)
    t0, cpu0 = time.monotonic(), time.process_time()
    pane.start_button.click()
    busy = measure_until(lambda: pane.state == "idle", 1800)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    steps = pane.history.train.column("step")
    tok_s = pane.history.train.column("tokens_per_s")
    val = pane.history.evals.column("val_loss")

    print(f"UI event-loop lateness of a {TICK_MS} ms timer (TrainingPane, {args.processes} training process"
          f"{'es' if args.processes > 1 else ''}, torch threads 1, nice {NICE}, shakespeare-char-cpu, "
          f"{'tinyshakespeare.txt' if corpus != 'shakespeare' else 'built-in Shakespeare'})")
    print(f"  idle            {lateness_stats(idle)}")
    print(f"  while training  {lateness_stats(busy)}")
    print(f"  run: {int(steps[-1]) if len(steps) else 0} steps in {wall:.1f} s wall (incl. spawn and data), "
          f"median {statistics.median(tok_s[len(tok_s) // 10:]) if len(tok_s) else 0:,.0f} tokens/s, "
          f"last val loss {val[-1] if len(val) else float('nan'):.3f}; status: {pane.status.text()}")
    print(f"  UI process CPU while training: {cpu:.1f} s of {wall:.1f} s ({100 * cpu / wall:.0f}% of a core, "
          f"the 10 ms probe timer included)")
    for key, values in handler_ms.items():  # before the 100 000-point check below, whose refreshes are timed too
        if values:
            ordered = sorted(values)
            print(f"  pane's {key}: p50 {statistics.median(ordered):.2f} ms, "
                  f"p99 {ordered[int(0.99 * (len(ordered) - 1))]:.2f} ms, max {ordered[-1]:.2f} ms "
                  f"({len(ordered)} calls)")
    print(f"  curves with 100 000 points: {curves_100k_ms(app):.1f} ms per update (setData + repaint, median of 20)")
    print(f"  machine load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    pane.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
