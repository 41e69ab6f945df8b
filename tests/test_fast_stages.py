"""app.generation.fast_stages equals engine.decoding.stages, and the chart built on it equals the chart built on the
engine (the chart's numbers are the sampler's numbers)."""

import pytest
import torch

from app.generation import fast_stages
from engine.decoding import STAGES, DecodeSettings, stages


def same(a, b):
    """Equal stages: kept tokens, float32 probabilities and logits exactly; info's floats to float64 rounding (a stage
    after a cut sums its few kept tokens' probabilities in another order than the engine's vectorised sum)."""
    assert [s.name for s in a] == [s.name for s in b]
    for x, y in zip(a, b):
        assert torch.equal(x.kept, y.kept), x.name
        assert torch.equal(x.probs, y.probs), x.name
        assert torch.equal(x.logits, y.logits), x.name
        assert x.info.keys() == y.info.keys(), x.name
        for key, value in y.info.items():
            assert x.info[key] == (pytest.approx(value, rel=1e-12, abs=1e-300) if isinstance(value, float)
                                   else value), (x.name, key)


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


def settings_walk(seed, n=60):
    """A user moving one control at a time, greedy and stage orders included."""
    g = torch.Generator().manual_seed(seed)
    s = DecodeSettings()
    out = []
    for _ in range(n):
        which = int(torch.randint(6, (1,), generator=g))
        u = float(torch.rand((), generator=g))
        values = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                      repetition_penalty=s.repetition_penalty, order=s.order)
        if which == 0:
            values["temperature"] = (0.0, 0.01, 0.3, 1.0, 1.7, 50.0)[int(u * 6)]
        elif which == 1:
            values["top_k"] = (0, 1, 3, 40, 100000)[int(u * 5)]
        elif which == 2:
            values["top_p"] = (1.0, 0.999, 0.9, 0.5, 0.05)[int(u * 5)]
        elif which == 3:
            values["min_p"] = (0.0, 0.001, 0.1, 1.0)[int(u * 4)]
        elif which == 4:
            values["repetition_penalty"] = (1.0, 0.5, 1.3, 1e6)[int(u * 4)]
        else:
            values["order"] = tuple(STAGES[i] for i in torch.randperm(len(STAGES), generator=g).tolist())
        s = DecodeSettings(**values)
        out.append(s)
    return out


def with_minus_inf(v, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(v, generator=g) * 2
    logits[torch.rand(v, generator=g) < 0.3] = float("-inf")  # a vocabulary masked by an earlier processor
    return logits


@pytest.mark.parametrize("v", [50, 3000, 20000])
def test_a_cache_moved_control_by_control_equals_the_engine(v):
    """Reusing the stages before the moved control (and continuing on the few tokens a cut kept) changes nothing."""
    cache = fast_stages.StageCache()
    cases = [*logits_cases(v), with_minus_inf(v, v)]
    previous = [0, 1, 2, v // 2, v - 1]
    for i, logits in enumerate(cases):
        for s in settings_walk(v + i):
            same(cache.stages(logits, s, previous), stages(logits, s, previous))


def test_the_cache_notices_new_or_changed_logits():
    cache = fast_stages.StageCache()
    s = DecodeSettings(top_k=2)
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert cache.stages(logits, s)[-1].probs_at([0, 1, 2]) == stages(logits, s)[-1].probs[:3].tolist()
    logits[2] = 9.0  # changed in place: another step's logits
    assert cache.stages(logits, s)[-1].kept_at([1, 2]) == [False, True]
    other = torch.tensor([0.0, 5.0, 4.0, 0.0])
    assert cache.stages(other, s)[-1].kept_at(range(4)) == [False, True, True, False]
    assert cache.stages(other, s, [1])[0] is not cache.stages(other, s)[0]  # the text is part of the step


def test_softmax_given_the_kept_tokens_is_the_engines_bit_for_bit():
    from engine.decoding import softmax

    for logits in [with_minus_inf(40000, 1), *logits_cases(40000)]:
        for t in (0.05, 1.0, 3.0):
            z = logits.double() / t
            assert torch.equal(fast_stages.softmax(z, torch.isfinite(z)), softmax(z))


def reference_chart(logits, settings, previous, top_n):
    """chart_data computed the straightforward way, from engine.decoding.stages over the whole vocabulary."""
    from engine.decoding import entropy

    staged = stages(logits, settings, previous)
    raw, final = staged[0].probs, staged[-1].probs
    ids = torch.topk(raw, top_n).indices.tolist()
    best = int(torch.argmax(final))
    ids += [best] if best not in ids else []
    rows = []
    for tid in ids:
        cut = next(((after.info.get("greedy") and "greedy" or after.name, float(before.probs[tid]))
                    for before, after in zip(staged, staged[1:]) if not after.kept[tid]), ("", 0.0))
        rows.append((tid, float(raw[tid]), float(final[tid]), *cut))
    return rows, entropy(raw), entropy(final), int((final > 0).sum())


@pytest.mark.parametrize("v", [64, 30000])
def test_chart_data_equals_the_straightforward_computation(v):
    from app.generation.distribution import chart_data

    previous = list(range(0, v, max(1, v // 20)))
    for i, logits in enumerate([*logits_cases(v), with_minus_inf(v, 3)]):
        for s in settings_walk(i, 25):
            data = chart_data(logits, s, previous, 12, str)
            rows, before, after, n_kept = reference_chart(logits, s, previous, 12)
            assert [(r.id, r.raw, r.final, r.cut_by, r.pre_cut) for r in data.rows] == rows, s
            assert data.entropy_before == before and data.entropy_after == pytest.approx(after, abs=1e-12)
            assert data.n_kept == n_kept


def test_the_chart_computes_on_one_torch_thread_and_gives_the_setting_back(monkeypatch):
    from app.generation import distribution

    inner = distribution._chart_data
    seen = []
    monkeypatch.setattr(distribution, "_chart_data", lambda *a: seen.append(torch.get_num_threads()) or inner(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = distribution.chart_data(torch.tensor([1.0, 0.0]), DecodeSettings(), (), 2, str)
        assert seen == [1] and torch.get_num_threads() == 2 and len(data.rows) == 2
    finally:
        torch.set_num_threads(before)
