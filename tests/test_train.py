"""The training loop in-process: config validation, schedule, messages, exact resume, non-finite handling, DDP."""

import math
import multiprocessing
import queue

import pytest
import torch

import engine.train as train_mod
import engine.train.trainer as trainer_mod
from engine.checkpoint import load_model, read_checkpoint
from engine.messages import (CheckpointSaved, Eval, Failed, Finished, NonFinite, Outcome, Sample, Started, Step,
                             read_jsonl)
from engine.model import GPT
from engine.presets import MODEL_SIZES, TRAIN_PRESETS, model_size, preset
from engine.train import ConfigError, TrainConfig, get_lr, launch, problems, train

TEXT = "".join(f"{name}:\nWhat say you, {i}? I say {i * 7 % 11} and no more.\n\n"
               for i in range(120) for name in ("ROMEO", "JULIET"))


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT, encoding="utf-8")
    settings = dict(corpus=str(corpus), out_dir=str(tmp_path / name), n_layer=1, n_head=2, n_embd=16,
                    block_size=16, batch_size=4, max_iters=10, lr_decay_iters=10, warmup_iters=2, eval_interval=5,
                    eval_iters=2, sample_len=8, checkpoint_interval=4, device="cpu", lr=3e-3)
    settings.update(overrides)
    return TrainConfig(**settings)


def run(config, stop_after=None):
    """train() -> (messages, its Finished message's reason text); stop_after=k asks to stop once step k was
    reported."""
    msgs = []
    stop = lambda: stop_after is not None and any(isinstance(m, Step) and m.step >= stop_after for m in msgs)  # noqa: E731
    finished = train(config, msgs.append, stop)
    assert finished is msgs[-1] and isinstance(finished.outcome, Outcome)
    return msgs, finished.reason


def steps(msgs):
    return {m.step: m.loss for m in msgs if isinstance(m, Step)}


def weights(out_dir):
    return read_checkpoint(f"{out_dir}/ckpt.pt")["model"]


# --- config -------------------------------------------------------------------------------------------------------

def test_config_coerces_command_line_strings():
    c = TrainConfig.from_dict({"batch_size": "8", "lr": "3e-4", "compile": "false", "dropout": "0.1",
                               "max_iters": "2e3", "learning_rate": "1e-3", "device": "cpu"})
    assert (c.batch_size, c.compile, c.dropout, c.max_iters, c.lr) == (8, False, 0.1, 2000, 1e-3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.with_overrides({"max_iters": "50"}).max_iters == 50


@pytest.mark.parametrize("settings, message", [
    ({"btach_size": 3}, "unknown training setting 'btach_size'; did you mean 'batch_size'"),
    ({"batch_size": "many"}, "batch_size must be an integer, got 'many'"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"lr": -1}, "lr must be a positive number"),
    ({"min_lr": 1.0}, r"min_lr \(1.0\) must not exceed lr"),
    ({"compile": "maybe"}, "compile must be true or false"),
    ({"precision": "fp8"}, "precision must be one of fp32, bf16, fp16"),
    ({"precision": "fp16", "device": "cpu"}, "fp16 needs a CUDA GPU"),
    ({"n_embd": 30, "n_head": 4}, r"width n_embd=30 does not split evenly among n_head=4 heads"),
    ({"pos": "sinusoidal"}, "pos must be one of"),
    ({"val_fraction": 0}, "val_fraction"),
    ({"warmup_iters": 50, "lr_decay_iters": 10}, "lr_decay_iters"),
    ({"corpus": " "}, "corpus must not be empty"),
])
def test_config_errors_are_clear(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(settings)


def test_compile_on_a_cpu_without_a_cxx_compiler_is_refused_before_start(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "no-such-c++-compiler"))
    [problem] = problems({"compile": "true", "device": "cpu"})
    assert "needs a C++ compiler" in problem and "no-such-c++-compiler" in problem and "compile=false" in problem
    assert problems({"compile": "false", "device": "cpu"}) == []


def test_lr_schedule():
    c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110)
    assert get_lr(0, c) == pytest.approx(1e-3 / 11)
    assert get_lr(9, c) < get_lr(10, c) == pytest.approx(1e-3)
    assert get_lr(60, c) == pytest.approx(5.5e-4)
    assert get_lr(110, c) == pytest.approx(1e-4) and get_lr(5000, c) == 1e-4
    lrs = [get_lr(i, c) for i in range(10, 111)]
    assert lrs == sorted(lrs, reverse=True)


