"""engine.decoding.stages, fast enough to redraw the chart of a 150 000-token vocabulary within a frame.

The engine's top-k and top-p each sort the whole vocabulary (a stable float64 sort: ~20 ms for 150 000 tokens on
one core), and the chart re-runs the stages at every control change. Both stages only ever keep a prefix of that
sorted order, so here they sort only the tokens that can be in the prefix: the k largest (top-k), or the largest
ones until their probabilities add up to p (top-p, widening the candidates when they do not). Ties are broken as the
engine's stable sort breaks them (towards lower ids), and the results equal the engine's: tests compare every
stage's probabilities, kept tokens and info on random and tied logits. Every other stage is the engine's own function.

Between control changes ``StageCache`` keeps the stages computed for the step: moving a control reruns only the
stages from the first whose setting changed. The softmax skips torch's slow exp of -inf (same bits), and once a stage
has cut the vocabulary to a few tokens the stages after it run on those alone (sparse_stages.py).
"""

import torch

from app.generation import sparse_stages
from app.generation.sparse_stages import SparseStage
from engine.decoding import (
    DecodeSettings, Stage, apply_repetition_penalty, apply_temperature, apply_top_k, apply_top_p,
)
from engine.decoding import entropy
from engine.decoding import softmax as engine_softmax

_F32_MAX = torch.finfo(torch.float32).max
SPARSE_FRACTION = 16  # a stage that keeps at most 1/16 of the vocabulary continues on its kept tokens alone
CANDIDATES = (1024, 16384)  # top-p widens its candidate set through these before sorting everything


