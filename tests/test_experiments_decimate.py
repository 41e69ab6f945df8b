"""The overlay's decimation against a naive reference: each pixel column's max and min (or mean) of the full data,
a break after a column holding a NaN, the points themselves when few, and appended points giving what a rebuild
gives."""

import numpy as np
import pytest

from app.experiments.decimate import EDGE_SHARE, RANGE_LIMIT, Pyramid, clip_to_view, decimate


def series(n, seed=0, nans=()):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.uniform(0.2, 1.8, n))  # uneven steps, like wall time
    y = rng.normal(3.0, 0.5, n)
    y[list(nans)] = np.nan
    return x, y


def naive_columns(x, y, x0, x1, width, slack=0.0):
    """For the columns -1 .. width: (lowest, highest) reduction over the points within `slack` columns of its edges
    as reductions over the column shrunk and grown by that much: (values inside for sure, values maybe inside)."""
    dx = (x1 - x0) / width
    out = []
    for c in range(-1, width + 1):
        lo, hi = x0 + c * dx, x0 + (c + 1) * dx
        sure = y[(x >= lo + slack * dx) & (x < hi - slack * dx)]
        maybe = y[(x >= lo - slack * dx) & (x < hi + slack * dx)]
        out.append((x0 + (c + 0.5) * dx, sure, maybe))
    return out


def split(xs, ys, method):
    """The decimated line's columns: {centre: values} (the nearest points beyond the edges dropped)."""
    cols = {}
    for x, y in zip(xs[1:-1], ys[1:-1]):
        cols.setdefault(round(float(x), 6), []).append(float(y))
    return cols


@pytest.mark.parametrize("n, width", [(2000, 100), (30_000, 200), (100_000, 700)],
                         ids=["level 0, exact", "coarser level", "100 000 points"])
