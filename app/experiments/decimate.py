"""A long line reduced to what a plot's pixel columns can show, from block reductions computed once per data change.

    >>> y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0])
    >>> decimate(Pyramid(np.arange(12.0), y, "peak"), 0.0, 12.0, 2)   # each column's max then min, at its centre
    (array([3., 3., 9., 9.]), array([9., 1., 8., 2.]))

A :class:`Pyramid` holds a series' reductions over blocks of 4, 16, 64 ... points (max and min for "peak", the sum
for "mean"), so a view of 100 000 points needs a few thousand numbers, not all of
them; appended points recompute only the blocks they touch. :func:`decimate` cuts the view into its pixel columns
and gives, per column, the max then the min of its values ("peak": a spike stays drawn at any zoom) or their mean,
both at the column's centre; a column that holds a non-finite value is followed by a NaN, so the line breaks there
as the full data's does. Column edges are moved to the nearest block boundary of the level used, whose blocks are at
most 1/8 of a column: a point is counted in its neighbour column only when it lies that close to the edge (level 0,
used when a column holds fewer than 32 points, is exact). Fewer than 2 points per column: the points themselves.
"""

import math

import numpy as np

FAN = 4  # points per block of the level below
MIN_BLOCKS = 256  # no level with fewer blocks: a plot has more columns than that
EDGE_SHARE = 8  # blocks of the level used are at most 1/EDGE_SHARE of a column
RANGE_LIMIT = 1e4  # values are clipped to this many view heights beyond the view (the raster engine's range)


def _next_level(level: tuple, method: str) -> tuple:
    """(x where each block starts, then its reductions) over blocks of FAN entries of the level below."""
    n = len(level[0])
    pad = -n % FAN
    if pad:  # NaN is no value for fmax / fmin; 0 adds nothing
        level = (level[0],) + tuple(np.concatenate((a, np.full(pad, np.nan if method == "peak" else 0.0)))
                                    for a in level[1:])
    ops = (np.fmax, np.fmin) if method == "peak" else (np.add,)
    out = [level[0][::FAN].copy()]
    for a, op in zip(level[1:], ops):
        acc = op(a[0::FAN], a[1::FAN])
        for j in range(2, FAN):
            op(acc, a[j::FAN], out=acc)
        out.append(acc)
    return tuple(out)