def test_presets_are_valid_configs():
    for name in TRAIN_PRESETS:
        TrainConfig.from_dict(preset(name))
    for name in MODEL_SIZES:
        TrainConfig.from_dict(model_size(name))
    cpu = TrainConfig.from_dict(preset("shakespeare-char-cpu"))  # nanoGPT's documented CPU run
    assert (cpu.n_layer, cpu.n_head, cpu.n_embd, cpu.block_size, cpu.batch_size, cpu.max_iters, cpu.lr_decay_iters,
            cpu.dropout, cpu.lr, cpu.min_lr, cpu.eval_iters, cpu.tokenizer) == \
        (4, 4, 128, 64, 12, 2000, 2000, 0.0, 1e-3, 1e-4, 20, "char")
    with pytest.raises(ValueError, match="unknown preset 'nope'; known presets: tiny"):
        preset("nope")


# --- a run --------------------------------------------------------------------------------------------------------

def test_a_tiny_run_reports_and_saves(tmp_path):
    config = tiny(tmp_path)
    msgs, reason = run(config)
    assert reason == "completed"
    assert isinstance(msgs[0], Started) and msgs[0].step == 0 and msgs[0].n_params > 0
    assert isinstance(msgs[-1], Finished) and msgs[-1].step == 10 and msgs[-1].reason == "completed"
    assert sorted(steps(msgs)) == list(range(1, 11))
    assert all(math.isfinite(loss) for loss in steps(msgs).values())
    s = [m for m in msgs if isinstance(m, Step)]
    assert s[-1].tokens_seen == 10 * 4 * 16 and s[-1].skipped_steps == 0 and s[-1].tokens_per_s > 0
    assert [m.step for m in msgs if isinstance(m, Eval)] == [0, 5, 10]
    assert [m.step for m in msgs if isinstance(m, Sample)] == [0, 5, 10]
    assert all(len(m.text) > 0 for m in msgs if isinstance(m, Sample))
    assert [m.step for m in msgs if isinstance(m, CheckpointSaved)] == [4, 8, 10]
    assert len({m.run_id for m in msgs}) == 1
    # the same stream in the run folder, and the config beside it
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl", 0)[0] == msgs
    assert train_mod.load_run_config(tmp_path / "run") == config.with_overrides({"resume": True})
    # the checkpoint is a model the Generation pane can load
    model, tokenizer, payload = load_model(tmp_path / "run" / "ckpt.pt")
    assert payload["train"]["iter_num"] == 10 and len(payload["train"]["rng"]) == 1
    assert len(model.next_logits(tokenizer.encode("ROMEO:\n"))) == tokenizer.n_vocab


def test_loss_goes_down(tmp_path):
    msgs, _ = run(tiny(tmp_path, max_iters=60, lr_decay_iters=60, eval_interval=30, sample_len=0))
    evals = [m for m in msgs if isinstance(m, Eval)]
    assert evals[-1].val_loss < evals[0].val_loss - 0.5


def test_an_existing_run_folder_is_not_overwritten(tmp_path):
    run(tiny(tmp_path, max_iters=2))
    with pytest.raises(ConfigError, match="already holds a run; resume it"):
        run(tiny(tmp_path, max_iters=2))


@pytest.mark.parametrize("stop_at, precision", [(5, "fp32"), (8, "fp32"), (8, "bf16")])  # between checkpoints / on one
def test_resume_after_stop_is_bit_for_bit(tmp_path, stop_at, precision):
    """Stop, resume: the same losses and the same final weights as a run that never stopped (with dropout; in bf16
    autocast too, whose attention runs in float32 on the CPU)."""
    common = dict(max_iters=12, lr_decay_iters=12, dropout=0.1, grad_accum=2, sample_len=4, precision=precision)
    full, _ = run(tiny(tmp_path, "full", **common))

    first, reason = run(tiny(tmp_path, "parts", **common), stop_after=stop_at)
    assert reason == "stopped"
    # the step in flight completes; at an evaluation step (5) the stop arrives during the evaluation, which is left
    stopped_at = stop_at if stop_at % 5 == 0 else stop_at + 1
    assert isinstance(first[-2], CheckpointSaved) and first[-2].step == stopped_at
    assert [m.step for m in first if isinstance(m, Eval)] == [0] + ([5] if stop_at > 5 else [])
    second, reason = run(tiny(tmp_path, "parts", **common, resume=True))
    assert reason == "completed"
    assert isinstance(second[0], Started) and second[0].step == stopped_at
    assert second[0].run_id == first[0].run_id

    assert {**steps(first), **steps(second)} == steps(full)
    assert set(steps(first)).isdisjoint(steps(second))
    a, b = weights(tmp_path / "full"), weights(tmp_path / "parts")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    def last_val(msgs):
        return [m.val_loss for m in msgs if isinstance(m, Eval)][-1]
    assert last_val(second) == last_val(full)


def test_resume_rejects_a_different_model(tmp_path):
    run(tiny(tmp_path, max_iters=2))
    with pytest.raises(ConfigError, match="cannot resume.*n_embd=16"):
        run(tiny(tmp_path, max_iters=4, n_embd=32, resume=True))
    assert train_mod.load_run_config(tmp_path / "run").n_embd == 16  # a failed start changes nothing
    with pytest.raises(ConfigError, match="nothing to resume"):
        run(tiny(tmp_path, "other", resume=True))


