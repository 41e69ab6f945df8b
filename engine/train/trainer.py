"""The training loop: Trainer (one process's share of a run: AMP, DDP, exact resume) and train(), its entry point.

A run folder holds config.json, metrics.jsonl (the engine.messages stream as JSON lines) and ckpt.pt, the latest
checkpoint: model, optimizer, GradScaler, step, every rank's RNG states, the data generator, the config and the
tokenizer. On the CPU in float32, a resumed run continues bit for bit like one that never stopped.
"""

import errno
import json
import math
import os
import time
import traceback
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from engine.checkpoint import REQUIRED_KEYS, CheckpointError, check_optimizer_state, read_checkpoint, save_checkpoint
from engine.data import Cancelled, get_batch, load_text, prepare
from engine.messages import CheckpointSaved, Eval, Failed, Finished, JsonlWriter, Message, NonFinite, Sample, Started, Step
from engine.model import GPT, GPTConfig
from engine.runs import RunFolder
from engine.train.config import (CKPT_NAME, MODEL_FIELDS, USER_ERRORS, ConfigError,
                                 TrainConfig, _one_line, get_lr)
from engine.train.distributed import _dist_env, _resolve_device, _rng_state, _set_rng_state

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


def _check_param_groups(groups: list, source: str) -> None:
    """CheckpointError unless every saved optimizer group's hyperparameters are numbers AdamW can step with."""
    for group in groups:
        betas = group.get("betas")
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)):
            raise CheckpointError(f"{source}: the optimizer's betas {betas!r} are not two numbers in [0, 1)")
        for key, low in (("eps", 0.0), ("weight_decay", 0.0), ("lr", 0.0)):
            value = group.get(key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value >= low):
                raise CheckpointError(f"{source}: the optimizer's {key} {value!r} is not a finite number >= {low:g}")


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(e, path) from e


def _write_error(exc: OSError, path) -> OSError:
    """exc as one readable line naming the file: "disk full while writing metrics.jsonl (...)"."""
    name = os.path.basename(os.fspath(path))
    if is_disk_full(exc):
        if "disk full" in str(exc):
            return exc
        return OSError(exc.errno, f"disk full while writing {name} in {os.path.dirname(os.fspath(path))}; free "
                                  f"some space and resume")
    return OSError(exc.errno, f"cannot write {name}: {exc.strerror or _one_line(exc)}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether exc is a write that failed for want of space (ENOSPC) or quota (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def error_line(exc: BaseException) -> str:
    """The one line a user is told: the message of a user error or a full disk, else "Type: message"."""
    if isinstance(exc, USER_ERRORS):
        return _one_line(exc)
    if is_disk_full(exc):
        return exc.strerror if exc.strerror and "disk full" in exc.strerror else \
            f"disk full while writing {exc.filename or 'the run folder'}"
    return f"{type(exc).__name__}: {_one_line(exc)}"


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
        self.lock = None
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
        self.folder = RunFolder(cfg.out_dir)
        self.out_dir = self.folder.path
        self.ckpt_path = self.folder.checkpoint_path
        if self.master:  # one writer per folder, before anything is read or written there (and before the other
            # ranks are waited for: a refused rank 0 ends the launch at once)
            self.lock = self.folder.lock().acquire()
        if self.world_size > 1:
            if not dist.is_initialized():
                # NCCL: bound to this rank's GPU (set current above); its collectives need CUDA tensors
                cuda = self.device.type == "cuda"
                dist.init_process_group(backend="nccl" if cuda else "gloo", rank=self.rank,
                                        world_size=self.world_size, device_id=self.device if cuda else None)
                self.started_dist = True

        ckpt = None
        if cfg.resume:
            if not self.ckpt_path.exists():
                raise ConfigError(f"nothing to resume in {self.out_dir}: it has no {CKPT_NAME}")
            ckpt = read_checkpoint(self.ckpt_path)
            if not isinstance(ckpt.get("train"), dict):
                raise CheckpointError(f"{self.ckpt_path} holds a model but no training state to resume from")
            missing = [k for k in (*REQUIRED_KEYS, "train.optimizer", "train.iter_num", "train.tokens_seen",
                                   "train.data_generator", "train.rng")
                       if (ckpt["train"] if k.startswith("train.") else ckpt).get(k.split(".")[-1]) is None]
            if missing:
                raise CheckpointError(f"{self.ckpt_path} cannot be resumed: it lacks {', '.join(missing)}")
            self.run_id = ckpt["train"].get("run_id", self.run_id)
        elif self.ckpt_path.exists():
            raise ConfigError(f"{self.out_dir} already holds a run; resume it (llm-train --resume {self.out_dir}) "
                              f"or choose another out_dir")

        # data and tokenizer
        self.text = load_text(cfg.corpus)
        if ckpt is not None:
            from engine.tokenizers import tokenizer_from_dict

            try:
                self.tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
            except Exception as e:  # noqa: BLE001 - a damaged dict fails in many ways; all mean "bad tokenizer"
                raise CheckpointError(f"{self.ckpt_path}: its tokenizer cannot be rebuilt: {_one_line(e)}") from e
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
            self.lock.keep_folder()
            if not cfg.resume:  # a run that never reached a checkpoint is started over
                self.folder.metrics_path.unlink(missing_ok=True)
            self.writer = JsonlWriter(self.folder.metrics_path)
            _write_json_atomic(self.folder.config_path, {**cfg.to_dict(), "resume": False})

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
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # before any step: a wrong-shaped exp_avg makes the fused AdamW step write out of bounds (heap corruption)
        check_optimizer_state(state.get("optimizer"), params, str(self.ckpt_path))
        _check_param_groups(state["optimizer"]["param_groups"], str(self.ckpt_path))
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
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError, OverflowError) as e:
            raise CheckpointError(f"{self.ckpt_path}: cannot restore the training state: {_one_line(e)}") from e
        self.last_saved = self.iter_num

    # --- messages -----------------------------------------------------------------------------------------------

    def emit(self, msg: Message) -> None:
        """Rank 0: append to metrics.jsonl and pass to the emit callback."""
        if not self.master:
            return
        if self.writer is not None:
            try:
                self.writer.write(msg)
            except OSError as e:
                raise _write_error(e, self.folder.metrics_path) from e
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
        if self.lock is not None:
            self.lock.release()
            self.lock = None


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
        user_error = isinstance(e, USER_ERRORS) or is_disk_full(e)
        rank = _dist_env()[0]
        msg = Failed(trainer.run_id if trainer else "", step=trainer.iter_num if trainer else 0,
                     error=error_line(e) + (f" (rank {rank})" if rank else ""),
                     traceback="" if user_error else traceback.format_exc())
        if isinstance(e, Exception):
            if trainer is not None and trainer.writer is not None:
                try:
                    trainer.writer.write(msg)
                except OSError:  # the disk that failed the run may refuse this line too
                    pass
            if emit is not None:
                try:
                    emit(msg)
                except Exception:  # noqa: BLE001 - a broken channel must not hide the original error
                    pass
        raise
    finally:
        if trainer is not None:
            trainer.close()
