"""The trainer's GPU code paths: device choice per LOCAL_RANK, NCCL set-up, cleanup, RNG and optimizer restore.

The first tests run anywhere (torch.cuda and torch.distributed are stood in for where that is what is checked);
the last ones need a CUDA GPU and are skipped without one: fp16 loss scaling and checkpoints moving between
CUDA and the CPU.
"""

import math

import pytest
import torch
import torch.distributed as dist

import engine.train.distributed as dist_mod
import engine.train.trainer as trainer_mod
from engine.checkpoint import read_checkpoint
from engine.messages import NonFinite, Started, Step
from engine.model import GPT
from engine.train import ConfigError, TrainConfig, Trainer, train

TEXT = "".join(f"{name}:\nWhat say you, {i}? I say {i * 7 % 11} and no more.\n\n"
               for i in range(120) for name in ("ROMEO", "JULIET"))

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT, encoding="utf-8")
    settings = dict(corpus=str(corpus), out_dir=str(tmp_path / name), n_layer=1, n_head=2, n_embd=16,
                    block_size=16, batch_size=4, max_iters=8, lr_decay_iters=8, warmup_iters=2, eval_interval=4,
                    eval_iters=2, sample_len=4, checkpoint_interval=4, device="cpu", lr=3e-3,
                    cache_dir=str(tmp_path / "tokens"))
    settings.update(overrides)
    return TrainConfig(**settings)


def run(config, stop_after=None):
    msgs = []
    stop = lambda: stop_after is not None and any(isinstance(m, Step) and m.step >= stop_after for m in msgs)  # noqa: E731
    return msgs, train(config, msgs.append, stop).reason


class FakeCuda:
    """torch.cuda as a machine with n GPUs shows it, recording set_device and manual_seed calls."""

    def __init__(self, monkeypatch, n):
        self.current, self.seeds, self.states = None, [], []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: setattr(self, "current", torch.device(d)))
        monkeypatch.setattr(torch.cuda, "manual_seed", self.seeds.append)
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: self.states.append((state, device)))


# --- device choice and process group (no GPU needed) ---------------------------------------------------------------

@pytest.mark.parametrize("n_gpus, local_rank, expected", [(2, 0, 0), (2, 1, 1), (8, 5, 5), (1, 3, 0)])
def test_each_local_rank_gets_its_own_gpu(tmp_path, monkeypatch, n_gpus, local_rank, expected):
    cuda = FakeCuda(monkeypatch, n_gpus)
    for precision in ("fp32", "bf16", "fp16"):
        device = dist_mod._resolve_device(tiny(tmp_path, device="auto", precision=precision), local_rank)
        assert device == torch.device("cuda", expected)
        assert cuda.current == device  # made current, as NCCL and all_gather_object expect


def test_more_processes_than_gpus_is_a_clear_error(tmp_path, monkeypatch):
    FakeCuda(monkeypatch, 2)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK 2 has no GPU of its own.*--nproc_per_node=2"):
        dist_mod._resolve_device(tiny(tmp_path, device="cuda"), 2)