def test_stop_while_encoding_the_corpus(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT + "a text no other test encodes\n", encoding="utf-8")
    msgs = []
    assert train(tiny(tmp_path), msgs.append, lambda: True).outcome is Outcome.STOPPED
    assert msgs == [Finished("", step=0, outcome=Outcome.STOPPED)]
    assert not (tmp_path / "run").exists()


def test_a_bad_corpus_is_reported_as_failed(tmp_path):
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    msgs = []
    with pytest.raises(ValueError, match="too short"):
        train(tiny(tmp_path, corpus=str(tmp_path / "short.txt")), msgs.append)
    assert isinstance(msgs[-1], Failed) and "too short" in msgs[-1].error and msgs[-1].traceback == ""


# --- non-finite values --------------------------------------------------------------------------------------------

class Sabotaged(GPT):
    """A GPT whose nth training forward returns a NaN loss, or whose nth backward gives an infinite gradient."""

    nan_loss_at = None
    inf_grad_at = None

    def __init__(self, config):
        super().__init__(config)
        self.calls = 0
        next(self.parameters()).register_hook(
            lambda g: torch.full_like(g, math.inf) if self.calls == self.inf_grad_at else g)

    def forward(self, idx, targets=None, **kw):
        logits, loss = super().forward(idx, targets, **kw)
        if self.training and targets is not None:
            self.calls += 1
            if self.calls == self.nan_loss_at:
                loss = loss * math.nan
        return logits, loss


def test_nan_loss_in_fp32_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(Sabotaged, "nan_loss_at", 6)
    monkeypatch.setattr(trainer_mod, "GPT", Sabotaged)
    msgs, reason = run(tiny(tmp_path))
    assert reason.startswith("diverged: the loss became non-finite at step 6 in float32")
    assert "last checkpoint is step 4" in reason
    assert isinstance(msgs[-1], Finished) and msgs[-1].reason == reason and msgs[-1].step == 5
    assert any(isinstance(m, NonFinite) and m.step == 6 and "loss is nan" in m.what for m in msgs)
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]["iter_num"] == 4  # the good state is kept


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_non_finite_gradients_skip_the_step(tmp_path, monkeypatch, precision):
    monkeypatch.setattr(Sabotaged, "inf_grad_at", 3)
    monkeypatch.setattr(trainer_mod, "GPT", Sabotaged)
    msgs, reason = run(tiny(tmp_path, precision=precision, max_iters=6))
    assert reason == "completed"
    skipped = [m for m in msgs if isinstance(m, NonFinite)]
    assert [m.step for m in skipped] == [3] and "step skipped" in skipped[0].what
    s = [m for m in msgs if isinstance(m, Step)]
    assert [m.skipped_steps for m in s] == [0, 0, 1, 1, 1, 1]
    assert math.isinf(s[2].grad_norm) and all(math.isfinite(m.grad_norm) for m in s if m.step != 3)
    final = weights(tmp_path / "run")
    assert all(torch.isfinite(t).all() for t in final.values())


def test_bf16_autocast_trains_on_cpu(tmp_path):
    msgs, reason = run(tiny(tmp_path, precision="bf16", max_iters=20, lr_decay_iters=20, eval_interval=20))
    evals = [m for m in msgs if isinstance(m, Eval)]
    assert reason == "completed" and evals[-1].val_loss < evals[0].val_loss


