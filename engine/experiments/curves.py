"""A run's curves as numpy arrays, read from its ``metrics.jsonl`` (incrementally), and TensorBoard's smoothing.

    >>> ema([1.0, 2.0, 3.0], 0.5).tolist()          # debiased: the first value is kept as is
    [1.0, 1.6666666666666667, 2.4285714285714284]

A resumed run redoes the steps after its checkpoint: a ``Started`` message at step s drops the points after s, and a
step that is not past the last one rewinds to just before it, so the curves show what the model went through.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from engine.messages import Eval, Started, Step, read_jsonl
from engine.runs import RunFolder

_BLOCK = 256  # ema() works on blocks of this many points: one matrix product per block, a short loop between them


def ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average started at 0 and debiased by 1 - weight**k, where k
    counts the finite values so far. Non-finite values stay NaN and are skipped; weight 0 returns the values.

    The same numbers as the loop ``last = weight * last + (1 - weight) * v; out = last / (1 - weight**k)``, computed
    in blocks of matrix products so 100 000 points take a few milliseconds, not a Python loop's tenth of a second.
    """
    x = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    v = x[ok]
    n = len(v)
    if n == 0:
        return out
    if weight == 0.0:
        out[ok] = v
        return out
    # within a block: y[i] = (1 - w) * sum_j<=i w^(i-j) v[j] + w^(i+1) * carry  (carry = the biased average before it)
    log_w = math.log(weight)
    lower, powers = _block_matrix(weight)
    padded = np.zeros(-(-n // _BLOCK) * _BLOCK)
    padded[:n] = v
    blocks = padded.reshape(-1, _BLOCK) @ lower.T  # (n_blocks, BLOCK), each block as if it started from 0
    carries, carry, w_block = [], 0.0, float(powers[-1])
    for end in blocks[:, -1].tolist():  # the carry into each block: a scalar recurrence over the blocks
        carries.append(carry)
        carry = end + w_block * carry
    blocks += np.outer(carries, powers)
    biased = blocks.reshape(-1)[:n]
    out[ok] = biased / -np.expm1(np.arange(1, n + 1, dtype=np.float64) * log_w)  # 1 - w^k, exactly for small k
    return out


@functools.lru_cache(maxsize=8)
def _block_matrix(weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, powers): lower[i, j] = (1 - w) * w^(i-j) for j <= i, powers[i] = w^(i+1); exp() not **: 10x faster."""
    i = np.arange(_BLOCK, dtype=np.float64)
    diff = i[:, None] - i[None, :]
    lower = np.where(diff >= 0, (1.0 - weight) * np.exp(np.maximum(diff, 0.0) * math.log(weight)), 0.0)
    return lower, np.exp((i + 1.0) * math.log(weight))


@dataclass
class RunCurves:
    """Arrays of one run: training steps (step, tokens, seconds since the first step, loss) and evaluations."""

    step: np.ndarray
    tokens: np.ndarray
    seconds: np.ndarray
    loss: np.ndarray
    eval_step: np.ndarray
    eval_tokens: np.ndarray
    eval_seconds: np.ndarray
    val_loss: np.ndarray

    def x(self, axis: str, evals: bool = False) -> np.ndarray:
        """The x values for axis "steps", "tokens" or "time" (seconds)."""
        names = {"steps": ("step", "eval_step"), "tokens": ("tokens", "eval_tokens"),
                 "time": ("seconds", "eval_seconds")}
        if axis not in names:
            raise ValueError(f"x axis must be one of {', '.join(names)}, got {axis!r}")
        return getattr(self, names[axis][evals])

    def __len__(self) -> int:
        return len(self.step)


class CurvesReader:
    """Reads a run folder's metrics.jsonl from where it stopped last time; :meth:`curves` gives the arrays.

        >>> reader = CurvesReader("runs/sc")
        >>> reader.update()        # True when new points arrived (a missing file is no error: nothing yet)
        False
    """

    def __init__(self, folder):
        self.folder = RunFolder(folder)
        self.offset = 0
        self._steps: list[tuple[float, float, float, float]] = []  # (step, tokens, time, loss)
        self._evals: list[tuple[float, float, float]] = []  # (step, tokens, val_loss)
        self._cache: RunCurves | None = None

    def update(self) -> bool:
        msgs, self.offset = read_jsonl(self.folder.metrics_path, self.offset)
        changed = False
        for msg in msgs:
            if isinstance(msg, Step):
                if self._steps and msg.step <= self._steps[-1][0]:
                    self._rewind(msg.step - 1)
                self._steps.append((msg.step, msg.tokens_seen, msg.time, msg.loss))
                changed = True
            elif isinstance(msg, Eval):
                if self._evals and msg.step <= self._evals[-1][0]:
                    self._evals = [e for e in self._evals if e[0] < msg.step]
                self._evals.append((msg.step, msg.tokens_seen, msg.val_loss))
                changed = True
            elif isinstance(msg, Started) and msg.step:
                changed |= self._rewind(msg.step)
        if changed:
            self._cache = None
        return changed

    def _rewind(self, step: float) -> bool:
        """Keep the points at or before step."""
        n_steps, n_evals = len(self._steps), len(self._evals)
        while self._steps and self._steps[-1][0] > step:
            self._steps.pop()
        self._evals = [e for e in self._evals if e[0] <= step]
        return len(self._steps) != n_steps or len(self._evals) != n_evals

    def curves(self) -> RunCurves:
        if self._cache is None:
            s = np.array(self._steps, dtype=np.float64).reshape(-1, 4)
            e = np.array(self._evals, dtype=np.float64).reshape(-1, 3)
            t0 = s[0, 2] if len(s) else 0.0
            seconds = s[:, 2] - t0
            # an evaluation has no time of its own: that of the step it follows (step 0's: the first step's)
            eval_seconds = np.interp(e[:, 0], s[:, 0], seconds) if len(s) else np.full(len(e), np.nan)
            loss = np.where(np.isfinite(s[:, 3]), s[:, 3], np.nan)
            self._cache = RunCurves(step=s[:, 0], tokens=s[:, 1], seconds=seconds, loss=loss, eval_step=e[:, 0],
                                    eval_tokens=e[:, 1], eval_seconds=eval_seconds, val_loss=e[:, 2])
        return self._cache


def read_curves(folder) -> RunCurves:
    """The whole curves of a run folder at once."""
    reader = CurvesReader(folder)
    reader.update()
    return reader.curves()


def value_at(x: np.ndarray, y: np.ndarray, at: float) -> tuple[float, float] | None:
    """(x, y) of the point whose x is nearest to ``at`` (x sorted ascending); None for no points.

        >>> value_at(np.array([1.0, 2.0, 4.0]), np.array([5.0, 6.0, 7.0]), 3.2)
        (4.0, 7.0)
    """
    if len(x) == 0 or not math.isfinite(at):
        return None
    i = int(np.searchsorted(x, at))
    if i >= len(x) or (i > 0 and at - x[i - 1] <= x[i] - at):
        i -= 1
    return float(x[i]), float(y[i])
