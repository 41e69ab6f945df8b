"""The overlay's drawing of long runs: lines are downsampled to the plot's pixels yet keep every spike, at any zoom
and with no smoothing; a live run's new points are smoothed on from where the smoothing was (and from the start
after a resume rewrote earlier steps); every run's evaluations are one item in the runs' colours; the smoothed
lines' 2-pixel pen, painted as three 1-pixel lines, is two pixels thick every way."""

import math

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor, QImage, QPainter

from app.experiments.lines import DecimatedLine
from app.experiments.overlay import OverlayPlot
from engine.experiments.curves import RunCurves
from tests.test_experiments import loop_ema


def curves(loss, evals=()):
    loss = np.asarray(loss, dtype=np.float64)
    step = np.arange(1, len(loss) + 1, dtype=np.float64)
    ev = np.asarray(evals, dtype=np.float64)
    return RunCurves(step=step, tokens=step * 256, seconds=step * 0.1, loss=loss, eval_step=ev, eval_tokens=ev * 256,
                     eval_seconds=ev * 0.1, val_loss=np.full(len(ev), 2.5))


@pytest.fixture
def overlay(qtbot):
    plot = OverlayPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 600)
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def shown_range(qtbot, overlay, x0, x1):
    """Wait until the view shows about [x0, x1] (auto-range is applied when the plot is next painted)."""
    qtbot.waitUntil(lambda: abs(overlay.plot.vb.viewRange()[0][0] - x0) < 0.05 * (x1 - x0)
                    and abs(overlay.plot.vb.viewRange()[0][1] - x1) < 0.05 * (x1 - x0), timeout=5000)


def test_downsampled_lines_keep_every_spike(qtbot, overlay):
    n = 100_000
    loss = 2.0 + 0.2 * np.sin(np.arange(n) / 50.0)
    loss[61_234], loss[83_001] = 9.0, 0.5  # one step's spike and one step's dip
    overlay.set_runs({"a": curves(loss)})
    shown_range(qtbot, overlay, 0, n)
    raw, smooth = overlay.curve_items("a")
    x, y = raw.getData()  # as drawn
    pixels = overlay.plot.vb.width()
    # each pixel column's min and max, not 100 000 points (a bin is a whole number of points: a few more bins)
    assert len(x) < 2.2 * pixels
    assert y.max() == 9.0 and y.min() == 0.5

    overlay.plot.setXRange(60_000, 70_000, padding=0)  # zoomed in: clipped to the view, still downsampled
    x, y = raw.getData()
    assert x[0] <= 60_000 and x[-1] >= 70_000 and len(x) < 2.2 * pixels and y.max() == 9.0
    overlay.plot.setXRange(61_200, 61_260, padding=0)  # closer than a point per pixel: every point
    x, y = raw.getData()
    assert 61_234 in x.tolist() and y.max() == 9.0

    overlay.set_smoothing(0.0)  # the smoothed line is the raw one then, spikes and all
    overlay.reset_zoom()
    shown_range(qtbot, overlay, 0, n)
    assert not raw.isVisible()
    _, y = overlay.smoothed_data("a")
    assert len(y) < 2.2 * pixels and y.max() == 9.0 and y.min() == 0.5


def test_new_points_are_smoothed_on_and_a_rewrite_starts_over(overlay):
    rng = np.random.default_rng(3)
    loss = rng.normal(3.0, 0.5, 3000)
    loss[[10, 1500]] = math.nan  # a diverged step: skipped by the smoothing, a gap in the line
    overlay.set_smoothing(0.9)
    overlay.set_runs({"live": curves(loss[:1000])})
    for n in (1001, 1600, 3000):  # a live run's reads
        overlay.update_run("live", curves(loss[:n]))
    want = loop_ema(loss, 0.9)
    for step in (5, 11, 12, 999, 1000, 1501, 1502, 2999, 3000):  # 11 and 1501: NaN
        (name, at, smooth, raw), = overlay.values_at(step)
        assert at == step and smooth == pytest.approx(want[step - 1], rel=1e-12, nan_ok=True)

    resumed = loss.copy()
    resumed[2000:] += 1.0  # a resume rewrote the steps after 2000
    overlay.update_run("live", curves(resumed))
    want = loop_ema(resumed, 0.9)
    for step in (1999, 2001, 3000):
        assert overlay.values_at(step)[0][2] == pytest.approx(want[step - 1], rel=1e-12)


