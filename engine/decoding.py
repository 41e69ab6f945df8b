"""Decoding as pure functions over a logits vector: each stage reshapes the next-token distribution.

The chain runs the active stages in the user's order; every stage reports the distribution it produced and which
tokens it kept, so a chart can show each one without re-running the model::

    >>> logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    >>> probabilities(logits, DecodeSettings(top_k=2))
    tensor([0.7311, 0.2689, 0.0000, 0.0000])
    >>> probabilities(logits, DecodeSettings(temperature=0))   # greedy
    tensor([1., 0., 0., 0.])
    >>> sample(probabilities(logits, DecodeSettings()), torch.Generator().manual_seed(0))
    (3, 0.9700530018065531)

Numerics: stages work in float64 (a float32 vector is returned in each Stage); temperature divides the logits, and
softmax subtracts the maximum, so temperatures from 1e-2 to 1e2 (and beyond) never overflow. Removed tokens have
logit -inf and probability exactly 0.
"""

import math
from dataclasses import dataclass, field

import torch

STAGES = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")
_F32_MAX = torch.finfo(torch.float32).max


@dataclass
class DecodeSettings:
    temperature: float = 1.0  # 0 = greedy (argmax); < 1 sharpens, > 1 flattens
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    top_p: float = 1.0  # keep the smallest set of top tokens whose probability reaches p; 1 = off
    min_p: float = 0.0  # drop tokens below min_p * (probability of the top token); 0 = off
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the text (CTRL); 1 = off
    order: tuple[str, ...] = STAGES  # the order the stages run in; a stage left out never runs

    def __post_init__(self):
        self.order = tuple(self.order)
        self.validate()

    def validate(self):
        """Raise ValueError with a clear message for any setting out of range."""
        def number(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            return value

        if number("temperature") < 0 or math.isinf(self.temperature):
            raise ValueError(f"temperature must be >= 0 and finite (0 = greedy), got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not 0 < number("top_p") <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not 0 <= number("min_p") <= 1:
            raise ValueError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        if number("repetition_penalty") <= 0 or math.isinf(self.repetition_penalty):
            raise ValueError(f"repetition_penalty must be > 0 and finite (1 = off), got {self.repetition_penalty}")
        unknown = [s for s in self.order if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown decoding stage(s) {', '.join(map(repr, unknown))}; "
                             f"the stages are {', '.join(STAGES)}")
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"each decoding stage may appear once in order, got {self.order}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def is_active(self, stage: str) -> bool:
        """Whether a stage changes anything with these settings (inactive stages are skipped)."""
        return {
            "repetition_penalty": self.repetition_penalty != 1.0,
            "temperature": self.temperature != 1.0,
            "top_k": self.top_k > 0,
            "top_p": self.top_p < 1.0,
            "min_p": self.min_p > 0.0,
        }[stage]

    def active_stages(self) -> tuple[str, ...]:
        return tuple(s for s in self.order if self.is_active(s))


@dataclass
class Stage:
    name: str  # "input" or one of STAGES
    logits: torch.Tensor  # (V,) float32 after this stage; removed tokens are -inf
    probs: torch.Tensor  # (V,) float32 softmax of logits (removed tokens exactly 0)
    kept: torch.Tensor  # (V,) bool: tokens still allowed after this stage
    info: dict = field(default_factory=dict)  # what the stage did, e.g. top_p: cutoff_prob, cumulative_at_cutoff


# --- the stages: (V,) float64 logits -> ((V,) float64 logits, info) --------------------------------------------------

def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Stable softmax in float64; -inf entries get exactly 0. [0., 0., -inf] -> [0.5, 0.5, 0.]"""
    z = logits.double()
    z = z - z.max()
    e = torch.exp(z)
    return e / e.sum()


def apply_repetition_penalty(logits, previous_ids, penalty: float):
    """CTRL-style penalty on ids already seen: positive logits are divided by penalty, negative ones multiplied."""
    out = logits.clone()
    seen = sorted(set(int(i) for i in previous_ids))
    if seen and (seen[0] < 0 or seen[-1] >= logits.numel()):
        bad = seen[0] if seen[0] < 0 else seen[-1]
        raise ValueError(f"previous id {bad} is outside the vocabulary (0..{logits.numel() - 1})")
    if seen:
        idx = torch.tensor(seen, dtype=torch.long)
        x = out[idx]
        out[idx] = torch.where(x < 0, x * penalty, x / penalty)
    return out, {"penalty": penalty, "n_penalized": len(seen)}


def apply_temperature(logits, temperature: float):
    """Divide logits by temperature; 0 -> greedy: only the argmax stays (ties go to the lowest id)."""
    if temperature == 0:
        best = int(torch.argmax(logits))  # first maximal index
        out = torch.full_like(logits, float("-inf"))
        out[best] = 0.0
        return out, {"temperature": 0.0, "greedy": True, "argmax": best}
    out = logits / temperature
    if torch.isposinf(out).any():  # only for absurdly small temperatures: shift first, softmax is unchanged
        out = (logits - logits.max()) / temperature
    return out, {"temperature": temperature, "greedy": False}


def apply_top_k(logits, k: int):
    """Keep exactly the k highest logits (ties broken towards lower ids), or all finite ones if fewer."""
    n_finite = int(torch.isfinite(logits).sum())
    k_eff = min(k, n_finite)
    order = torch.sort(logits, descending=True, stable=True).indices
    keep = order[:k_eff]
    out = torch.full_like(logits, float("-inf"))
    out[keep] = logits[keep]
    return out, {"k": k, "n_kept": k_eff, "threshold": float(logits[order[k_eff - 1]])}


def apply_top_p(logits, p: float):
    """Keep the smallest set of most likely tokens whose total probability reaches p (at least the top token)."""
    probs = softmax(logits)
    sorted_probs, order = torch.sort(probs, descending=True, stable=True)
    cumulative = torch.cumsum(sorted_probs, dim=0)
    n_keep = int(torch.searchsorted(cumulative, torch.tensor([p], dtype=cumulative.dtype)).item()) + 1
    n_keep = max(1, min(n_keep, int((sorted_probs > 0).sum())))
    keep = order[:n_keep]
    out = torch.full_like(logits, float("-inf"))
    out[keep] = logits[keep]
    return out, {"p": p, "n_kept": n_keep, "cutoff_prob": float(sorted_probs[n_keep - 1]),
                 "cumulative_at_cutoff": float(cumulative[n_keep - 1])}


def apply_min_p(logits, min_p: float):
    """Drop tokens whose probability is below min_p times the top token's probability."""
    probs = softmax(logits)
    threshold = min_p * float(probs.max())
    keep = probs >= threshold
    out = logits.masked_fill(~keep, float("-inf"))
    return out, {"min_p": min_p, "threshold": threshold, "n_kept": int(keep.sum())}


def _check_logits(logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(logits)
    if logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"logits must be a non-empty 1-D vector, got shape {tuple(logits.shape)}")
    logits = logits.detach().to("cpu", torch.float64)
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contain NaN or +inf")
    if torch.isneginf(logits).all():
        raise ValueError("all logits are -inf: no token is possible")
    return logits


def _stage(name, logits64, info) -> Stage:
    probs = softmax(logits64)
    kept = torch.isfinite(logits64)
    logits32 = logits64.clamp(min=-_F32_MAX, max=_F32_MAX).masked_fill(~kept, float("-inf")).float()
    return Stage(name, logits32, probs.float(), kept, info)


def stages(logits, settings: DecodeSettings, previous_ids=()) -> list[Stage]:
    """Run the active stages in settings.order; the first Stage is "input" (the raw softmax).

    previous_ids feed the repetition penalty (the ids already in the text).
    """
    settings.validate()
    current = _check_logits(logits)
    result = [_stage("input", current, {})]
    for name in settings.active_stages():
        if name == "repetition_penalty":
            current, info = apply_repetition_penalty(current, previous_ids, settings.repetition_penalty)
        elif name == "temperature":
            current, info = apply_temperature(current, settings.temperature)
        elif name == "top_k":
            current, info = apply_top_k(current, settings.top_k)
        elif name == "top_p":
            current, info = apply_top_p(current, settings.top_p)
        else:
            current, info = apply_min_p(current, settings.min_p)
        result.append(_stage(name, current, info))
    return result


def probabilities(logits, settings: DecodeSettings, previous_ids=()) -> torch.Tensor:
    """The final next-token distribution (V,) float32 after all stages; greedy gives a one-hot vector."""
    return stages(logits, settings, previous_ids)[-1].probs


def sample(probs, generator: torch.Generator) -> tuple[int, float]:
    """Draw a token by inverse CDF: u ~ U[0, 1) from generator, the first id whose cumulative probability exceeds u.

    Returns (token id, u); the same generator state gives the same draw, and u shows where on the CDF it landed.
    A token with probability 0 is never drawn.
    """
    probs = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if probs.dim() != 1 or probs.numel() == 0:
        raise ValueError(f"probs must be a non-empty 1-D vector, got shape {tuple(probs.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError("probs must be finite, non-negative and not all zero")
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    cdf = torch.cumsum(probs, dim=0)
    cdf = cdf / cdf[-1]  # exactly 1.0 at the end, so u < 1 always finds a token
    token = int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True).item())
    return min(token, probs.numel() - 1), u


def entropy(probs) -> float:
    """Shannon entropy in bits. [0.5, 0.5] -> 1.0; one-hot -> 0.0"""
    p = torch.as_tensor(probs).detach().double()
    p = p[p > 0]
    return float(-(p * torch.log2(p)).sum())


def top_tokens(probs, n: int) -> list[tuple[int, float]]:
    """The n most likely (id, prob) pairs, most likely first, ties towards lower ids; zero-probability ids left out."""
    p = torch.as_tensor(probs).detach().float()
    values, ids = torch.sort(p, descending=True, stable=True)
    return [(int(i), float(v)) for i, v in zip(ids[:n], values[:n]) if v > 0]
