"""Model FLOPs per token, the measured matmul peak and MFU: what a training run reports about its use of the machine."""

import math

import pytest
import torch

from app.training.state import RunState
from engine.flops import flops_per_token, matmul_params, matmul_peak, mfu
from engine.messages import Started, Step
from engine.model import GPT, GPTConfig
from engine.presets import preset
from engine.train import TrainConfig, train


def test_the_count_follows_the_matrices_each_architecture_has():
    gpt = GPT(GPTConfig(vocab_size=65, n_layer=2, n_head=4, n_embd=64, block_size=32, bias=True))
    d = 64
    per_layer = d * 3 * d + d * d + d * 4 * d + 4 * d * d
    assert matmul_params(gpt) == 2 * per_layer + 65 * d  # the tied head is a matmul, the position table is not
    assert flops_per_token(gpt, 32) == 6 * matmul_params(gpt) + 12 * 2 * 4 * 16 * 32
    # Llama-style: grouped-query attention (2 key/value heads), a gated MLP of three matrices, an untied head
    llama = GPT(GPTConfig(vocab_size=100, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, block_size=32, bias=False,
                          norm="rmsnorm", mlp="swiglu", pos="rope", tie_weights=False))
    linear = sum(m.weight.numel() for m in llama.modules() if isinstance(m, torch.nn.Linear))
    embedding = llama.transformer["wte"].weight.numel()
    assert matmul_params(llama) == linear == llama.num_params() - embedding - sum(
        p.numel() for n, p in llama.named_parameters() if "ln" in n or "norm" in n)
    # the attention term grows with the context, the weight term does not
    assert flops_per_token(llama, 64) - flops_per_token(llama, 32) == 12 * 2 * 4 * 16 * 32


def test_the_peak_is_measured_once_and_leaves_the_random_streams_alone():
    before = torch.random.get_rng_state()
    peak = matmul_peak("cpu", torch.float32)
    assert 1e8 < peak < 1e14  # any CPU this runs on: more than 0.1 GFLOP/s, less than 100 TFLOP/s
    assert torch.equal(torch.random.get_rng_state(), before)  # dropout and resume depend on that stream
    assert matmul_peak("cpu", torch.float32) == peak  # remembered
    assert mfu(0.0, 1e6, peak) != mfu(0.0, 1e6, peak)  # NaN: nothing measured
    assert mfu(2000.0, 1e6, 4e9) == pytest.approx(0.5)


def test_a_run_reports_mfu_and_the_pane_shows_it(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world, the quick brown fox. " * 200, encoding="utf-8")
    config = TrainConfig.from_dict({**preset("tiny"), "corpus": str(corpus), "out_dir": str(tmp_path / "run"),
                                    "max_iters": 4, "eval_interval": 100, "eval_iters": 1, "sample_len": 0,
                                    "log_interval": 1, "checkpoint_interval": 0})
    msgs = []
    train(config, msgs.append)
    started = next(m for m in msgs if isinstance(m, Started))
    steps = [m for m in msgs if isinstance(m, Step)]
    assert started.peak_flops > 0 and started.flops_per_token > 0
    for s in steps:  # each step's MFU is its own rate's
        assert s.mfu == pytest.approx(s.tokens_per_s * started.flops_per_token / started.peak_flops)
        assert 0 < s.mfu < 1

    state = RunState()
    state.begin(str(tmp_path / "run"), 4, now=0.0)
    for m in msgs:
        state.dispatch(m)
    text = state.progress(now=1e12).text
    rate = state.history.recent_tokens_per_s()
    expected = 100 * rate * started.flops_per_token / started.peak_flops
    assert text.endswith(f"MFU {expected:.1f} %"), text  # fp32: no precision named
    bf16 = RunState()
    bf16.begin(str(tmp_path / "run"), 4, now=0.0)
    for m in msgs:
        bf16.dispatch(Started(m.run_id, config={**m.config, "precision": "bf16"}, n_params=m.n_params,
                              flops_per_token=m.flops_per_token, peak_flops=m.peak_flops) if m is started else m)
    assert bf16.progress(now=1e12).text.endswith(f"MFU {expected:.1f} % (bf16)")


def test_a_followed_run_from_before_mfu_shows_no_mfu():
    state = RunState()
    state.begin("somewhere", 10, following=True, now=0.0)
    state.dispatch(Started("r", config={"max_iters": 10}, n_params=1000))  # written before these fields existed
    state.dispatch(Step("r", step=1, loss=2.0, tokens_per_s=500.0, tokens_seen=64, time=1.0))
    assert "tok/s" in state.progress(now=2.0).text and "MFU" not in state.progress(now=2.0).text
    assert not math.isfinite(mfu(500.0, 0.0, 0.0))


def test_bf16_matrix_units_are_read_from_the_cpu_flags(tmp_path):
    from engine.flops import cpu_has_bf16_matrix_units

    for flags, expected in (("fpu avx512f avx512_bf16 amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", False)):
        info = tmp_path / f"cpuinfo-{expected}"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert cpu_has_bf16_matrix_units(str(info)) is expected
    assert cpu_has_bf16_matrix_units(str(tmp_path / "absent")) is False
