"""engine.decoding.stages, fast enough to redraw the chart of a 150 000-token vocabulary within a frame.

The engine's top-k and top-p each sort the whole vocabulary (a stable float64 sort: ~20 ms for 150 000 tokens on
one core), and the chart re-runs the stages at every control change. Both stages only ever keep a prefix of that
sorted order, so here they sort only the tokens that can be in the prefix: the k largest (top-k), or the largest
ones until their probabilities add up to p (top-p, widening the candidates when they do not). Ties are broken as the
engine's stable sort breaks them (towards lower ids), and the results equal the engine's: tests compare every
stage's probabilities, kept tokens and info on random and tied logits. Every other stage is the engine's own function.
"""

import torch

from engine.decoding import (
    DecodeSettings, Stage, apply_min_p, apply_repetition_penalty, apply_temperature, apply_top_k, apply_top_p, softmax,
)

_F32_MAX = torch.finfo(torch.float32).max
CANDIDATES = (1024, 16384)  # top-p widens its candidate set through these before sorting everything


def _stable_desc(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``ids`` (ascending) ordered by ``values`` descending, equal values keeping id order (a stable sort)."""
    return ids[torch.sort(values, descending=True, stable=True).indices]


def top_k(logits: torch.Tensor, k: int):
    """engine.decoding.apply_top_k without sorting the whole vocabulary."""
    n = logits.numel()
    n_finite = int(torch.isfinite(logits).sum())
    k_eff = min(k, n_finite)
    if k_eff * 4 >= n:
        return apply_top_k(logits, k)
    threshold = torch.topk(logits, k_eff).values[-1]
    above = torch.nonzero(logits > threshold).flatten()
    ties = torch.nonzero(logits == threshold).flatten()  # ascending ids: the stable sort keeps the lowest ones
    keep = torch.cat([above, ties[: k_eff - above.numel()]])
    out = torch.full_like(logits, float("-inf"))
    out[keep] = logits[keep]
    return out, {"k": k, "n_kept": k_eff, "threshold": float(threshold)}


def top_p(logits: torch.Tensor, p: float, probs: torch.Tensor | None = None):
    """engine.decoding.apply_top_p, sorting only the most likely tokens while their cumulative probability reaches p.
    ``probs``: softmax(logits) in float64 if the caller has it already."""
    probs = softmax(logits) if probs is None else probs
    n = probs.numel()
    for m in CANDIDATES:
        if m * 4 >= n:
            break
        threshold = torch.topk(probs, m).values[-1]
        # every token the full sort puts before the m-th; when an earlier stage left fewer than m, the ones it left
        # (the zeros it removed come after them in the full sort)
        ids = torch.nonzero(probs >= threshold if threshold > 0 else probs > 0).flatten()
        order = _stable_desc(probs[ids], ids)
        sorted_probs = probs[order]
        cumulative = torch.cumsum(sorted_probs, dim=0)
        n_keep = int(torch.searchsorted(cumulative, torch.tensor([p], dtype=cumulative.dtype)).item()) + 1
        if n_keep > order.numel():
            continue  # p not reached among these candidates: widen
        n_keep = max(1, min(n_keep, int((probs > 0).sum())))
        keep = order[:n_keep]
        out = torch.full_like(logits, float("-inf"))
        out[keep] = logits[keep]
        return out, {"p": p, "n_kept": n_keep, "cutoff_prob": float(sorted_probs[n_keep - 1]),
                     "cumulative_at_cutoff": float(cumulative[n_keep - 1])}
    return apply_top_p(logits, p)


class LazyStage:
    """An engine.decoding.Stage whose probabilities and float32 logits are computed when first read: the chart reads
    the probabilities of few stages (the last, and those just before a stage that cut a shown token)."""

    def __init__(self, name: str, logits64: torch.Tensor, info: dict):
        self.name, self.info, self.logits64 = name, info, logits64
        self.kept = torch.isfinite(logits64)
        self._probs64 = self._probs = None

    @property
    def probs64(self) -> torch.Tensor:
        if self._probs64 is None:
            self._probs64 = softmax(self.logits64)
        return self._probs64

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = self.probs64.float()
        return self._probs

    @property
    def logits(self) -> torch.Tensor:
        return self.logits64.clamp(min=-_F32_MAX, max=_F32_MAX).masked_fill(~self.kept, float("-inf")).float()


def stages(logits: torch.Tensor, settings: DecodeSettings, previous_ids=()) -> list[Stage]:
    """What engine.decoding.stages returns for finite (V,) logits, the first Stage being "input" (as LazyStage
    objects with the same fields)."""
    settings.validate()
    current = logits.detach().to("cpu", torch.float64)
    result = [LazyStage("input", current, {})]
    for name in settings.active_stages():
        if name == "repetition_penalty":
            current, info = apply_repetition_penalty(current, previous_ids, settings.repetition_penalty)
        elif name == "temperature":
            current, info = apply_temperature(current, settings.temperature)
        elif name == "top_k":
            current, info = top_k(current, settings.top_k)
        elif name == "top_p":
            current, info = top_p(current, settings.top_p, result[-1].probs64)
        else:
            current, info = apply_min_p(current, settings.min_p)
        result.append(LazyStage(name, current, info))
    return result