class Pyramid:
    """Block reductions of a series (x ascending, y) at block sizes FAN**k: each level holds the x where its blocks
    start and, for method "peak", each block's max and min (NaN only for a block with no finite value), for "mean"
    the sum of its finite values. Where y is not finite is kept as a list of positions.

        >>> p = Pyramid(np.arange(16.0), np.arange(16.0), "peak", min_blocks=1)
        >>> p.levels[1][1].tolist(), p.levels[2][2].tolist()      # level 1: max of each 4; level 2: min of all 16
        ([3.0, 7.0, 11.0, 15.0], [0.0])
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, method: str, min_blocks: int = MIN_BLOCKS):
        if method not in ("peak", "mean"):
            raise ValueError(f"method must be peak or mean, got {method!r}")
        self.method = method
        self.min_blocks = min_blocks
        self.x = self.y = np.empty(0)
        self.levels: list[tuple] = []
        self.extend(x, y)

    def extend(self, x: np.ndarray, y: np.ndarray) -> None:
        """The series is now (x, y), whose first len(self.y) points must be those already held (a live run's new
        points): only the blocks holding new points are computed again."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} values, y {len(y)}")
        keep = len(self.y) if len(y) >= len(self.y) else 0
        self.x, self.y = x, y
        base = (y, y) if self.method == "peak" else (y,)
        if math.isfinite(float(np.sum(y))):  # every value finite (the usual case): one pass, no masks
            self.not_finite = np.empty(0, dtype=np.intp)
        else:
            finite = np.isfinite(y)
            self.not_finite = np.flatnonzero(~finite)
            if self.method == "mean":  # NaN is no value to add up; 0 adds nothing
                base = (np.where(finite, y, 0.0),)
        self.levels[:1] = [(x,) + base]
        k = 1
        while len(self.levels[k - 1][0]) >= FAN * self.min_blocks:
            start = keep // FAN ** k  # this block and those after hold new points
            if k < len(self.levels) and start:
                fresh = _next_level(tuple(a[start * FAN:] for a in self.levels[k - 1]), self.method)
                self.levels[k] = tuple(np.concatenate((a[:start], b)) for a, b in zip(self.levels[k], fresh))
            else:
                self.levels[k:k + 1] = [_next_level(self.levels[k - 1], self.method)]
            k += 1
        del self.levels[k:]

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(x0, x1, y0, y1) of the finite points; None for none."""
        n, bad = len(self.y), self.not_finite
        if len(bad) == n:
            return None
        steps = np.arange(len(bad))  # the leading and trailing runs of non-finite values
        head, tail = np.flatnonzero(bad != steps), np.flatnonzero(bad[::-1] != n - 1 - steps)
        first, last = int(head[0]) if len(head) else len(bad), n - 1 - (int(tail[0]) if len(tail) else len(bad))
        top = self.levels[-1]
        if self.method == "peak":  # the coarsest level's blocks cover everything
            y0, y1 = float(np.nanmin(top[2])), float(np.nanmax(top[1]))
        else:
            y0, y1 = float(np.nanmin(self.y)), float(np.nanmax(self.y))
        return float(self.x[first]), float(self.x[last]), y0, y1


def decimate(pyramid: Pyramid, x0: float, x1: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The points to draw for the view x0..x1, `width` pixel columns wide: the columns one beyond each edge too,
    and past them the nearest point itself, so the line runs on to the plot's edges."""
    x, y, n = pyramid.x, pyramid.y, len(pyramid.y)
    if n == 0 or width < 1 or not x1 > x0:
        return x[:0], y[:0]
    dx = (x1 - x0) / width
    edges_x = x0 + np.arange(-1, width + 2) * dx  # of the columns -1 .. width
    a, b = (int(i) for i in np.searchsorted(x, edges_x[[0, -1]]))
    if b - a < 2 * (width + 2):
        return x[max(a - 1, 0):b + 1], y[max(a - 1, 0):b + 1]
    k = 0
    while k + 1 < len(pyramid.levels) and FAN ** (k + 1) * EDGE_SHARE * (width + 2) <= b - a:
        k += 1
    block, level = FAN ** k, pyramid.levels[k]
    edges = np.searchsorted(level[0], edges_x)  # a column: the blocks that start in it
    edges[0], edges[-1] = a // block, -(-b // block)  # and every point from a to b in some column
    np.clip(edges, edges[0], edges[-1], out=edges)
    keep = edges[:-1] < edges[1:]
    first, end = edges[:-1][keep], edges[-1]
    centres = x0 + (np.arange(-1, width + 1)[keep] + 0.5) * dx
    bounds = np.minimum(edges * block, n)
    broken = None  # the columns holding a value that is not finite
    if len(pyramid.not_finite):
        bad = np.diff(np.searchsorted(pyramid.not_finite, bounds))[keep]
        broken = bad > 0
    if pyramid.method == "peak":
        columns = [np.fmax.reduceat(level[1][:end], first), np.fmin.reduceat(level[2][:end], first)]
    else:
        count = np.diff(bounds)[keep] - (bad if broken is not None else 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns = [np.where(count > 0, np.add.reduceat(level[1][:end], first) / count, np.nan)]
    if broken is not None:  # the line breaks after such a column, as the full data's does at that point
        columns.append(np.where(broken, np.nan, np.inf))
    m = len(columns)
    xs, ys = np.repeat(centres, m), np.column_stack(columns).reshape(-1)
    if broken is not None:
        shown = ys != np.inf
        xs, ys = xs[shown], ys[shown]
    # the nearest points beyond, as they are (none past the data's ends)
    return np.concatenate((x[a - 1:a] if a else x[:0], xs, x[b:b + 1])), \
        np.concatenate((y[a - 1:a] if a else y[:0], ys, y[b:b + 1]))


def clip_to_view(y: np.ndarray, y0: float, y1: float) -> np.ndarray:
    """y with values far outside the view y0..y1 brought to RANGE_LIMIT view heights beyond it (NaN stays): a
    diverged run's 1e30 would be past what the raster engine draws right, and so far off the view that no visible
    part of a line changes."""
    h = max(y1 - y0, 1e-300)
    return np.clip(y, y0 - RANGE_LIMIT * h, y1 + RANGE_LIMIT * h)
