"""Training: TrainConfig, the loop (AMP, DDP, exact resume), launch() for local processes, and the llm-train CLI.

    $ llm-train --preset shakespeare-char-cpu corpus=shakespeare out_dir=out max_iters=500
    $ llm-train --resume out max_iters=2000             # continue the same run
    $ torchrun --nproc_per_node=2 -m engine.train --preset shakespeare-char-cpu out_dir=out

From Python (the app runs this in spawned processes, see launch())::

    >>> train(TrainConfig(corpus="shakespeare", out_dir="out", max_iters=100), emit=print)

A run folder holds config.json, metrics.jsonl (the engine.messages stream as JSON lines) and ckpt.pt, the latest
checkpoint: model, optimizer, GradScaler, step, every rank's RNG states, the data generator, the config and the
tokenizer. On the CPU in float32, a resumed run continues bit for bit like one that never stopped.

Distributed runs read RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the environment (as torchrun
sets them): gloo on the CPU, NCCL on CUDA. batch_size is the global micro-batch, split evenly over the processes, so
the same config trains the same model whatever the number of processes. Only rank 0 writes files and emits messages.
"""

import argparse
import difflib
import json
import math
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from engine.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from engine.data import Cancelled, DataError, get_batch, load_text, prepare
from engine.messages import (CheckpointSaved, Eval, Failed, Finished, JsonlWriter, Message, NonFinite, Sample,
                             Started, Step)
from engine.model import GPT, GPTConfig
from engine.presets import TRAIN_PRESETS, preset

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
MODEL_FIELDS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "pos", "tie_weights")
CKPT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
ALIASES = {"learning_rate": "lr", "gradient_accumulation_steps": "grad_accum", "init_lr": "lr"}


class ConfigError(ValueError):
    """A training setting is unknown, has the wrong type, or does not fit with the others."""


# user errors: reported as one line (CLI) or a Failed message without traceback (app)
USER_ERRORS = (ConfigError, DataError, CheckpointError)


@dataclass
class TrainConfig:
    # data
    corpus: str = "shakespeare"  # a built-in corpus ("shakespeare", "kjv") or the path of a UTF-8 text file
    tokenizer: str = "char"  # "char" (built from the corpus), an encoding ("gpt2", ...) or a saved tokenizer file
    out_dir: str = "out"  # run folder: config.json, metrics.jsonl, ckpt.pt
    val_fraction: float = 0.1  # the last 10% of the tokens are the validation split
    cache_dir: str = ""  # token-file cache; "" = $XDG_CACHE_HOME/llm-playground/tokens
    # model (GPTConfig; vocab_size comes from the tokenizer)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context length in tokens
    dropout: float = 0.0
    bias: bool = False  # nanoGPT's default: a bit faster and better without biases
    pos: str = "learned"  # "learned" | "rope" | "alibi"
    tie_weights: bool = True
    # optimisation
    batch_size: int = 12  # rows per micro-step over all processes (each of N processes gets batch_size / N)
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 1e-3  # peak learning rate, reached after warmup_iters
    min_lr: float = 1e-4  # cosine decay ends here (at lr_decay_iters), ~lr/10 per Chinchilla
    warmup_iters: int = 100
    max_iters: int = 2000  # optimizer steps in all (a resumed run counts the steps already done)
    lr_decay_iters: int = 2000  # usually = max_iters
    weight_decay: float = 0.1  # AdamW, on matrices and embeddings only
    beta1: float = 0.9
    beta2: float = 0.99  # 0.99 suits small batches (nanoGPT's shakespeare-char); GPT-2 used 0.95
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    # evaluation, logging, checkpoints
    eval_interval: int = 250  # evaluate (and sample) every this many steps
    eval_iters: int = 20  # batches per split in an evaluation
    log_interval: int = 1  # a Step message every this many steps
    sample_len: int = 200  # tokens generated at each evaluation; 0 = no sample
    sample_temperature: float = 0.8  # 0 = greedy
    checkpoint_interval: int = 250  # save every this many steps (and always at stop and finish); 0 = only then
    # system
    precision: str = "fp32"  # "fp32" | "bf16" (autocast, CPU or CUDA) | "fp16" (autocast + GradScaler, CUDA only)
    device: str = "auto"  # "auto" (CUDA if available) | "cpu" | "cuda"
    seed: int = 1337
    compile: bool = False  # torch.compile the model (CUDA: faster after a slow first step)
    resume: bool = False  # continue the run in out_dir from its ckpt.pt

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), f.type))
        for name in ("corpus", "tokenizer", "out_dir"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name} must not be empty")
        try:
            GPTConfig(vocab_size=1, **{k: getattr(self, k) for k in MODEL_FIELDS})
        except ValueError as e:
            raise ConfigError(str(e).replace("GPTConfig.", "")) from None
        positive = ("batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "lr_decay_iters", "sample_len", "checkpoint_interval",
                     "weight_decay", "grad_clip", "sample_temperature", "min_lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.lr_decay_iters < self.warmup_iters:
            raise ConfigError(f"lr_decay_iters ({self.lr_decay_iters}) must be at least warmup_iters "
                              f"({self.warmup_iters})")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError("precision fp16 needs a CUDA GPU (its GradScaler is CUDA-only); "
                              "on the CPU use bf16 or fp32")

    @property
    def tokens_per_iter(self) -> int:
        return self.batch_size * self.grad_accum * self.block_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict (values may be strings, as from the command line); ConfigError for unknown keys."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(d).__name__}")
        return cls(**_known(d))

    def with_overrides(self, overrides: dict) -> "TrainConfig":
        """A copy with some settings changed (validated again)."""
        return replace(self, **_known(overrides))


