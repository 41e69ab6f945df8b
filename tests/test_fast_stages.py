"""app.generation.fast_stages equals engine.decoding.stages (the chart's numbers are the sampler's numbers)."""

import pytest
import torch

from app.generation import fast_stages
from engine.decoding import STAGES, DecodeSettings, stages


def same(a, b):
    assert [s.name for s in a] == [s.name for s in b]
    for x, y in zip(a, b):
        assert torch.equal(x.kept, y.kept), x.name
        assert torch.equal(x.probs, y.probs), x.name
        assert torch.equal(x.logits, y.logits), x.name
        assert x.info == y.info, x.name


def logits_cases(v):
    g = torch.Generator().manual_seed(v)
    yield torch.randn(v, generator=g) * 3  # peaked
    yield torch.randn(v, generator=g) * 0.01  # near-uniform: an untrained model
    yield torch.round(torch.randn(v, generator=g) * 2) / 2  # many exact ties, at every threshold
    z = torch.zeros(v)
    z[:5] = 4.0
    yield z  # a plateau of equal tokens


@pytest.mark.parametrize("v", [300, 5000, 40000])
def test_equal_to_the_engine(v, monkeypatch):
    monkeypatch.setattr(fast_stages, "CANDIDATES", (16, 256, 4096))  # exercise the widening at small sizes
    settings = [DecodeSettings(top_k=k) for k in (1, 7, 40, 1000)]
    settings += [DecodeSettings(top_p=p) for p in (0.05, 0.5, 0.9, 0.999)]
    settings += [DecodeSettings(temperature=0.7, top_k=50, top_p=0.8, min_p=0.02, repetition_penalty=1.3),
                 DecodeSettings(temperature=0, top_p=0.9),
                 DecodeSettings(temperature=2.0, top_p=0.95, top_k=20, order=tuple(reversed(STAGES)))]
    previous = list(range(0, v, max(1, v // 50)))
    for logits in logits_cases(v):
        for s in settings:
            same(fast_stages.stages(logits, s, previous), stages(logits, s, previous))
