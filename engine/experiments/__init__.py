"""Experiments: a library of run folders, their curves for overlays, and A/B comparisons of one setting.

- :mod:`engine.experiments.library`: :func:`summarize` a run folder (name, model, steps, best validation loss,
  tokens per second, state) and :func:`find_runs` under a folder.
- :mod:`engine.experiments.curves`: :class:`CurvesReader`, a run's curves as numpy arrays (read incrementally), and
  :func:`ema`, TensorBoard's debiased exponential moving average.
- :mod:`engine.experiments.plan`: the experiments (positions, precision, processes), their arms and folders.
- :mod:`engine.experiments.extrapolation`: validation loss at 1x, 2x and 4x the training context.
- :mod:`engine.experiments.cli`: ``llm-train --experiment KIND ...``.

No Qt here: the app's Runs view reads the same functions.
"""

from engine.experiments.curves import CurvesReader, RunCurves, ema
from engine.experiments.library import RunSummary, find_runs, summarize

__all__ = ["CurvesReader", "RunCurves", "ema", "RunSummary", "find_runs", "summarize"]