def test_each_column_keeps_its_max_and_min(n, width):
    x, y = series(n, nans=(17, 18, n // 2))
    y[n // 3] = 40.0  # one step's spike
    pyramid = Pyramid(x, y, "peak")
    x0, x1 = x[n // 10], x[-n // 10]
    xs, ys = decimate(pyramid, x0, x1, width)
    assert xs[0] < x0 and xs[-1] > x1  # the line runs on past both edges
    assert len(xs) <= 3 * (width + 2) + 2
    assert np.nanmax(ys) == 40.0 and np.nanmax(ys) == np.nanmax(y[(x >= x0) & (x <= x1)])
    exact = n / width < 2 * EDGE_SHARE * 4  # level 0 is used: column edges are the pixels' own
    slack = 0.0 if exact else 1.0 / EDGE_SHARE
    cols = split(xs, ys, "peak")
    shown = 0
    for centre, sure, maybe in naive_columns(x, y, x0, x1, width, slack):
        values = cols.get(round(centre, 6))
        if values is None:
            assert len(sure) == 0  # a column with no point draws nothing
            continue
        shown += 1
        hi, lo = values[0], values[1]
        finite_sure, finite_maybe = sure[np.isfinite(sure)], maybe[np.isfinite(maybe)]
        if len(finite_sure):
            assert np.max(finite_sure) <= hi <= np.max(finite_maybe)
            assert np.min(finite_maybe) <= lo <= np.min(finite_sure)
        if exact:
            assert hi == np.nanmax(sure) and lo == np.nanmin(sure)
            assert (len(values) == 3) == bool(np.isnan(sure).any())  # a NaN in the column: the line breaks after it
            if len(values) == 3:
                assert np.isnan(values[2])
    assert shown >= width


def test_a_column_holding_a_nan_breaks_the_line_and_an_all_nan_one_is_a_gap():
    x = np.arange(400.0)
    y = np.sin(x / 7.0)
    y[105] = np.nan  # one diverged step inside column 10 (10 points per column)
    y[200:230] = np.nan  # three whole columns
    xs, ys = decimate(Pyramid(x, y, "peak"), 0.0, 400.0, 40)
    cols = split(xs, ys, "peak")
    ten = cols[105.0]
    assert len(ten) == 3 and np.isnan(ten[2]) and ten[0] == np.nanmax(y[100:110]) and ten[1] == np.nanmin(y[100:110])
    assert all(np.isnan(v).all() for c in (205.0, 215.0, 225.0) for v in [cols[c]])
    assert len(cols[95.0]) == 2  # the columns without one are the usual max, min


def test_mean_columns_are_the_mean_of_their_finite_values():
    x, y = series(3000, seed=2, nans=(1000,))
    xs, ys = decimate(Pyramid(x, y, "mean"), x[0], x[-1], 200)
    cols = split(xs, ys, "mean")
    for centre, sure, _ in naive_columns(x, y, x[0], x[-1], 200):
        if len(sure) and round(centre, 6) in cols:
            values = cols[round(centre, 6)]
            assert values[0] == pytest.approx(np.nanmean(sure), rel=1e-12)
            assert (len(values) == 2) == bool(np.isnan(sure).any())


def test_few_points_are_drawn_as_they_are():
    x, y = series(1000, seed=3)
    xs, ys = decimate(Pyramid(x, y, "peak"), x[500], x[520], 300)  # fewer than 2 points per column
    i = np.flatnonzero((x >= x[500]) & (x <= x[520]))
    assert xs.tolist() == x[i[0] - 1:i[-1] + 2].tolist() and ys.tolist() == y[i[0] - 1:i[-1] + 2].tolist()
    xs, ys = decimate(Pyramid(x, y, "peak"), x[0] - 100, x[20], 300)  # the data's start: nothing before it
    assert xs[0] == x[0]


@pytest.mark.parametrize("method", ["peak", "mean"])
def test_appended_points_give_what_a_rebuild_gives(method):
    x, y = series(50_000, seed=4, nans=(7, 30_001))
    grown = Pyramid(x[:20_001], y[:20_001], method)
    for n in (20_002, 20_100, 33_333, 40_000, 50_000):  # a live run's reads, of every size
        grown.extend(x[:n], y[:n])
    rebuilt = Pyramid(x, y, method)
    assert len(grown.levels) == len(rebuilt.levels) > 2
    for a, b in zip(grown.levels, rebuilt.levels):
        for u, v in zip(a, b):
            assert np.array_equal(u, v, equal_nan=True)
    assert grown.not_finite.tolist() == rebuilt.not_finite.tolist() == [7, 30_001]
    shorter = Pyramid(x, y, method)
    shorter.extend(x[:10_000], y[:10_000] + 1.0)  # a resume rewrote the end: built again
    for a, b in zip(shorter.levels, Pyramid(x[:10_000], y[:10_000] + 1.0, method).levels):
        assert all(np.array_equal(u, v, equal_nan=True) for u, v in zip(a, b))


def test_values_far_outside_the_view_are_brought_near_it():
    y = np.array([1.0, 1e30, -1e30, np.nan, 2.0])
    out = clip_to_view(y, 0.0, 4.0)
    assert out[[0, 4]].tolist() == [1.0, 2.0] and np.isnan(out[3])
    assert out[1] == 4.0 + RANGE_LIMIT * 4.0 and out[2] == -RANGE_LIMIT * 4.0


@pytest.mark.parametrize("method", ["peak", "mean"])
@pytest.mark.parametrize("nans", [(), (0, 1, 2, 500), (998, 999), (0, 999), tuple(range(1000))])
def test_bounds_are_those_of_the_finite_points(method, nans):
    x, y = series(1000, seed=5, nans=nans)
    bounds = Pyramid(x, y, method, min_blocks=4).bounds()
    ok = np.isfinite(y)
    if not ok.any():
        assert bounds is None
    else:
        assert bounds == (x[ok][0], x[ok][-1], np.min(y[ok]), np.max(y[ok]))
