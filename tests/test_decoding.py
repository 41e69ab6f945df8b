"""Decoding stages: edge cases, numerics, sampling, and agreement with Hugging Face's logits processors."""

import math

import pytest
import torch

from engine.decoding import (STAGES, DecodeSettings, entropy, probabilities, sample, stages, top_tokens)


def random_logits(V=1000, seed=0, scale=3.0):
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * scale


# --- agreement with transformers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("transformers")
    from transformers.generation import logits_process
    return logits_process


def hf_apply(processor, logits, input_ids=None):
    ids = torch.tensor([input_ids if input_ids is not None else [0]])
    return processor(ids, logits.clone()[None, :])[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("t", [0.01, 0.3, 1.7, 100.0])
def test_temperature_matches_hf(hf, seed, t):
    logits = random_logits(seed=seed)
    ours = stages(logits, DecodeSettings(temperature=t))[-1]
    expected = hf_apply(hf.TemperatureLogitsWarper(t), logits)
    torch.testing.assert_close(ours.logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.probs, torch.softmax(expected.double(), -1).float(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 5, 50, 999])
def test_top_k_matches_hf(hf, seed, k):
    logits = random_logits(seed=seed)
    ours = stages(logits, DecodeSettings(top_k=k))[-1]
    expected = hf_apply(hf.TopKLogitsWarper(k), logits)
    assert torch.equal(ours.kept, torch.isfinite(expected))
    assert int(ours.kept.sum()) == k
    torch.testing.assert_close(ours.probs, torch.softmax(expected, -1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_top_p_matches_hf(hf, seed, p):
    logits = random_logits(seed=seed)
    ours = stages(logits, DecodeSettings(top_p=p))[-1]
    expected = hf_apply(hf.TopPLogitsWarper(p), logits)
    assert torch.equal(ours.kept, torch.isfinite(expected))
    torch.testing.assert_close(ours.probs, torch.softmax(expected, -1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("min_p", [0.01, 0.1, 0.5, 0.9])
def test_min_p_matches_hf(hf, seed, min_p):
    logits = random_logits(seed=seed)
    ours = stages(logits, DecodeSettings(min_p=min_p))[-1]
    expected = hf_apply(hf.MinPLogitsWarper(min_p), logits)
    assert torch.equal(ours.kept, torch.isfinite(expected))


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_matches_hf(hf, penalty):
    logits = random_logits(seed=4)
    previous = [3, 17, 17, 500, 999, 0, 42]
    ours = stages(logits, DecodeSettings(repetition_penalty=penalty), previous)[-1]
    expected = hf_apply(hf.RepetitionPenaltyLogitsProcessor(penalty), logits, previous)
    torch.testing.assert_close(ours.logits, expected, rtol=1e-6, atol=1e-6)


def test_whole_chain_matches_hf(hf):
    logits = random_logits(seed=5)
    previous = list(range(0, 1000, 7))
    settings = DecodeSettings(repetition_penalty=1.2, temperature=0.8, top_k=200, top_p=0.9, min_p=0.05)
    x = hf_apply(hf.RepetitionPenaltyLogitsProcessor(1.2), logits, previous)
    for proc in (hf.TemperatureLogitsWarper(0.8), hf.TopKLogitsWarper(200), hf.TopPLogitsWarper(0.9),
                 hf.MinPLogitsWarper(0.05)):
        x = hf_apply(proc, x)
    torch.testing.assert_close(probabilities(logits, settings, previous), torch.softmax(x, -1), rtol=1e-4,
                               atol=1e-7)


# --- edge cases --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.01, 0.05, 1.0, 10.0, 100.0])
def test_temperature_is_stable_on_extreme_logits(t):
    logits = torch.tensor([1e4, -1e4, 3e4, 0.0, float("-inf"), 2.9999e4])
    p = probabilities(logits, DecodeSettings(temperature=t))
    assert torch.isfinite(p).all() and abs(p.sum().item() - 1) < 1e-6
    assert p[4] == 0 and int(p.argmax()) == 2
    big = probabilities(random_logits(50257, scale=30), DecodeSettings(temperature=t))
    assert torch.isfinite(big).all() and abs(big.sum().item() - 1) < 1e-5


def test_tiny_temperature_approaches_greedy():
    logits = torch.tensor([1.0, 1.5, 1.49])
    p = probabilities(logits, DecodeSettings(temperature=1e-3))
    assert 0.9999 < p[1] < 1  # e^-10 left for the runner-up
    p = probabilities(logits, DecodeSettings(temperature=1e-300))  # would overflow without the shift
    assert torch.equal(p, torch.tensor([0.0, 1.0, 0.0]))


def test_high_temperature_approaches_uniform():
    p = probabilities(random_logits(100), DecodeSettings(temperature=1e4))
    torch.testing.assert_close(p, torch.full((100,), 0.01), rtol=1e-2, atol=0)


def test_greedy_is_one_hot_with_lowest_id_on_ties():
    logits = torch.tensor([0.5, 2.0, -1.0, 2.0, 2.0])
    p = probabilities(logits, DecodeSettings(temperature=0))
    assert torch.equal(p, torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    last = stages(logits, DecodeSettings(temperature=0))[-1]
    assert last.info["greedy"] and last.info["argmax"] == 1
    # greedy followed by top-p/top-k still one-hot
    p = probabilities(logits, DecodeSettings(temperature=0, top_k=3, top_p=0.5, min_p=0.3))
    assert torch.equal(p, torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))


def test_top_k_keeps_exactly_k_with_ties():
    logits = torch.tensor([1.0, 3.0, 3.0, 3.0, 3.0, 0.0])
    last = stages(logits, DecodeSettings(top_k=2))[-1]
    assert last.kept.tolist() == [False, True, True, False, False, False]
    assert last.info["k"] == 2 and last.info["threshold"] == 3.0
    assert int(stages(torch.zeros(10), DecodeSettings(top_k=3))[-1].kept.sum()) == 3
    everything = stages(logits, DecodeSettings(top_k=100))[-1]
    assert everything.kept.all() and everything.info["n_kept"] == 6


def test_top_k_never_revives_removed_tokens():
    logits = torch.tensor([1.0, float("-inf"), float("-inf"), 0.0])
    last = stages(logits, DecodeSettings(top_k=3))[-1]
    assert last.kept.tolist() == [True, False, False, True]


def probs_logits(*p):
    return torch.log(torch.tensor(p, dtype=torch.float64)).float()


@pytest.mark.parametrize("p, n_kept", [(0.45, 1), (0.75, 2), (0.85, 3), (0.97, 4), (1e-9, 1)])
def test_top_p_smallest_set_reaching_p(p, n_kept):
    logits = probs_logits(0.5, 0.3, 0.15, 0.05)
    last = stages(logits, DecodeSettings(top_p=p))[-1]
    assert last.kept.tolist() == [i < n_kept for i in range(4)]
    assert last.info["n_kept"] == n_kept
    assert last.info["cutoff_prob"] == pytest.approx([0.5, 0.3, 0.15, 0.05][n_kept - 1], rel=1e-6)
    assert last.info["cumulative_at_cutoff"] == pytest.approx([0.5, 0.8, 0.95, 1.0][n_kept - 1], rel=1e-6)
    assert last.info["cumulative_at_cutoff"] >= p or n_kept == 4
    torch.testing.assert_close(last.probs.sum(), torch.tensor(1.0))


def test_top_p_one_dominant_token():
    last = stages(probs_logits(0.999, 0.0005, 0.0005), DecodeSettings(top_p=0.9))[-1]
    assert last.kept.tolist() == [True, False, False]
    assert last.probs.tolist() == [1.0, 0.0, 0.0]


def test_min_p_is_relative_to_the_top_token():
    logits = probs_logits(0.5, 0.3, 0.15, 0.05)
    last = stages(logits, DecodeSettings(min_p=0.2))[-1]  # threshold 0.1
    assert last.kept.tolist() == [True, True, True, False]
    assert last.info["threshold"] == pytest.approx(0.1, rel=1e-6)
    assert stages(logits, DecodeSettings(min_p=1.0))[-1].kept.tolist() == [True, False, False, False]


def test_repetition_penalty_signs():
    logits = torch.tensor([2.0, -2.0, 0.0, 4.0])
    last = stages(logits, DecodeSettings(repetition_penalty=2.0), previous_ids=[0, 1, 2, 0, 0])[-1]
    assert last.logits.tolist() == [1.0, -4.0, 0.0, 4.0]
    assert last.info["n_penalized"] == 3
    with pytest.raises(ValueError, match="previous id 9"):
        stages(logits, DecodeSettings(repetition_penalty=2.0), previous_ids=[9])


def test_stages_report_each_active_stage_in_order():
    logits = random_logits(200)
    settings = DecodeSettings(temperature=0.7, top_k=50, top_p=0.8, min_p=0.05,
                              order=("min_p", "top_p", "temperature", "top_k", "repetition_penalty"))
    result = stages(logits, settings, previous_ids=[1, 2])
    assert [s.name for s in result] == ["input", "min_p", "top_p", "temperature", "top_k"]
    assert result[0].kept.all()
    torch.testing.assert_close(result[0].probs, torch.softmax(logits, -1))
    for before, after in zip(result, result[1:]):
        assert not (after.kept & ~before.kept).any()  # a stage never brings a token back
        assert torch.isneginf(after.logits[~after.kept]).all() and (after.probs[~after.kept] == 0).all()
        assert after.logits.dtype == after.probs.dtype == torch.float32
    assert [s.name for s in stages(logits, DecodeSettings())] == ["input"]


def test_order_matters():
    logits = random_logits(300, seed=2)
    a = probabilities(logits, DecodeSettings(temperature=2.0, top_p=0.5, order=("temperature", "top_p")))
    b = probabilities(logits, DecodeSettings(temperature=2.0, top_p=0.5, order=("top_p", "temperature")))
    assert int((a > 0).sum()) > int((b > 0).sum())


@pytest.mark.parametrize("kwargs, message", [
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k must be an integer >= 0"),
    (dict(top_k=2.5), "top_k"),
    (dict(temperature=-0.1), "temperature must be >= 0"),
    (dict(temperature=float("nan")), "temperature must be a number"),
    (dict(min_p=1.5), r"min_p must be in \[0, 1\]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(order=("top_k", "nucleus")), "unknown decoding stage.*'nucleus'"),
    (dict(order=("top_k", "top_k")), "once"),
])
def test_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodeSettings(**kwargs)


def test_bad_logits():
    with pytest.raises(ValueError, match="all logits are -inf"):
        probabilities(torch.full((4,), float("-inf")), DecodeSettings())
    with pytest.raises(ValueError, match="NaN"):
        probabilities(torch.tensor([0.0, float("nan")]), DecodeSettings())
    with pytest.raises(ValueError, match="1-D"):
        probabilities(torch.zeros(2, 3), DecodeSettings())


def test_default_order_is_all_stages():
    assert DecodeSettings().order == STAGES


# --- sampling ----------------------------------------------------------------------------------------------------

def test_sample_is_inverse_cdf_and_reproducible():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    cdf = [0.1, 0.1, 0.7, 1.0]
    draws = [sample(probs, torch.Generator().manual_seed(s)) for s in range(50)]
    for token, u in draws:
        assert 0 <= u < 1
        assert token == next(i for i, c in enumerate(cdf) if c > u)
        assert token != 1
    again = [sample(probs, torch.Generator().manual_seed(s)) for s in range(50)]
    assert draws == again
    u0 = torch.rand((), generator=torch.Generator().manual_seed(7), dtype=torch.float64).item()
    assert sample(probs, torch.Generator().manual_seed(7))[1] == u0


def test_sample_frequencies():
    gen = torch.Generator().manual_seed(0)
    counts = [0, 0, 0]
    for _ in range(3000):
        counts[sample(torch.tensor([0.2, 0.5, 0.3]), gen)[0]] += 1
    assert [round(c / 3000, 1) for c in counts] == [0.2, 0.5, 0.3]


def test_sample_one_hot_and_bad_input():
    gen = torch.Generator().manual_seed(1)
    assert all(sample(torch.tensor([0.0, 0.0, 1.0]), gen)[0] == 2 for _ in range(20))
    with pytest.raises(ValueError):
        sample(torch.zeros(3), gen)
    with pytest.raises(ValueError):
        sample(torch.tensor([0.5, -0.1, 0.6]), gen)


def test_entropy_in_bits_and_top_tokens():
    assert entropy(torch.full((8,), 1 / 8)) == pytest.approx(3.0)
    assert entropy(torch.tensor([0.0, 1.0, 0.0])) == 0.0
    assert entropy(torch.tensor([0.5, 0.5])) == pytest.approx(1.0)
    assert entropy(probabilities(torch.zeros(1000), DecodeSettings())) == pytest.approx(math.log2(1000), rel=1e-5)
    assert top_tokens(torch.tensor([0.1, 0.4, 0.0, 0.4, 0.1]), 3) == [(1, pytest.approx(0.4)), (3, pytest.approx(0.4)),
                                                                      (0, pytest.approx(0.1))]
    assert top_tokens(torch.tensor([0.0, 1.0]), 5) == [(1, 1.0)]