# --- DDP ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_gloo_processes_follow_one_process(tmp_path):
    """Same global batch: a 2-process DDP run's losses equal the 1-process run's; the stop flag reaches both."""
    common = dict(max_iters=1000, lr_decay_iters=20, grad_accum=2, eval_interval=4, sample_len=0,
                  checkpoint_interval=0)
    ctx = multiprocessing.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    handle = launch(tiny(tmp_path, "ddp", **common), world_size=2, emit_queue=q, stop_event=stop, nice=0)
    ddp = []
    try:
        while not (ddp and isinstance(ddp[-1], (Finished, Failed))):
            try:
                ddp.append(q.get(timeout=60))
            except queue.Empty:
                pytest.fail(f"no message from the DDP run for 60 s; exit codes {handle.exitcodes}")
            if isinstance(ddp[-1], Step) and ddp[-1].step >= 6:
                stop.set()
        assert handle.join(30)
    finally:
        handle.kill()
    assert isinstance(ddp[-1], Finished) and ddp[-1].reason == "stopped", ddp[-1]
    assert handle.ok
    assert ddp[0].world_size == 2 and ddp[0].exchange == "shared memory"
    last = ddp[-1].step
    assert 7 <= last < 20

    single, _ = run(tiny(tmp_path, "single", **{**common, "max_iters": last}))
    a, b = steps(ddp), steps(single)
    assert sorted(a) == sorted(b) == list(range(1, last + 1))
    torch.testing.assert_close([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-4, atol=1e-5)
    ea = {m.step: m.val_loss for m in ddp if isinstance(m, Eval)}
    eb = {m.step: m.val_loss for m in single if isinstance(m, Eval) and m.step in ea}
    assert len(eb) >= 2
    torch.testing.assert_close(ea, eb, rtol=1e-4, atol=1e-5)
    state = read_checkpoint(tmp_path / "ddp" / "ckpt.pt")["train"]
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["iter_num"] == last
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each rank its own dropout stream


_DYING_APP = """
import multiprocessing, sys
sys.path.insert(0, sys.argv[2])
from engine.messages import Step
from engine.train import TrainConfig, launch
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    handle = launch(TrainConfig.from_dict(eval(sys.argv[1])), 1, q, stop, nice=0)
    while not isinstance(q.get(timeout=120), Step):
        pass
    print(handle.pids[0], flush=True)
    sys.stdin.read()  # killed here, never reading the queue again
"""


@pytest.mark.slow
def test_workers_stop_when_the_app_dies_without_asking(tmp_path):
    """An app killed hard (SIGKILL, crash) leaves no training process behind: the worker saves and exits."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tiny(tmp_path, max_iters=10**6, eval_interval=10**6, checkpoint_interval=0, sample_len=0)
    app = subprocess.Popen([sys.executable, "-c", _DYING_APP, repr(config.to_dict()),
                            str(__import__("pathlib").Path(train_mod.__file__).parents[2])],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(app.stdout.readline())
    finally:
        app.kill()
        app.wait()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
            with open(f"/proc/{worker}/stat") as f:  # an exited process its new parent has not reaped yet is gone
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.2)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the training process outlived the app that started it")
    assert read_checkpoint(f"{config.out_dir}/ckpt.pt")["train"]["iter_num"] > 0  # it stopped as a stop does


def test_a_trained_checkpoint_says_how_many_steps_it_was_trained(tmp_path):
    """Regression: the Generation pane read payload["train"]["step"], the trainer writes "iter_num", so "trained N
    steps" never showed for a checkpoint llm-train wrote. Both now go through engine.runs."""
    from app.generation.model_source import ModelSource, load_source
    from engine.runs import RunFolder, TrainingState

    config = tiny(tmp_path, max_iters=6, checkpoint_interval=0)
    run(config)
    folder = RunFolder(config.out_dir)
    assert folder.has_checkpoint() and folder.has_metrics() and folder.config_path.is_file()
    state = TrainingState.from_payload(read_checkpoint(folder.checkpoint_path))
    assert state is not None and state.step == 6 and state.tokens_seen == 6 * config.tokens_per_iter
    loaded = load_source(ModelSource("file", path=str(folder.checkpoint_path)))
    assert "trained 6 steps" in loaded.description
    w = loaded.model.transformer.h[0].mlp.c_fc.weight  # laid out for decoding (engine.incremental.lay_out_for_decoding)
    assert w.dtype == torch.float32 and w.t().is_contiguous()
    assert TrainingState.from_payload({"model": {}}) is None


def test_a_cpu_run_keeps_freed_memory_for_its_next_step(tmp_path, monkeypatch):
    """engine.train.allocator: a CPU run fixes glibc's malloc thresholds (on glibc; nothing elsewhere), so a step
    re-uses the heap the last one freed instead of faulting ~1 000 fresh pages in."""
    import platform

    from engine.train.allocator import keep_freed_memory

    calls = []
    monkeypatch.setattr(trainer_mod, "keep_freed_memory", lambda: calls.append(1) or True)
    run(tiny(tmp_path, max_iters=2, checkpoint_interval=0))
    assert calls == [1]
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


@pytest.mark.parametrize("max_norm", [1e-3, 1e6, math.inf])
def test_gradient_clipping_is_torchs_bit_for_bit(max_norm):
    """The trainer's clipping skips torch's multiplication by 1.0 when no clipping is needed; the norm and the
    gradients stay exactly what clip_grad_norm_ gives."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n)) for n in (5, 300, 7)]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, c in zip(params, copies):
        p.grad = torch.randn_like(p) * 3
        c.grad = p.grad.clone()
    expected = float(torch.nn.utils.clip_grad_norm_(copies, max_norm))
    got = trainer_mod.Trainer._clip_gradients(SimpleNamespace(params=params), max_norm)
    assert got == expected
    assert all(torch.equal(p.grad, c.grad) for p, c in zip(params, copies))
    assert (max(p.grad.abs().max() for p in params) < 1e-3) == (max_norm == 1e-3)  # clipped only when asked