def _known(d: dict) -> dict:
    known = [f.name for f in fields(TrainConfig)]
    out = {}
    for key, value in d.items():
        key = ALIASES.get(key, key)
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"unknown training setting {key!r}{hint}")
        out[key] = value
    return out


def _coerce(name, value, kind):
    """value as kind (str, int, float or bool), parsing strings from the command line; ConfigError if it is not."""
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            if kind is int:
                try:  # "2e3" or "2000.0" for an integer setting
                    number = float(text)
                except ValueError:
                    number = math.nan
                if number.is_integer():
                    return int(number)
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{name} must be {what}, got {value!r}") from None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def get_lr(it: int, config: TrainConfig) -> float:
    """Linear warmup to lr over warmup_iters, then cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if it < config.warmup_iters:
        return config.lr * (it + 1) / (config.warmup_iters + 1)
    if it > config.lr_decay_iters:
        return config.min_lr
    ratio = (it - config.warmup_iters) / max(1, config.lr_decay_iters - config.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return config.min_lr + coeff * (config.lr - config.min_lr)


def load_run_config(out_dir) -> TrainConfig:
    """The config of the run in out_dir (its config.json, else its checkpoint's), set to resume it."""
    out_dir = Path(out_dir)
    path = out_dir / CONFIG_NAME
    if path.exists():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
    elif (out_dir / CKPT_NAME).exists():
        d = read_checkpoint(out_dir / CKPT_NAME).get("train", {}).get("config")
        if not isinstance(d, dict):
            raise CheckpointError(f"{out_dir / CKPT_NAME} holds no training state to resume from")
    else:
        raise ConfigError(f"{out_dir} is not a run folder (no {CONFIG_NAME} or {CKPT_NAME})")
    return TrainConfig.from_dict({**d, "out_dir": str(out_dir), "resume": True})


# ---------------------------------------------------------------------------------------------------------------
# the loop


def _dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the environment torchrun (or launch()) sets."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise ConfigError(f"bad distributed environment variable: {e}") from None
    return rank, local_rank, world_size


def _resolve_device(config: TrainConfig, local_rank: int) -> torch.device:
    kind = config.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA GPU is available; use device=cpu")
        count = torch.cuda.device_count()
        if local_rank >= count > 1:  # two ranks on one GPU: NCCL fails with "Duplicate GPU detected"
            raise ConfigError(f"LOCAL_RANK {local_rank} has no GPU of its own: this machine shows {count} GPUs; "
                              f"start at most {count} processes per node (torchrun --nproc_per_node={count})")
        # one visible GPU and LOCAL_RANK > 0: each process was given its own GPU (CUDA_VISIBLE_DEVICES per rank)
        device = torch.device("cuda", local_rank if local_rank < count else 0)
        torch.cuda.set_device(device)  # before init_process_group: NCCL binds each rank to the current device
        if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use precision=fp16 or fp32")
        return device
    if config.precision == "fp16":
        raise ConfigError("precision fp16 needs a CUDA GPU (its GradScaler is CUDA-only); "
                          "on the CPU use bf16 or fp32")
    return torch.device("cpu")


def _build_tokenizer(name: str, text: str):
    from engine.tokenizers import get_tokenizer
    from engine.tokenizers.chars import CharTokenizer

    if name == "char":
        return CharTokenizer.from_text(text)
    try:
        return get_tokenizer(name)
    except (ValueError, OSError) as e:
        raise ConfigError(f"tokenizer {name!r}: {e}") from e


def _start_id(tokenizer) -> int:
    """The token a sample starts from: <|endoftext|> if the tokenizer has it, else a newline, else id 0."""
    if "<|endoftext|>" in tokenizer.special_tokens:
        return tokenizer.special_tokens["<|endoftext|>"]
    try:
        ids = tokenizer.encode("\n")
    except ValueError:
        ids = []
    return ids[0] if len(ids) == 1 else 0


def _rng_state(device: torch.device) -> dict:
    """This process's torch, CUDA, numpy and Python RNG states as plain data (checkpoint-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device, cuda_seed: int) -> None:
    """Restore _rng_state()'s states; on CUDA without a saved CUDA state (written on the CPU) seed it by cuda_seed."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if device.type == "cuda":
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        else:  # else every rank would keep torch.manual_seed(seed)'s CUDA stream: the same dropout on all ranks
            torch.cuda.manual_seed(cuda_seed)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Trainer:
    """One process's share of a training run. Build it, then run(); close() in any case."""

    def __init__(self, config: TrainConfig, emit: Callable[[Message], None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.config = config
        self.user_emit = emit
        self.should_stop = should_stop or (lambda: False)
        self.writer = None
        self.run_id = uuid.uuid4().hex[:12]
        self.iter_num = 0
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.best_val = math.inf
        self.last_saved = -1
        self.last_eval = -1
        self.started_dist = False
        try:
            self._setup()
        except BaseException:  # e.g. a DataError after init_process_group: leave no process group behind
            self.close()
            raise

    def _setup(self) -> None:
        """Everything __init__ builds: process group, data, model, optimizer, the run folder."""
        cfg = self.config
        self.rank, self.local_rank, self.world_size = _dist_env()
        self.master = self.rank == 0
        if cfg.batch_size % self.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} cannot be split evenly over {self.world_size} "
                              f"processes; use a multiple of {self.world_size}")
        self.micro_batch = cfg.batch_size // self.world_size
        self.device = _resolve_device(cfg, self.local_rank)
        if self.world_size > 1:
            if not dist.is_initialized():
                # NCCL: bound to this rank's GPU (set current above); its collectives need CUDA tensors
                cuda = self.device.type == "cuda"
                dist.init_process_group(backend="nccl" if cuda else "gloo", rank=self.rank,
                                        world_size=self.world_size, device_id=self.device if cuda else None)
                self.started_dist = True

        self.out_dir = Path(cfg.out_dir)
        self.ckpt_path = self.out_dir / CKPT_NAME
        ckpt = None
        if cfg.resume:
            if not self.ckpt_path.exists():
                raise ConfigError(f"nothing to resume in {self.out_dir}: it has no {CKPT_NAME}")
            ckpt = read_checkpoint(self.ckpt_path)
            if not isinstance(ckpt.get("train"), dict):
                raise CheckpointError(f"{self.ckpt_path} holds a model but no training state to resume from")
            self.run_id = ckpt["train"].get("run_id", self.run_id)
        elif self.ckpt_path.exists():
            raise ConfigError(f"{self.out_dir} already holds a run; resume it (llm-train --resume {self.out_dir}) "
                              f"or choose another out_dir")

        # data and tokenizer
        self.text = load_text(cfg.corpus)
        if ckpt is not None:
            from engine.tokenizers import tokenizer_from_dict

            self.tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
        else:
            self.tokenizer = _build_tokenizer(cfg.tokenizer, self.text)
        self.data = prepare(self.text, self.tokenizer, block_size=cfg.block_size, val_fraction=cfg.val_fraction,
                            cache_dir=cfg.cache_dir or None, name=f"corpus {cfg.corpus!r}",
                            # a single process may stop while encoding; ranks must not part ways before the loop
                            cancel=self.should_stop if self.world_size == 1 else None)

        # model, optimizer, scaler, data generator
        self.model_config = GPTConfig(vocab_size=self.tokenizer.n_vocab, **{k: getattr(cfg, k) for k in MODEL_FIELDS})
        if ckpt is not None and ckpt["model_config"] != self.model_config.to_dict():
            saved = ckpt["model_config"]
            diff = [f"{k}={saved.get(k)!r} (config says {v!r})" for k, v in self.model_config.to_dict().items()
                    if saved.get(k) != v]
            raise ConfigError(f"cannot resume: the checkpoint's model differs from the config: {', '.join(diff)}")
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.raw = GPT(self.model_config).to(self.device)
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch offsets; same stream on every rank
        if ckpt is not None:
            self._restore(ckpt)
        else:
            torch.manual_seed(cfg.seed + 1 + self.rank)  # dropout: each rank its own stream
            if self.device.type == "cuda":
                torch.cuda.manual_seed(cfg.seed + 1 + self.rank)
        del ckpt

        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = (torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None
                         else nullcontext())
        self.model = self.raw
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.params = [p for p in self.raw.parameters() if p.requires_grad]
        self.start_id = _start_id(self.tokenizer)

        # the run folder is written only once everything above succeeded: a failed start changes nothing there
        if self.master:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not cfg.resume:  # a run that never reached a checkpoint is started over
                (self.out_dir / METRICS_NAME).unlink(missing_ok=True)
            self.writer = JsonlWriter(self.out_dir / METRICS_NAME)
            _write_json_atomic(self.out_dir / CONFIG_NAME, {**cfg.to_dict(), "resume": False})

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW, fused (one kernel for all parameters) where this torch has it for the device, else foreach.

        Fused AdamW exists for CUDA and, since torch 2.4, the CPU, where it takes a quarter of foreach's time.
        """
        cfg = self.config
        groups = self.raw.optimizer_groups(cfg.weight_decay)
        try:
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
        except (RuntimeError, ValueError, TypeError):
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)

    def _load_optimizer(self, state: dict) -> None:
        """Load the optimizer's state but keep the fused / foreach choice made for this device.

        load_state_dict would bring back the saved run's flags: a checkpoint from a foreach fallback would turn
        fused AdamW off on CUDA, and a fused one would fail where fused is not available. Fused AdamW keeps its
        step counts as float32 on the parameters' device, foreach on the CPU.
        """
        flags = [{k: group.get(k) for k in ("fused", "foreach")} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        for group, own in zip(self.optimizer.param_groups, flags):
            group.update(own)
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                if isinstance(st.get("step"), torch.Tensor) and not group.get("capturable"):
                    st["step"] = st["step"].to(p.device, torch.float32) if own["fused"] else st["step"].cpu()

    def _restore(self, ckpt: dict) -> None:
        state = ckpt["train"]
        try:
            self.raw.load_state_dict(ckpt["model"])
            self._load_optimizer(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.iter_num = int(state["iter_num"])
            self.tokens_seen = int(state["tokens_seen"])
            self.skipped_steps = int(state.get("skipped_steps", 0))
            self.best_val = float(state.get("best_val", math.inf))
            self.generator.set_state(state["data_generator"])
            rngs = state["rng"]
            if len(rngs) == self.world_size:
                _set_rng_state(rngs[self.rank], self.device, self.config.seed + 1 + self.rank + self.iter_num)
            else:  # another number of processes: no exact continuation possible, but a reproducible one
                torch.manual_seed(self.config.seed + 1 + self.rank + self.iter_num)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{self.ckpt_path}: cannot restore the training state: {_one_line(e)}") from e
        self.last_saved = self.iter_num

    # --- messages -----------------------------------------------------------------------------------------------

    def emit(self, msg: Message) -> None:
        """Rank 0: append to metrics.jsonl and pass to the emit callback."""
        if not self.master:
            return
        if self.writer is not None:
            self.writer.write(msg)
        if self.user_emit is not None:
            self.user_emit(msg)

    # --- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> str:
        """Train until max_iters, a stop request or divergence -> Finished.reason."""
        cfg = self.config
        self.emit(Started(self.run_id, config=cfg.to_dict(), n_params=self.raw.num_params(),
                          world_size=self.world_size, step=self.iter_num))
        if self.iter_num == 0 and not cfg.resume:
            self.evaluate()
        reason = "completed"
        while self.iter_num < cfg.max_iters:
            outcome = self.train_step()
            if outcome == "diverged":
                saved = (f"the last checkpoint is step {self.last_saved}" if self.last_saved >= 0
                         else "no checkpoint was saved")
                reason = (f"diverged: the loss became non-finite at step {self.iter_num + 1} in float32; "
                          f"lower the learning rate (lr={cfg.lr:g}) or clip gradients harder; {saved}")
                break
            if self.iter_num % cfg.eval_interval == 0:
                self.evaluate()
            if cfg.checkpoint_interval and self.iter_num % cfg.checkpoint_interval == 0:
                self.save()
            if outcome == "stop":
                reason = "stopped"
                break
        if reason == "completed" and self.iter_num % cfg.eval_interval and self.last_eval != self.iter_num:
            self.evaluate()
        if not reason.startswith("diverged") and self.last_saved != self.iter_num:  # a diverged state is not kept
            self.save()
        if self.world_size > 1:  # no rank tears the group down (close()) while rank 0 still writes the checkpoint
            dist.barrier()
        self.emit(Finished(self.run_id, step=self.iter_num, reason=reason))
        return reason

    def train_step(self) -> str:
        """One optimizer step over grad_accum micro-batches -> "ok", "stop" or "diverged"."""
        cfg, model = self.config, self.model
        t0 = time.perf_counter()
        lr = get_lr(self.iter_num, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            x, y = get_batch(self.data.train, self.micro_batch, cfg.block_size, self.generator,
                             rank=self.rank, world_size=self.world_size, device=self.device)
            last = micro == cfg.grad_accum - 1
            sync = nullcontext() if last or self.world_size == 1 else model.no_sync()
            with sync:
                with self.autocast:
                    _, loss = model(x, y)
                    loss = loss / cfg.grad_accum
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach().float()

        # one collective per step: the global loss and whether any rank was asked to stop
        stats = torch.stack([loss_sum, torch.tensor(float(bool(self.should_stop())), device=self.device)])
        if self.world_size > 1:
            dist.all_reduce(stats)
        loss_value, stop = stats.tolist()
        loss_value /= self.world_size
        stop = stop > 0

        if not math.isfinite(loss_value) and cfg.precision == "fp32":
            self.optimizer.zero_grad(set_to_none=True)
            self.emit(NonFinite(self.run_id, step=self.iter_num + 1,
                                what=f"loss is {loss_value} in float32: the run stops"))
            return "diverged"

        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips the step itself if the gradients hold inf/nan
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale
            what = f"gradient overflow in fp16: step skipped, loss scale {scale:g} -> {self.scaler.get_scale():g}"
        else:
            skipped = not math.isfinite(grad_norm)
            if not skipped:
                self.optimizer.step()
            what = f"gradient norm is {grad_norm}: step skipped"
        self.optimizer.zero_grad(set_to_none=True)
        self.iter_num += 1
        self.tokens_seen += cfg.tokens_per_iter
        if skipped:
            self.skipped_steps += 1
            self.emit(NonFinite(self.run_id, step=self.iter_num, what=what))

        dt = time.perf_counter() - t0
        if self.iter_num % cfg.log_interval == 0 or skipped:
            self.emit(Step(self.run_id, step=self.iter_num, loss=loss_value, lr=lr, grad_norm=grad_norm,
                           tokens_per_s=cfg.tokens_per_iter / dt if dt > 0 else 0.0, tokens_seen=self.tokens_seen,
                           amp_scale=self.scaler.get_scale() if self.scaler.is_enabled() else 1.0,
                           skipped_steps=self.skipped_steps, time=time.time()))
        return "stop" if stop else "ok"

    @torch.no_grad()
    def evaluate(self) -> None:
        """Mean loss over eval_iters batches per split (the same batches every time), then a sample on rank 0."""
        cfg = self.config
        self.raw.eval()
        losses = torch.zeros(2, device=self.device)
        for i, split in enumerate((self.data.train, self.data.val)):
            g = torch.Generator().manual_seed(cfg.seed + 1 + i)  # independent of the training stream
            for _ in range(cfg.eval_iters):
                x, y = get_batch(split, self.micro_batch, cfg.block_size, g, rank=self.rank,
                                 world_size=self.world_size, device=self.device)
                with self.autocast:
                    _, loss = self.raw(x, y)
                losses[i] += loss.float()
        losses /= cfg.eval_iters
        if self.world_size > 1:
            dist.all_reduce(losses)
            losses /= self.world_size
        train_loss, val_loss = losses.tolist()
        self.best_val = min(self.best_val, val_loss) if math.isfinite(val_loss) else self.best_val
        self.last_eval = self.iter_num
        self.emit(Eval(self.run_id, step=self.iter_num, train_loss=train_loss, val_loss=val_loss,
                       tokens_seen=self.tokens_seen))
        if self.master and cfg.sample_len:
            self.emit(Sample(self.run_id, step=self.iter_num, text=self.sample(cfg.sample_len)))
        self.raw.train()

    @torch.no_grad()
    def sample(self, n_tokens: int) -> str:
        """n_tokens generated from the start token, seeded by the step (does not touch the training RNG)."""
        cfg = self.config
        was_training = self.raw.training
        self.raw.eval()
        g = torch.Generator().manual_seed(cfg.seed + self.iter_num)
        ids = [self.start_id]
        for _ in range(n_tokens):
            idx = torch.tensor([ids[-cfg.block_size:]], dtype=torch.long, device=self.device)
            with self.autocast:
                logits, _ = self.raw(idx, last_only=True)
            logits = logits[0, -1].float().cpu()
            if cfg.sample_temperature == 0:
                ids.append(int(logits.argmax()))
            else:
                probs = torch.softmax(logits / cfg.sample_temperature, dim=-1)
                ids.append(int(torch.multinomial(probs, 1, generator=g)))
        self.raw.train(was_training)
        return self.tokenizer.decode(ids[1:])

    def save(self) -> None:
        """Checkpoint (collective: every rank contributes its RNG state; rank 0 writes)."""
        rng = _rng_state(self.device)
        if self.world_size > 1:
            states = [None] * self.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        self.last_saved = self.iter_num
        if not self.master:
            return
        payload = {
            "model_config": self.model_config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "model": self.raw.state_dict(),
            "train": {
                "run_id": self.run_id,
                "iter_num": self.iter_num,
                "tokens_seen": self.tokens_seen,
                "skipped_steps": self.skipped_steps,
                "best_val": self.best_val,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "data_generator": self.generator.get_state(),
                "rng": states,
                "world_size": self.world_size,
                "config": self.config.to_dict(),
            },
        }
        save_checkpoint(self.ckpt_path, payload)
        self.emit(CheckpointSaved(self.run_id, step=self.iter_num, path=str(self.ckpt_path)))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.started_dist and dist.is_initialized():
            dist.destroy_process_group()
            self.started_dist = False


def train(config: TrainConfig, emit: Callable[[Message], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> str:
    """Run (or resume, with config.resume) a training run in this process -> Finished.reason.

    emit receives every message on rank 0 (and a Failed message on any rank that fails); should_stop is polled
    once per step, and the ranks stop together when any of them is asked. Exceptions are reported as a Failed
    message (no traceback for user errors: ConfigError, DataError, CheckpointError) and raised again.
    """
    trainer = None
    try:
        trainer = Trainer(config, emit, should_stop)
        return trainer.run()
    except Cancelled:  # stopped while the corpus was being encoded: nothing was trained or written
        if emit is not None:
            emit(Finished("", step=0, reason="stopped"))
        return "stopped"
    except BaseException as e:
        user_error = isinstance(e, USER_ERRORS)
        rank = _dist_env()[0]
        msg = Failed(trainer.run_id if trainer else "", step=trainer.iter_num if trainer else 0,
                     error=(_one_line(e) if user_error else f"{type(e).__name__}: {_one_line(e)}")
                     + (f" (rank {rank})" if rank else ""),
                     traceback="" if user_error else traceback.format_exc())
        if isinstance(e, Exception):
            if trainer is not None and trainer.writer is not None:
                trainer.writer.write(msg)
            if emit is not None:
                try:
                    emit(msg)
                except Exception:  # noqa: BLE001 - a broken channel must not hide the original error
                    pass
        raise
    finally:
        if trainer is not None:
            trainer.close()


# ---------------------------------------------------------------------------------------------------------------
# local processes for the app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: dict, emit_queue, stop_event, threads: int,
            nice: int) -> None:
    """Entry point of a process started by launch()."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the app's terminal: the app stops us via stop_event
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    if threads:
        torch.set_num_threads(threads)
    parent = os.getppid()

    def should_stop() -> bool:  # asked to, or the app died without asking (we were re-parented): save and end
        return (stop_event is not None and stop_event.is_set()) or os.getppid() != parent

    try:
        train(TrainConfig.from_dict(config), emit_queue.put if emit_queue is not None else None, should_stop)
    except Exception:  # already reported as a Failed message
        sys.exit(1)
    finally:
        if emit_queue is not None and os.getppid() != parent:
            emit_queue.cancel_join_thread()  # nobody reads the queue any more: do not wait at exit to flush it


class LocalRun:
    """The processes of one launch(): poll(), join(timeout), stop through the stop_event, kill() as a last resort."""

    def __init__(self, processes, emit_queue=None, stop_event=None):
        self.processes = processes
        # held so they outlive the children's start-up even if the caller drops its own references
        self.emit_queue, self.stop_event = emit_queue, stop_event

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    @property
    def exitcodes(self) -> list[int | None]:
        return [p.exitcode for p in self.processes]

    def is_alive(self) -> bool:
        return any(p.is_alive() for p in self.processes)

    def poll(self) -> bool:
        """True once every process has exited. If one failed, the others are killed (they would wait for it)."""
        if any(code not in (None, 0) for code in self.exitcodes):
            self.kill()
        return not self.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to timeout seconds (None: forever) for all processes -> whether all have exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for p in self.processes:
                if p.is_alive():
                    p.join(0.05 if left is None else min(0.05, left))
                    break
        for p in self.processes:
            p.join()
        return True

    def kill(self) -> None:
        for p in self.processes:
            if p.is_alive():
                p.kill()

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exitcodes)