def _stable_desc(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``ids`` (ascending) ordered by ``values`` descending, equal values keeping id order (a stable sort)."""
    return ids[torch.sort(values, descending=True, stable=True).indices]


def softmax(logits: torch.Tensor, kept: torch.Tensor | None = None) -> torch.Tensor:
    """engine.decoding.softmax, bit for bit, given ``kept`` (the finite logits): exp of -inf takes a slow path in
    torch's vectorised exp (~1 ms for 150 000 tokens, 10 times a finite one), so removed tokens are sent through it
    as 0 and zeroed after. Each token keeps its lane of the same vector, so every exp and the sum are the engine's."""
    if kept is None:
        return engine_softmax(logits)
    z = logits - logits.max()
    e = torch.where(kept, torch.exp(torch.where(kept, z, 0.0)), 0.0)
    return e / e.sum()


def top_k(logits: torch.Tensor, k: int, kept: torch.Tensor | None = None):
    """engine.decoding.apply_top_k without sorting the whole vocabulary; ``kept``: the finite logits, if known.
    Returns (the kept ids, info), or what apply_top_k returns when k is a large part of the vocabulary."""
    n = logits.numel()
    n_finite = int((torch.isfinite(logits) if kept is None else kept).sum())
    k_eff = min(k, n_finite)
    if k_eff * 4 >= n:
        return apply_top_k(logits, k)
    values, keep = torch.topk(logits, k_eff)
    threshold = values[-1]
    if int((logits == threshold).sum()) > int((values == threshold).sum()):  # ties at the cut, some left out by topk
        above = keep[values > threshold]
        ties = torch.nonzero(logits == threshold).flatten()  # ascending ids: the stable sort keeps the lowest ones
        keep = torch.cat([above, ties[: k_eff - above.numel()]])
    return keep, {"k": k, "n_kept": k_eff, "threshold": float(threshold)}


def top_p(logits: torch.Tensor, p: float, probs: torch.Tensor | None = None):
    """engine.decoding.apply_top_p, sorting only the most likely tokens while their cumulative probability reaches p.
    ``probs``: softmax(logits) in float64 if the caller has it already. Returns (the kept ids, info), or what
    apply_top_p returns when the nucleus is a large part of the vocabulary."""
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
        return keep, {"p": p, "n_kept": n_keep, "cutoff_prob": float(sorted_probs[n_keep - 1]),
                      "cumulative_at_cutoff": float(cumulative[n_keep - 1])}
    return apply_top_p(logits, p)


def min_p(logits: torch.Tensor, value: float, probs: torch.Tensor):
    """engine.decoding.apply_min_p given ``probs`` = softmax(logits) in float64: (the kept mask, info)."""
    threshold = value * float(probs.max())
    keep = probs >= threshold
    return keep, {"min_p": value, "threshold": threshold, "n_kept": int(keep.sum())}


class LazyStage:
    """An engine.decoding.Stage whose probabilities and float32 logits are computed when first read: the chart reads
    the probabilities of few stages (the last, and those just before a stage that cut a shown token).
    ``kept`` is passed in when the stage knows it (isfinite over the vocabulary costs as much as a softmax)."""

    def __init__(self, name: str, logits64: torch.Tensor, info: dict, kept: torch.Tensor | None = None):
        self.name, self.info, self.logits64 = name, info, logits64
        self.kept = torch.isfinite(logits64) if kept is None else kept
        self._probs64 = self._probs = None
        self.derived: dict = {}  # what a caller computed from this stage once (the chart's top rows of the input)

    @property
    def probs64(self) -> torch.Tensor:
        if self._probs64 is None:
            self._probs64 = softmax(self.logits64, self.kept)
        return self._probs64

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = self.probs64.float()
        return self._probs

    @property
    def logits(self) -> torch.Tensor:
        return self.logits64.clamp(min=-_F32_MAX, max=_F32_MAX).masked_fill(~self.kept, float("-inf")).float()

    # what the chart reads (sparse_stages.SparseStage answers the same questions without vocabulary-sized work)
    def probs_at(self, token_ids) -> list[float]:
        return self.probs[torch.as_tensor(token_ids, dtype=torch.long)].tolist()

    def kept_at(self, token_ids) -> list[bool]:
        return self.kept[torch.as_tensor(token_ids, dtype=torch.long)].tolist()

    def best(self) -> int:
        return int(torch.argmax(self.probs))

    def n_possible(self) -> int:
        return int((self.probs > 0).sum())

    def entropy_bits(self) -> float:
        return entropy(self.probs)


def _cut(name: str, logits64: torch.Tensor, keep, info: dict):
    """The stage that kept ``keep`` (ids, or a mask) of ``logits64``: sparse when few tokens are left."""
    ids = torch.nonzero(keep).flatten() if keep.dtype == torch.bool else keep
    if ids.numel() * SPARSE_FRACTION <= logits64.numel():
        return sparse_stages.from_dense(name, logits64, ids, info)
    kept = keep if keep.dtype == torch.bool else _mask(logits64.numel(), ids)
    return LazyStage(name, logits64.masked_fill(~kept, float("-inf")), info, kept)


def _mask(n: int, ids: torch.Tensor) -> torch.Tensor:
    kept = torch.zeros(n, dtype=torch.bool)
    kept[ids] = True
    return kept


def _run(name: str, before, settings: DecodeSettings, previous_ids):
    """One stage after ``before``, as engine.decoding runs it."""
    if isinstance(before, SparseStage):
        return sparse_stages.run(name, before, settings, previous_ids)
    current, kept = before.logits64, before.kept
    if name == "repetition_penalty":
        out, info = apply_repetition_penalty(current, previous_ids, settings.repetition_penalty)
        seen = torch.tensor(sorted(set(int(i) for i in previous_ids)), dtype=torch.long)
        kept = kept.clone()
        kept[seen] = torch.isfinite(out[seen])  # a huge penalty can push a seen logit to -inf
        return LazyStage(name, out, info, kept)
    if name == "temperature":
        out, info = apply_temperature(current, settings.temperature)
        if info["greedy"]:
            return _cut(name, out, torch.tensor([info["argmax"]]), info)
        # dividing by t >= 1 keeps every finite logit finite; a small t can overflow a huge one
        return LazyStage(name, out, info, kept if 1 <= settings.temperature else None)
    if name == "top_k":
        result = top_k(current, settings.top_k, kept)
    elif name == "top_p":
        result = top_p(current, settings.top_p, before.probs64)
    else:
        result = min_p(current, settings.min_p, before.probs64)
    if result[0].dtype.is_floating_point:  # the engine's own function ran: dense logits
        return LazyStage(name, *result)
    return _cut(name, current, *result)


def stages(logits: torch.Tensor, settings: DecodeSettings, previous_ids=()) -> list[Stage]:
    """What engine.decoding.stages returns for finite (V,) logits, the first Stage being "input" (as LazyStage
    objects with the same fields)."""
    return StageCache().stages(logits, settings, previous_ids)


def _setting(settings: DecodeSettings, name: str):
    return settings.repetition_penalty if name == "repetition_penalty" else getattr(settings, name)


class StageCache:
    """The stages of one step's logits, kept between calls: moving one control reruns only the stages from the first
    one whose setting changed (moving min-p reruns min-p alone), and the input stage is computed once per step.
    Results are those of ``stages``; the cache holds the stages of the last ``keep`` calls."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._key = None
        self._memo: dict[tuple, LazyStage] = {}
        self._recent: list[set] = []

    def stages(self, logits: torch.Tensor, settings: DecodeSettings, previous_ids=()) -> list[LazyStage]:
        settings.validate()
        previous_ids = tuple(int(i) for i in previous_ids)
        key = (logits, logits._version, previous_ids)  # _version: an in-place change makes it another step
        if self._key is None or self._key[0] is not logits or self._key[1:] != key[1:]:
            self._key, self._memo, self._recent = key, {}, []
        prefix: tuple = ()
        used = {prefix}
        stage = self._memo.get(prefix)
        if stage is None:
            stage = self._memo[prefix] = LazyStage("input", logits.detach().to("cpu", torch.float64), {})
        result = [stage]
        for name in settings.active_stages():
            prefix += ((name, _setting(settings, name)),)
            used.add(prefix)
            stage = self._memo.get(prefix)
            if stage is None:
                stage = self._memo[prefix] = _run(name, result[-1], settings, previous_ids)
            result.append(stage)
        self._recent = [*self._recent[-(self.keep - 1):], used] if self.keep > 1 else [used]
        alive = set().union(*self._recent)
        for k in [k for k in self._memo if k not in alive]:
            del self._memo[k]
        return result
