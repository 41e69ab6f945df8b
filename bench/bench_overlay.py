"""How long the Runs view's overlay takes to redraw 10 runs of 100 000 points each (a frame is 16.7 ms at 60 Hz).

Synthetic loss curves (noisy, decaying) go into an :class:`app.experiments.overlay.OverlayPlot` at 900x600. Each case
makes one change and lets Qt's event loop paint it, as the app does; reported are the median over the repeats of the
wall time and of the process's CPU time from the change to the painted frame (painting is single-threaded; on a
shared machine the CPU time is what the work itself costs, the wall time adds the waits for a core), and how many
times the plot painted (1: one frame; the time covers them all):
  * repaint: the hover line moves (what moving the pointer costs: the strips it leaves and enters repaint),
  * zoom: the x range becomes a tenth of the data (each line is decimated to the view's pixel columns again),
  * reset zoom: back to all the data,
  * new points: one run gets 100 more points (update_run: smoothing what is new + setData), a live run,
  * smoothing: the slider moves to a weight not used before (all 10 runs re-smoothed and re-set).
Each is measured with the overlay as built (each line decimated to the view's pixel columns) and, as the baseline in
the same run, with every point drawn (unless --no-baseline: it takes most of the time); the two alternate A B A B so
machine load hits both alike.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_overlay.py [--points 100000] [--runs 10] [--repeats 10]
        [--no-baseline]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_runs(n_runs: int, n_points: int):
    import numpy as np

    from engine.experiments.curves import RunCurves

    rng = np.random.default_rng(0)
    runs = {}
    for r in range(n_runs):
        step = np.arange(1, n_points + 1, dtype=np.float64)
        loss = 1.5 + 3.0 * np.exp(-step / (n_points / 8) * (1 + 0.1 * r)) + rng.normal(0, 0.08, n_points)
        evals = step[::max(1, n_points // 50)]
        runs[f"run {r}"] = RunCurves(step=step, tokens=step * 768, seconds=step * 0.04, loss=loss,
                                     eval_step=evals, eval_tokens=evals * 768, eval_seconds=evals * 0.04,
                                     val_loss=1.6 + 3.0 * np.exp(-evals / (n_points / 8)))
    return runs


def set_fast_paths(overlay, on: bool) -> None:
    for name in overlay.runs:
        for item in overlay.curve_items(name):
            if item.full == on:
                item.full = not on
                item.viewRangeChanged()


def paint_counter(widget):
    """An event filter on widget counting its paint events in .n."""
    from PySide6.QtCore import QEvent, QObject

    class Counter(QObject):
        n = 0

        def eventFilter(self, watched, event):  # noqa: N802 - Qt's override
            if event.type() == QEvent.Type.Paint:
                self.n += 1
            return False

    counter = Counter(widget)
    widget.installEventFilter(counter)
    return counter


def timed(fn, app, paints) -> tuple[float, float, int]:
    """(wall ms, CPU ms of this process, paints) from the change to its painted frame: on a shared machine the CPU
    time is the steadier of the two."""
    paints.n = 0
    t, c = time.perf_counter(), time.process_time()
    fn()
    app.processEvents()  # what the event loop does after the change: the scene's update, then the viewport's paint
    return (time.perf_counter() - t) * 1000.0, (time.process_time() - c) * 1000.0, paints.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true", help="measure the overlay as built only")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from app.experiments.overlay import OverlayPlot
    from engine.experiments.curves import RunCurves

    app = QApplication.instance() or QApplication([])
    overlay = OverlayPlot()
    overlay.resize(900, 600)
    overlay.show()
    variants = (True,) if args.no_baseline else (True, False)
    grow = 100  # points per update of the live run
    runs = make_runs(args.runs, args.points)
    last = list(runs)[-1]
    full = runs[last]
    shown = max(2, args.points - grow * args.repeats * len(variants))  # the live run grows back to --points

    def first(n: int) -> RunCurves:
        return RunCurves(**{k: getattr(full, k)[:n] for k in ("step", "tokens", "seconds", "loss")},
                         **{k: getattr(full, k) for k in ("eval_step", "eval_tokens", "eval_seconds", "val_loss")})

    runs[last] = first(shown)
    t = time.perf_counter()
    overlay.set_runs(runs)
    app.processEvents()
    print(f"{args.runs} runs x {args.points:,} points: first draw {1000 * (time.perf_counter() - t):.0f} ms "
          f"(machine shared with other jobs: compare the ratios, not the times)")
    overlay.show_values_at(args.points * 0.4)  # the hover text's first lines reflow the window: not measured
    app.processEvents()
    paints = paint_counter(overlay.graphics.viewport())
    hover_x = iter([args.points * (0.5 + 0.01 * (i % 2)) for i in range(args.repeats * len(variants))])

    def repaint():
        overlay.show_values_at(next(hover_x))

    def zoom():
        overlay.plot.setXRange(args.points * 0.45, args.points * 0.55, padding=0)

    def reset():
        overlay.reset_zoom()

    def new_points():
        nonlocal shown
        shown += grow
        overlay.update_run(last, first(shown))

    weights = iter([0.5 + 0.01 * i for i in range(args.repeats * len(variants))])  # each one new

    def smoothing():
        overlay.set_smoothing(next(weights))

    cases = {"repaint": repaint, "zoom": zoom, "reset zoom": reset, "new points": new_points,
             "smoothing": smoothing}
    results: dict = {(case, fast): [] for case in cases for fast in variants}
    for _ in range(args.repeats):
        for fast in variants:  # A B A B
            set_fast_paths(overlay, fast)
            app.processEvents()
            for case, fn in cases.items():  # each starts from the state the one before left: all data shown
                results[(case, fast)].append(timed(fn, app, paints))
    print(f"{'':<14}{'as built: wall / CPU ms, paints':>33}" + ("" if args.no_baseline else
                                                                f"{'baseline: wall / CPU ms':>26}{'CPU ratio':>10}"))
    for case in cases:
        fw, fc = (statistics.median(x[i] for x in results[(case, True)]) for i in (0, 1))
        n = max(x[2] for x in results[(case, True)])
        line = f"{case:<14}{fw:>17.1f} / {fc:>6.1f}, {n:>6}"
        if not args.no_baseline:
            sw, sc = (statistics.median(x[i] for x in results[(case, False)]) for i in (0, 1))
            line += f"{sw:>19.1f} / {sc:>6.1f}{fc / sc:>10.2f}"
        print(line)


if __name__ == "__main__":
    main()