def test_every_runs_evaluations_are_one_item_in_the_runs_colours(overlay):
    overlay.set_runs({"a": curves(np.linspace(4, 2, 100), evals=(50, 100)),
                      "b": curves(np.linspace(5, 3, 100), evals=(25, 50, 75))})
    x, y = overlay.val_points.getData()
    assert x.tolist() == [50, 100, 25, 50, 75] and y.tolist() == [2.5] * 5
    colors = [QColor(b.color()).getRgb()[:3] for b in overlay.val_points.opts["symbolBrush"]]
    assert colors == [overlay.color("a")] * 2 + [overlay.color("b")] * 3
    overlay.update_run("b", curves(np.linspace(5, 3, 120), evals=(25, 50, 75, 100)))
    assert overlay.val_points.getData()[0].tolist() == [50, 100, 25, 50, 75, 100]
    overlay.set_x_axis("tokens")
    assert overlay.val_points.getData()[0].tolist() == [v * 256 for v in (50, 100, 25, 50, 75, 100)]
    overlay.set_runs({"b": overlay.runs["b"]})
    assert overlay.val_points.getData()[0].tolist() == [v * 256 for v in (25, 50, 75, 100)]


@pytest.mark.parametrize("x, y", [([5, 55], [20, 20]), ([30, 30], [5, 35]), ([5, 35], [5, 35]), ([5, 35], [35, 5])],
                         ids=["horizontal", "vertical", "falling", "rising"])
def test_the_bold_curve_is_two_pixels_thick_every_way(qtbot, x, y):
    image = QImage(60, 40, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    item = DecimatedLine(pg.mkPen("k", width=2), bold=True)
    item.set_data(np.array(x, dtype=float), np.array(y, dtype=float))
    painter = QPainter(image)
    item.paint(painter, None, None)
    painter.end()
    ink = np.array([[image.pixelColor(i, j).red() < 128 for i in range(60)] for j in range(40)])
    rows, cols = ink.sum(axis=1), ink.sum(axis=0)
    if y[0] == y[1]:
        assert len(rows[ink.any(axis=1)]) == 2 and rows.max() <= 52 and rows[ink.any(axis=1)].min() >= 50
    elif x[0] == x[1]:
        assert len(cols[ink.any(axis=0)]) == 2 and cols.max() <= 32 and cols[ink.any(axis=0)].min() >= 30
    else:  # a 45-degree line: 2 to 3 pixels in every row and column it crosses (but its two ends), no holes
        for counts in (rows[ink.any(axis=1)][1:-1], cols[ink.any(axis=0)][1:-1]):
            assert len(counts) >= 29 and counts.min() >= 2 and counts.max() <= 3


def test_a_diverged_runs_huge_values_are_drawn_near_the_view_and_log_y_maps_the_lines(qtbot, overlay):
    from app.experiments.decimate import RANGE_LIMIT

    loss = np.linspace(4.0, 2.0, 5000)
    loss[3000] = 1e30  # finite, far past anything the raster engine draws right
    overlay.set_smoothing(0.0)
    overlay.set_runs({"a": curves(loss)})
    overlay.plot.setYRange(1.5, 4.5, padding=0)  # the user zooms to the interesting part
    _, smooth = overlay.curve_items("a")
    x, y = smooth.getData()
    (_, _), (y0, y1) = overlay.plot.vb.viewRange()
    assert np.nanmax(y) == y1 + RANGE_LIMIT * (y1 - y0)  # the spike still goes up, off the view
    assert np.nanmin(y) == 2.0
    overlay.set_log_y(True)
    overlay.plot.vb.enableAutoRange()
    x, y = smooth.getData()
    assert np.nanmin(y) == pytest.approx(math.log10(2.0)) and np.nanmax(y) == pytest.approx(30.0)