def launch(config: TrainConfig, world_size: int = 1, emit_queue=None, stop_event=None, *, threads: int = 1,
           nice: int = 5) -> LocalRun:
    """Start world_size training processes on this machine (spawn; gloo on the CPU) -> LocalRun. Returns at once.

    emit_queue and stop_event come from multiprocessing.get_context("spawn") (Queue(), Event()): rank 0 puts
    every message on the queue; set the event to stop the run (a checkpoint is saved first). Each process uses
    `threads` torch threads and lowers its priority by `nice`, which keeps a UI in the parent responsive.
    """
    import multiprocessing

    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
    if config.batch_size % world_size:
        raise ConfigError(f"batch_size {config.batch_size} cannot be split evenly over {world_size} processes; "
                          f"use a multiple of {world_size}")
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [ctx.Process(target=_worker, name=f"llm-train-rank{rank}", daemon=True,
                             args=(rank, world_size, port, config.to_dict(), emit_queue, stop_event, threads, nice))
                 for rank in range(world_size)]
    for p in processes:
        p.start()
    return LocalRun(processes, emit_queue, stop_event)


# ---------------------------------------------------------------------------------------------------------------
# command line


def _print_message(msg: Message) -> None:
    """The console view of the message stream (rank 0)."""
    if isinstance(msg, Step):
        ms = 1000.0 * _TOKENS_PER_ITER[0] / msg.tokens_per_s if msg.tokens_per_s else 0.0
        line = (f"step {msg.step}: loss {msg.loss:.4f}, lr {msg.lr:.2e}, grad norm {msg.grad_norm:.3f}, "
                f"{ms:.1f} ms/iter, {msg.tokens_per_s:,.0f} tokens/s")
        if msg.amp_scale != 1.0:
            line += f", scale {msg.amp_scale:g}"
        if msg.skipped_steps:
            line += f", {msg.skipped_steps} skipped"
    elif isinstance(msg, Eval):
        line = f"step {msg.step}: train loss {msg.train_loss:.4f}, val loss {msg.val_loss:.4f}"
    elif isinstance(msg, Sample):
        line = f"--- sample at step {msg.step} ---\n{msg.text}\n---"
    elif isinstance(msg, Started):
        line = (f"run {msg.run_id}: {msg.n_params / 1e6:.2f} M parameters, {msg.world_size} process"
                f"{'es' if msg.world_size > 1 else ''}" + (f", resuming at step {msg.step}" if msg.step else ""))
        _TOKENS_PER_ITER[0] = TrainConfig.from_dict(msg.config).tokens_per_iter
    elif isinstance(msg, CheckpointSaved):
        line = f"step {msg.step}: saved {msg.path}"
    elif isinstance(msg, NonFinite):
        line = f"step {msg.step}: non-finite: {msg.what}"
    elif isinstance(msg, Finished):
        line = f"finished at step {msg.step}: {msg.reason}"
    else:  # Failed: main() prints the error itself
        return
    print(line, flush=True)


