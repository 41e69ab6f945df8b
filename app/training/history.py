"""The curves' data: every training message of a run kept in growing numpy columns. No Qt.

The pane feeds messages in (live from the worker queue, or read back from a run folder's ``metrics.jsonl``) and the
plots read column views out, so 100 000 points cost one ``setData`` per redraw and nothing per point::

    >>> h = History()
    >>> h.add_step(step=1, tokens=64, loss=4.2, lr=1e-3, grad_norm=1.5)
    >>> h.train.column("loss")
    array([4.2])

A resumed run redoes the steps after its last checkpoint: a step that is not past the last one rewinds the curves to
just before it, so they show what the model really went through.
"""

import csv
import math

import numpy as np

TRAIN_COLUMNS = ("step", "tokens", "loss", "smooth", "lr", "grad_norm", "tokens_per_s", "skipped_total")
EVAL_COLUMNS = ("step", "tokens", "val_loss", "train_loss")
EVENT_COLUMNS = ("step", "tokens", "loss")  # where a marker goes; loss = the curve's value there (for the y position)


class Columns:
    """Named float64 columns that grow by doubling: append is amortised O(1), ``column`` is a view (no copy)."""

    def __init__(self, names, capacity: int = 1024):
        self.names = tuple(names)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._data = np.full((capacity, len(self.names)), np.nan)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, row) -> None:
        if self.n == len(self._data):
            grown = np.full((2 * len(self._data), len(self.names)), np.nan)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n] = row
        self.n += 1

    def column(self, name: str) -> np.ndarray:
        return self._data[: self.n, self._index[name]]

    def last(self, name: str) -> float:
        return float(self._data[self.n - 1, self._index[name]]) if self.n else math.nan

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows."""
        self.n = max(0, min(n, self.n))

    def drop_from_step(self, step: float) -> None:
        """Forget rows at ``step`` or later (rows are in step order)."""
        self.truncate(int(np.searchsorted(self.column("step"), step, side="left")))

    def clear(self) -> None:
        self.n = 0


class History:
    """A run's curves: training steps, evaluations, and the events marked on the loss curve."""

    def __init__(self, smoothing: float = 0.9):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.train = Columns(TRAIN_COLUMNS)
        self.evals = Columns(EVAL_COLUMNS)
        self.skipped = Columns(EVENT_COLUMNS)     # AMP steps skipped for non-finite gradients
        self.nonfinite = Columns(EVENT_COLUMNS)   # non-finite loss / gradients reported by the trainer
        self._ema = 0.0       # biased running average (debiased when stored, like TensorBoard)
        self._ema_count = 0
        self._skipped_total = 0

    def clear(self) -> None:
        for table in (self.train, self.evals, self.skipped, self.nonfinite):
            table.clear()
        self._ema, self._ema_count, self._skipped_total = 0.0, 0, 0

    # ---- adding ------------------------------------------------------------------------------------------------
    def add_step(self, step, tokens, loss, lr, grad_norm, tokens_per_s=math.nan, skipped_steps=0) -> None:
        if len(self.train) and step <= self.train.last("step"):
            self.rewind(step)
        if math.isfinite(loss):
            self._ema = self.smoothing * self._ema + (1.0 - self.smoothing) * loss
            self._ema_count += 1
        smooth = self._ema / (1.0 - self.smoothing ** self._ema_count) if self._ema_count else math.nan
        self.train.append((step, tokens, loss, smooth, lr, grad_norm, tokens_per_s, skipped_steps))
        if skipped_steps > self._skipped_total:
            self.skipped.append((step, tokens, smooth))
        self._skipped_total = skipped_steps

    def add_eval(self, step, tokens, val_loss, train_loss=math.nan) -> None:
        if len(self.evals) and step <= self.evals.last("step"):
            self.evals.drop_from_step(step)
        self.evals.append((step, tokens, val_loss, train_loss))

    def add_nonfinite(self, step, tokens=math.nan) -> None:
        if math.isnan(tokens):
            tokens = self.tokens_at(step)
        y = self.train.last("smooth") if len(self.train) else math.nan
        self.nonfinite.append((step, tokens, y))

    def tokens_at(self, step) -> float:
        """Tokens seen at ``step``, from the nearest logged step at or before it."""
        steps = self.train.column("step")
        i = int(np.searchsorted(steps, step, side="right")) - 1
        return float(self.train.column("tokens")[i]) if i >= 0 else math.nan

    def rewind(self, step) -> None:
        """Forget everything from ``step`` on (a resumed run redoes those steps)."""
        for table in (self.train, self.evals, self.skipped, self.nonfinite):
            table.drop_from_step(step)
        self._recompute_ema_state()
        self._skipped_total = int(self.train.last("skipped_total")) if len(self.train) else 0

    def _recompute_ema_state(self) -> None:
        loss = self.train.column("loss")
        self._ema_count = int(np.isfinite(loss).sum())
        if self._ema_count:
            last = self.train.last("smooth")
            self._ema = last * (1.0 - self.smoothing ** self._ema_count)
        else:
            self._ema = 0.0

    # ---- reading -----------------------------------------------------------------------------------------------
    @property
    def last_step(self) -> int:
        return int(self.train.last("step")) if len(self.train) else 0

    def recent_tokens_per_s(self, n: int = 20) -> float | None:
        """Training throughput over the last ``n`` logged steps: their tokens over their time (the harmonic mean of
        each step's rate, as every step trains the same number of tokens); None before any timed step.

            >>> h = History()
            >>> for step, rate in enumerate([1000.0, 4000.0], 1):
            ...     h.add_step(step, 100 * step, 2.0, 1e-3, 1.0, tokens_per_s=rate)
            >>> h.recent_tokens_per_s()
            1600.0
        """
        rates = self.train.column("tokens_per_s")[-n:]
        rates = rates[np.isfinite(rates) & (rates > 0)]
        return float(len(rates) / np.sum(1.0 / rates)) if len(rates) else None

    def write_csv(self, path) -> None:
        """One row per logged step (training step and/or evaluation), in step order, with event flags."""
        rows: dict[int, list] = {}
        cols = {name: self.train.column(name) for name in TRAIN_COLUMNS}
        for i in range(len(self.train)):
            rows[int(cols["step"][i])] = [int(cols["tokens"][i])] + [
                _num(cols[name][i]) for name in ("loss", "smooth", "lr", "grad_norm", "tokens_per_s")] + ["", ""]
        for step, tokens, val, tr in zip(*(self.evals.column(n) for n in EVAL_COLUMNS)):
            row = rows.setdefault(int(step), [_num(tokens) and int(tokens)] + [""] * 7)
            row[6], row[7] = _num(val), _num(tr)
        skipped = set(self.skipped.column("step").astype(int).tolist())
        nonfinite = set(self.nonfinite.column("step").astype(int).tolist())
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "tokens_seen", "loss", "loss_smoothed", "lr", "grad_norm", "tokens_per_s",
                             "val_loss", "eval_train_loss", "amp_step_skipped", "nonfinite"])
            for step in sorted(rows):
                writer.writerow([step] + rows[step] + [int(step in skipped), int(step in nonfinite)])


def _num(x) -> str:
    """CSV cell for a float: empty for NaN, shortest round-trip repr otherwise."""
    x = float(x)
    return "" if math.isnan(x) else repr(x)