def test_no_gpu_for_cuda_or_fp16_is_a_clear_error(tmp_path, monkeypatch):
    """config.problems() says so (the CLI and the trainer's set-up ask it before choosing a device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device cuda needs a CUDA GPU, and this machine has none"):
        train(tiny(tmp_path, device="cuda"))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train(tiny(tmp_path, device="auto", precision="fp16"))
    assert dist_mod._resolve_device(tiny(tmp_path, device="auto", precision="bf16"), 0) == torch.device("cpu")


def test_nccl_is_initialised_on_the_local_rank_s_gpu(tmp_path, monkeypatch):
    """torchrun on the second node: RANK 5, LOCAL_RANK 1 -> cuda:1 made current before NCCL starts, bound to it."""
    cuda = FakeCuda(monkeypatch, 4)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    calls = []

    def init_process_group(**kwargs):
        calls.append({**kwargs, "current": cuda.current})
        raise RuntimeError("stop here")

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    with pytest.raises(RuntimeError, match="stop here"):
        Trainer(tiny(tmp_path, device="auto", batch_size=8))
    (call,) = calls
    assert call["backend"] == "nccl" and call["rank"] == 5 and call["world_size"] == 8
    assert call["device_id"] == torch.device("cuda", 1) and call["current"] == torch.device("cuda", 1)


def test_a_failed_start_destroys_the_process_group(tmp_path, monkeypatch):
    """A DataError after init_process_group (corpus too short) must not leave the group initialised."""
    monkeypatch.setattr(trainer_mod, "_dist_env", lambda: (0, 0, 2))
    real_init = dist.init_process_group

    def init_process_group(backend, rank, world_size, device_id=None):  # a real gloo group, of this process alone
        assert backend == "gloo" and device_id is None
        real_init(backend, store=dist.HashStore(), rank=0, world_size=1)

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    assert not dist.is_initialized()
    try:
        with pytest.raises(ValueError, match="too short"):
            train(tiny(tmp_path, corpus=str(tmp_path / "short.txt")))
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# --- restore ---------------------------------------------------------------------------------------------------------

def test_cuda_rng_is_restored_or_seeded_per_rank(monkeypatch):
    cuda = FakeCuda(monkeypatch, 2)
    device = torch.device("cuda", 1)
    cpu_written = dist_mod._rng_state(torch.device("cpu"))
    dist_mod._set_rng_state(cpu_written, device, cuda_seed=1234)
    assert cuda.seeds == [1234] and cuda.states == []  # not left at torch.manual_seed(seed), the same on all ranks
    gpu_written = {**cpu_written, "cuda": torch.arange(8, dtype=torch.uint8)}
    dist_mod._set_rng_state(gpu_written, device, cuda_seed=1234)
    assert cuda.seeds == [1234] and len(cuda.states) == 1
    assert torch.equal(cuda.states[0][0], gpu_written["cuda"]) and cuda.states[0][1] == device
    dist_mod._set_rng_state(gpu_written, torch.device("cpu"), cuda_seed=1)  # a CUDA checkpoint on the CPU
    assert len(cuda.states) == 1 and cuda.seeds == [1234]


class NoFusedAdamW(torch.optim.AdamW):
    def __init__(self, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("fused AdamW is not supported here")
        super().__init__(*args, **kwargs)


def test_resume_keeps_this_device_s_fused_adamw(tmp_path, monkeypatch):
    """A checkpoint from the foreach fallback must not switch fused AdamW off where it is available (CUDA)."""
    with monkeypatch.context() as m:
        m.setattr(trainer_mod.torch.optim, "AdamW", NoFusedAdamW)
        run(tiny(tmp_path, max_iters=4))
    saved = read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]["optimizer"]
    assert not saved["param_groups"][0].get("fused") and saved["param_groups"][0]["foreach"]

    msgs, reason = run(tiny(tmp_path, max_iters=6, resume=True))
    assert reason == "completed" and all(math.isfinite(m.loss) for m in msgs if isinstance(m, Step))
    state = read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]["optimizer"]
    assert all(g["fused"] for g in state["param_groups"])
    steps = [s["step"] for s in state["state"].values()]
    assert steps and all(s.dtype == torch.float32 and float(s) == 6 for s in steps)


# --- on a CUDA GPU ---------------------------------------------------------------------------------------------------

class InfGradAt(GPT):
    """A GPT whose nth training backward gives an infinite gradient (the fp16 overflow a GradScaler skips)."""

    inf_grad_at = None

    def __init__(self, config):
        super().__init__(config)
        self.calls = 0
        next(self.parameters()).register_hook(
            lambda g: torch.full_like(g, math.inf) if self.calls == self.inf_grad_at else g)

    def forward(self, idx, targets=None, **kw):
        if self.training and targets is not None:
            self.calls += 1
        return super().forward(idx, targets, **kw)


@needs_cuda
def test_fp16_overflow_skips_the_step_and_halves_the_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(InfGradAt, "inf_grad_at", 3)
    monkeypatch.setattr(trainer_mod, "GPT", InfGradAt)
    msgs, reason = run(tiny(tmp_path, device="cuda", precision="fp16", max_iters=8))
    assert reason == "completed"
    s = {m.step: m for m in msgs if isinstance(m, Step)}
    skipped = {m.step for m in msgs if isinstance(m, NonFinite)}
    assert 3 in skipped and all("gradient overflow in fp16" in m.what for m in msgs if isinstance(m, NonFinite))
    assert s[8].skipped_steps == len(skipped)
    scales = [65536.0] + [s[k].amp_scale for k in range(1, 9)]
    for k in range(1, 9):  # a skipped step halves the scale; otherwise it stays (growth comes after 2000 steps)
        assert scales[k] == (scales[k - 1] / 2 if k in skipped else scales[k - 1]), (k, scales)
    state = read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]
    assert state["scaler"]["scale"] == scales[8] and state["skipped_steps"] == len(skipped)
    assert all(torch.isfinite(t).all() for t in read_checkpoint(tmp_path / "run" / "ckpt.pt")["model"].values())


@needs_cuda
def test_fp16_resume_restores_the_loss_scale(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(InfGradAt, "inf_grad_at", 2)
        m.setattr(trainer_mod, "GPT", InfGradAt)
        first, reason = run(tiny(tmp_path, device="cuda", precision="fp16", max_iters=8), stop_after=3)
    assert reason == "stopped"
    last = [m for m in first if isinstance(m, Step)][-1]
    assert last.amp_scale < 65536.0 and last.skipped_steps >= 1
    second, reason = run(tiny(tmp_path, device="cuda", precision="fp16", max_iters=8, resume=True))
    assert reason == "completed"
    resumed = [m for m in second if isinstance(m, Step)]
    assert resumed[0].step == last.step + 1 and resumed[0].amp_scale in (last.amp_scale, last.amp_scale / 2)
    assert resumed[0].skipped_steps >= last.skipped_steps


@needs_cuda
def test_checkpoints_move_between_cuda_and_cpu(tmp_path):
    """A CPU run resumed on CUDA, then on the CPU again; the CUDA RNG state is saved on the way."""
    config = tiny(tmp_path, max_iters=4, dropout=0.1)
    run(config)
    msgs, reason = run(config.with_overrides(dict(device="cuda", max_iters=8, resume=True)))
    assert reason == "completed" and isinstance(msgs[0], Started) and msgs[0].step == 4
    assert all(math.isfinite(m.loss) for m in msgs if isinstance(m, Step))
    state = read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]
    assert "cuda" in state["rng"][0] and state["iter_num"] == 8
    assert all(t.device.type == "cpu" for t in state["optimizer"]["state"][0].values())

    msgs, reason = run(config.with_overrides(dict(device="cpu", max_iters=10, resume=True)))
    assert reason == "completed" and msgs[0].step == 8
    assert all(math.isfinite(m.loss) for m in msgs if isinstance(m, Step))