_TOKENS_PER_ITER = [1]  # of the run being printed (from its Started message): turns tokens/s into ms/iter


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_config(args: list[str], preset_name: str | None = None, resume: str | None = None) -> TrainConfig:
    """TrainConfig from the command line's pieces: defaults < preset < CONFIG.json < key=value (or --key=value)."""
    values: dict = {}
    if resume is not None:
        if preset_name:
            raise ConfigError("--preset cannot be combined with --resume (the run folder has its config)")
        values = load_run_config(resume).to_dict()
    if preset_name:
        values.update(preset(preset_name))
    overrides, config_file = {}, None
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            key = key.strip().lstrip("-").strip()
            if not key:
                raise ConfigError(f"{arg!r}: expected key=value")
            overrides[key] = value
        elif resume is None and config_file is None:
            config_file = arg
            try:
                d = json.loads(Path(arg).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"config file {arg!r} not found (settings are written key=value)") from None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ConfigError(f"cannot read config file {arg!r}: {_one_line(e)}") from None
            if not isinstance(d, dict):
                raise ConfigError(f"config file {arg!r} must hold a JSON object of settings")
            values.update(_known(d))
        else:
            raise ConfigError(f"unexpected argument {arg!r} (settings are written key=value)")
    if resume is not None and "out_dir" in overrides and Path(overrides["out_dir"]) != Path(resume):
        raise ConfigError("out_dir cannot change when resuming (it is the run folder)")
    values.update(_known(overrides))
    if resume is not None:
        values.update(out_dir=str(resume), resume=True)
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """llm-train [CONFIG.json] [--preset NAME] [--resume DIR] key=value ... -> exit status."""
    parser = _Parser(prog="llm-train", description="Train a small GPT. Settings: defaults < --preset < "
                     "CONFIG.json < key=value overrides. Runs unchanged under torchrun.")
    parser.add_argument("args", nargs="*", metavar="CONFIG.json | key=value")
    parser.add_argument("--preset", choices=list(TRAIN_PRESETS), help="start from a named configuration")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR (overrides such as max_iters=...)")
    parser.add_argument("--list-settings", action="store_true", help="print every setting with its default")
    ns, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    rank = _dist_env()[0] if "RANK" in os.environ and os.environ["RANK"].isdigit() else 0

    def fail(message: str, code: int) -> int:
        if rank == 0:
            print(f"llm-train: error: {message}", file=sys.stderr, flush=True)
        return code

    if ns.list_settings:
        for key, value in TrainConfig().to_dict().items():
            print(f"{key}={value}")
        return 0
    try:
        config = build_config(ns.args + extra, ns.preset, ns.resume)
    except (ConfigError, CheckpointError) as e:
        return fail(_one_line(e), 2)

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl+C: stop now
            raise KeyboardInterrupt
        stop.set()
        if rank == 0:
            print("stopping after this step (saving a checkpoint); press Ctrl+C again to abort",
                  file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        reason = train(config, _print_message if rank == 0 else None, stop.is_set)
    except USER_ERRORS as e:
        return fail(_one_line(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if reason.startswith("diverged"):
        return fail(reason, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
