"""How long the Runs view's overlay takes to redraw 10 runs of 100 000 points each (a frame is 16.7 ms at 60 Hz).

Synthetic loss curves (noisy, decaying) go into an :class:`app.experiments.overlay.OverlayPlot` at 900x600. Reported,
the median over the repeats of the wall time and of the process's CPU time (painting is single-threaded; on a shared
machine the CPU time is what the paint itself costs, the wall time adds the waits for a core):
  * repaint: the plot repaints with nothing changed but the hover line (what moving the pointer costs),
  * zoom: the x range becomes a tenth of the data, and the plot repaints (each curve is downsampled again),
  * reset zoom: back to all the data, and the plot repaints,
  * new points: one run gets new points (update_run: smoothing + setData) and the plot repaints (a live run),
  * smoothing: the slider moves (all 10 runs re-smoothed and re-set) and the plot repaints.
Each is measured with the overlay as built (peak downsampling + clip-to-view) and, as the baseline in the same run,
with both switched off; the two alternate A B A B so machine load hits both alike.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_overlay.py [--points 100000] [--runs 10] [--repeats 10]
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
            item.setDownsampling(auto=on, method="peak")
            item.setClipToView(on)


def timed(fn, app) -> tuple[float, float]:
    """(wall ms, CPU ms of this process): on a shared machine the CPU time is the steadier of the two."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    app.processEvents()
    return (time.perf_counter() - t) * 1000.0, (time.process_time() - c) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from app.experiments.overlay import OverlayPlot
    from engine.experiments.curves import RunCurves

    app = QApplication.instance() or QApplication([])
    overlay = OverlayPlot()
    overlay.resize(900, 600)
    overlay.show()
    runs = make_runs(args.runs, args.points)
    t = time.perf_counter()
    overlay.set_runs(runs)
    app.processEvents()
    print(f"{args.runs} runs x {args.points:,} points: first draw {1000 * (time.perf_counter() - t):.0f} ms "
          f"(machine shared with other jobs: compare the ratios, not the times)")
    viewport = overlay.graphics.viewport()
    last = list(runs)[-1]
    grown = runs[last]

    def repaint():
        overlay.show_values_at(args.points * 0.5)
        viewport.repaint()

    def zoom():
        overlay.plot.setXRange(args.points * 0.45, args.points * 0.55, padding=0)
        viewport.repaint()

    def reset():
        overlay.reset_zoom()
        viewport.repaint()

    def new_points():
        overlay.update_run(last, RunCurves(**{k: getattr(grown, k) for k in grown.__dataclass_fields__}))
        viewport.repaint()

    weights = iter([0.6, 0.7] * args.repeats * 2)

    def smoothing():
        overlay.set_smoothing(next(weights))
        viewport.repaint()

    cases = {"repaint": repaint, "zoom": zoom, "reset zoom": reset, "new points": new_points,
             "smoothing": smoothing}
    results = {(case, fast): [] for case in cases for fast in (True, False)}
    for _ in range(args.repeats):
        for fast in (True, False):  # A B A B
            set_fast_paths(overlay, fast)
            viewport.repaint()
            for case, fn in cases.items():  # each starts from the state the one before left: all data shown
                results[(case, fast)].append(timed(fn, app))
    print(f"{'':<14}{'as built: wall / CPU ms':>26}{'baseline: wall / CPU ms':>26}{'CPU ratio':>10}")
    for case in cases:
        fast, slow = results[(case, True)], results[(case, False)]
        fw, fc = (statistics.median(x[i] for x in fast) for i in (0, 1))
        sw, sc = (statistics.median(x[i] for x in slow) for i in (0, 1))
        print(f"{case:<14}{fw:>17.1f} / {fc:>6.1f}{sw:>19.1f} / {sc:>6.1f}{fc / sc:>10.2f}")


if __name__ == "__main__":
    main()
