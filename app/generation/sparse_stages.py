"""The decoding stages over the few tokens an earlier stage kept: once top-k (or top-p, min-p, greedy) has cut a
150 000-token vocabulary to a handful, the stages after it and the chart's reads cost microseconds, not passes over
the whole vocabulary.

A ``SparseStage`` holds the kept ids (ascending) and their float64 logits; the fields of an engine.decoding.Stage
(``logits``, ``probs``, ``kept`` over the whole vocabulary) are built only when read. Each stage follows the engine's
definition (ties towards lower ids, as its stable sort breaks them; the same info). The probabilities are the
engine's up to the rounding of a float64 sum taken in another order (~1e-16): tests compare them with the engine's
in float32, the precision the chart shows and ``Stage.probs`` returns.
"""

import torch

from engine.decoding import entropy

_F32_MAX = torch.finfo(torch.float32).max


class SparseStage:
    """A stage whose finite logits are ``values`` at ``ids`` (ascending) of an ``n``-token vocabulary."""

    def __init__(self, name: str, n: int, ids: torch.Tensor, values: torch.Tensor, info: dict):
        self.name, self.n, self.ids, self.values, self.info = name, n, ids, values, info
        self._p64 = None
        self.derived: dict = {}

    @property
    def sparse_probs64(self) -> torch.Tensor:
        """The kept tokens' probabilities (float64), in the order of ``ids``."""
        if self._p64 is None:
            e = torch.exp(self.values - self.values.max())
            self._p64 = e / e.sum()
        return self._p64

    def _dense(self, values: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((self.n,), fill, dtype=values.dtype)
        out[self.ids] = values
        return out

    @property
    def kept(self) -> torch.Tensor:
        return self._dense(torch.ones(len(self.ids), dtype=torch.bool), False)

    @property
    def logits64(self) -> torch.Tensor:
        return self._dense(self.values, float("-inf"))

    @property
    def logits(self) -> torch.Tensor:
        return self._dense(self.values.clamp(min=-_F32_MAX, max=_F32_MAX).float(), float("-inf"))

    @property
    def probs64(self) -> torch.Tensor:
        return self._dense(self.sparse_probs64, 0.0)

    @property
    def probs(self) -> torch.Tensor:
        return self._dense(self.sparse_probs64.float(), 0.0)

    # what the chart reads, without building a vector over the vocabulary
    def _where(self, token_ids) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(token_ids, dtype=torch.long)
        pos = torch.searchsorted(self.ids, t).clamp(max=max(len(self.ids) - 1, 0))
        return pos, self.ids[pos] == t

    def probs_at(self, token_ids) -> list[float]:
        """Float32 probabilities of ``token_ids`` (0 for the cut ones), as Python floats."""
        pos, found = self._where(token_ids)
        return torch.where(found, self.sparse_probs64[pos].float(), 0.0).tolist()

    def kept_at(self, token_ids) -> list[bool]:
        return self._where(token_ids)[1].tolist()

    def best(self) -> int:
        """torch.argmax(self.probs): the first of the most likely tokens."""
        return int(self.ids[torch.argmax(self.sparse_probs64.float())])

    def n_possible(self) -> int:
        return int((self.sparse_probs64.float() > 0).sum())

    def entropy_bits(self) -> float:
        return entropy(self.sparse_probs64.float())  # the engine's entropy(probs): the same non-zero values in order


def from_dense(name: str, logits64: torch.Tensor, keep_ids: torch.Tensor, info: dict) -> SparseStage:
    ids = torch.sort(keep_ids).values
    return SparseStage(name, logits64.numel(), ids, logits64[ids], info)


def run(name: str, before: SparseStage, settings, previous_ids) -> SparseStage:
    """Stage ``name`` after a sparse one, as engine.decoding's apply_* functions define it."""
    ids, values = before.ids, before.values
    if name == "repetition_penalty":
        seen = sorted(set(int(i) for i in previous_ids))
        if seen and (seen[0] < 0 or seen[-1] >= before.n):
            bad = seen[0] if seen[0] < 0 else seen[-1]
            raise ValueError(f"previous id {bad} is outside the vocabulary (0..{before.n - 1})")
        penalty = settings.repetition_penalty
        pos, found = before._where(seen) if seen else (torch.zeros(0, dtype=torch.long),) * 2
        pos = pos[found.bool()]
        values = values.clone()
        x = values[pos]
        values[pos] = torch.where(x < 0, x * penalty, x / penalty)
        return _finite(name, before.n, ids, values, {"penalty": penalty, "n_penalized": len(seen)})
    if name == "temperature":
        t = settings.temperature
        if t == 0:
            best = int(ids[torch.argmax(values)])  # the first maximal id: ids ascend
            return SparseStage(name, before.n, torch.tensor([best]), torch.zeros(1, dtype=values.dtype),
                               {"temperature": 0.0, "greedy": True, "argmax": best})
        out = values / t
        if torch.isposinf(out).any():
            out = (values - values.max()) / t
        return _finite(name, before.n, ids, out, {"temperature": t, "greedy": False})
    if name == "top_k":
        k_eff = min(settings.top_k, len(ids))
        order = torch.sort(values, descending=True, stable=True).indices
        keep = torch.sort(order[:k_eff]).values
        return SparseStage(name, before.n, ids[keep], values[keep],
                           {"k": settings.top_k, "n_kept": k_eff, "threshold": float(values[order[k_eff - 1]])})
    probs = before.sparse_probs64
    if name == "top_p":
        p = settings.top_p
        sorted_probs, order = torch.sort(probs, descending=True, stable=True)
        cumulative = torch.cumsum(sorted_probs, dim=0)
        n_keep = int(torch.searchsorted(cumulative, torch.tensor([p], dtype=cumulative.dtype)).item()) + 1
        n_keep = max(1, min(n_keep, int((sorted_probs > 0).sum())))
        keep = torch.sort(order[:n_keep]).values
        return SparseStage(name, before.n, ids[keep], values[keep],
                           {"p": p, "n_kept": n_keep, "cutoff_prob": float(sorted_probs[n_keep - 1]),
                            "cumulative_at_cutoff": float(cumulative[n_keep - 1])})
    threshold = settings.min_p * float(probs.max())
    keep = probs >= threshold
    return SparseStage(name, before.n, ids[keep], values[keep],
                       {"min_p": settings.min_p, "threshold": threshold, "n_kept": int(keep.sum())})


def _finite(name, n, ids, values, info) -> SparseStage:
    """A stage that may have pushed a logit to -inf (a huge penalty, a tiny temperature) drops it, as isfinite would."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        ids, values = ids[finite], values[finite]
    return SparseStage(name, n, ids, values, info)
