"""The training loop: Trainer (one process's share of a run: AMP, DDP, exact resume) and train(), its entry point.

A run folder holds config.json, metrics.jsonl (the engine.messages stream as JSON lines) and ckpt.pt, the latest
checkpoint: model, optimizer, GradScaler, step, every rank's RNG states, the data generator, the config and the
tokenizer. On the CPU in float32, a resumed run continues bit for bit like one that never stopped.
"""

import math
import time
import traceback
import uuid
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable, cast

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from engine.checkpoint import CheckpointError, check_optimizer_state, save_checkpoint
from engine.data import DataError, get_batch, load_text, prepare
from engine.decoding import DecodeSettings, probabilities, sample
from engine.errors import Cancelled, one_line
from engine.flops import flops_per_token, matmul_peak, mfu, precision_dtype
from engine.messages import (CheckpointSaved, Eval, Failed, Finished, JsonlWriter, Message, NonFinite, Outcome,
                             Sample, Started, Step)
from engine.model import GPT, GPTConfig
from engine.runlock import RunLock
from engine.runs import RunFolder
from engine.train.allocator import keep_freed_memory
from engine.train.config import CKPT_NAME, USER_ERRORS, ConfigError, TrainConfig, get_lr, model_config, problems
from engine.train.distributed import _dist_env, _resolve_device, _rng_state, _set_rng_state
from engine.train.failures import check_writable_folder, error_line, is_disk_full, write_error, write_json_atomic
from engine.train.resume import check_param_groups, load_optimizer, read_resumable
from engine.train.shared_reduce import SharedReducer, shared_reducer
from engine.train.source import build_tokenizer, open_source


class _StopInEvaluation(Exception):
    """Every rank was asked to stop in the middle of an evaluation."""


class Trainer:
    """One process's share of a training run. Build it, then run(); close() in any case."""

    def __init__(self, config: TrainConfig, emit: Callable[[Message], None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.config = config
        self.user_emit = emit
        self.should_stop = should_stop or (lambda: False)
        self.writer: JsonlWriter | None = None
        self.run_id = uuid.uuid4().hex[:12]
        self.iter_num = 0
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.best_val = math.inf
        self.last_saved = -1
        self.last_eval = -1
        self.started_dist = False
        self.reducer: SharedReducer | None = None  # CPU ranks on one machine: gradients averaged in shared memory
        self.lock: RunLock | None = None
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
        found = problems(cfg, world_size=self.world_size)
        if found:
            raise ConfigError(found[0])
        self.micro_batch = cfg.batch_size // self.world_size
        self.device = _resolve_device(cfg, self.local_rank)
        if self.device.type == "cpu":
            keep_freed_memory()  # a CPU step re-uses the heap it freed instead of faulting its pages in again
        if cfg.cache_dir:
            check_writable_folder(cfg.cache_dir, "cache_dir")
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
            ckpt = read_resumable(self.ckpt_path)
            self.run_id = ckpt["train"].get("run_id", self.run_id)
        elif self.ckpt_path.exists():
            raise ConfigError(f"{self.out_dir} already holds a run; resume it (llm-train --resume {self.out_dir}) "
                              f"or choose another out_dir")

        # data and tokenizer
        self.text = load_text(cfg.corpus)
        source = None  # the model init_from names (fine-tuning a new run)
        self.origin = ckpt.get("origin") if ckpt is not None else None  # where a fine-tuned model came from
        if ckpt is not None:
            from engine.tokenizers import tokenizer_from_dict

            try:
                self.tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
            except Exception as e:  # noqa: BLE001 - a damaged dict fails in many ways; all mean "bad tokenizer"
                raise CheckpointError(f"{self.ckpt_path}: its tokenizer cannot be rebuilt: {one_line(e)}") from e
        elif cfg.init_from:
            source, self.tokenizer, self.origin = open_source(cfg.init_from)
        else:
            self.tokenizer = build_tokenizer(cfg.tokenizer, self.text)
        cancelled = False
        try:
            self.data = prepare(self.text, self.tokenizer, block_size=cfg.block_size,
                                val_fraction=cfg.val_fraction, cache_dir=cfg.cache_dir or None,
                                name=f"corpus {cfg.corpus!r}", cancel=self.should_stop)
        except Cancelled:
            if self.world_size == 1:
                raise
            cancelled = True
        except DataError:
            raise
        except ValueError as e:  # the tokenizer refuses the text: a resumed char tokenizer meets a new character
            raise DataError(f"corpus {cfg.corpus!r} cannot be encoded with the run's tokenizer: {one_line(e)}"
                            + ("; the run's tokenizer was built from the corpus it started with: resume with that "
                               "corpus, or start a new run" if ckpt is not None else "")) from e
        if self.world_size > 1 and self._any_rank(cancelled):  # ranks must not part ways before the loop
            raise Cancelled("encoding the corpus was cancelled")

        # model, optimizer, scaler, data generator
        if cfg.init_from:  # the source's shape (the checkpoint's once resumed), with this run's dropout
            if ckpt is not None:
                base = GPTConfig.from_dict(ckpt["model_config"])
            else:
                assert source is not None  # open_source built it above
                base = source.config
            self.model_config = replace(base, dropout=cfg.dropout)
            if self.model_config.pos == "learned" and cfg.block_size > self.model_config.block_size:
                raise ConfigError(f"block_size {cfg.block_size} is longer than the context of the model in init_from "
                                  f"({self.model_config.block_size} learned positions); use at most that")
        else:
            self.model_config = model_config(cfg, self.tokenizer.n_vocab)
        if ckpt is not None and not cfg.init_from and ckpt["model_config"] != self.model_config.to_dict():
            saved = ckpt["model_config"]
            diff = [f"{k}={saved.get(k)!r} (config says {v!r})" for k, v in self.model_config.to_dict().items()
                    if saved.get(k) != v]
            raise ConfigError(f"cannot resume: the checkpoint's model differs from the config: {', '.join(diff)}")
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.raw = GPT(self.model_config).to(self.device)
        if source is not None:
            self.raw.load_state_dict(source.state_dict())
            del source
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
        self.model: torch.nn.Module = self.raw  # what steps: the raw model, compiled and/or wrapped in DDP
        if cfg.compile:
            self.model = cast(torch.nn.Module, torch.compile(self.model))  # an OptimizedModule
        if self.world_size > 1:
            # gradients live in the buckets DDP reduces: no copy back and forth each step (same values)
            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                             gradient_as_bucket_view=True)
            if self.device.type == "cpu":  # ranks on this machine average their gradients in shared memory
                self.reducer = shared_reducer(self.rank, self.world_size)
                if self.reducer is not None:
                    cast(DDP, self.model).register_comm_hook(None, self.reducer.hook)
        self.params = [p for p in self.raw.parameters() if p.requires_grad]
        # what MFU is measured against: every rank times its matmuls at once, so on a shared CPU each sees its share
        self.flops_per_token = flops_per_token(self.raw, cfg.block_size)
        self.peak_flops = matmul_peak(self.device, precision_dtype(cfg.precision)) * self.world_size
        self.start_id = self.tokenizer.start_id

        # the run folder is written only once everything above succeeded: a failed start changes nothing there
        if self.master:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            assert self.lock is not None  # rank 0 took it first thing
            self.lock.keep_folder()
            if not cfg.resume:  # a run that never reached a checkpoint is started over
                self.folder.metrics_path.unlink(missing_ok=True)
            self.writer = JsonlWriter(self.folder.metrics_path)
            write_json_atomic(self.folder.config_path, {**cfg.to_dict(), "resume": False})

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

    def _restore(self, ckpt: dict) -> None:
        state = ckpt["train"]
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # before any step: a wrong-shaped exp_avg makes the fused AdamW step write out of bounds (heap corruption)
        check_optimizer_state(state.get("optimizer"), params, str(self.ckpt_path))
        check_param_groups(state["optimizer"]["param_groups"], str(self.ckpt_path))
        try:
            self.raw.load_state_dict(ckpt["model"])
            load_optimizer(self.optimizer, state["optimizer"])
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
            raise CheckpointError(f"{self.ckpt_path}: cannot restore the training state: {one_line(e)}") from e
        self.last_saved = self.iter_num

    def _any_rank(self, flag: bool) -> bool:
        """Whether flag is true on any rank (a collective: every rank must call it at the same point)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    # --- messages -----------------------------------------------------------------------------------------------

    def emit(self, msg: Message) -> None:
        """Rank 0: append to metrics.jsonl and pass to the emit callback."""
        if not self.master:
            return
        if self.writer is not None:
            try:
                self.writer.write(msg)
            except OSError as e:
                raise write_error(e, self.folder.metrics_path) from e
        if self.user_emit is not None:
            self.user_emit(msg)

    def _exchange(self) -> str:
        if self.world_size == 1:
            return ""
        return "shared memory" if self.reducer is not None else dist.get_backend()

    # --- the loop -----------------------------------------------------------------------------------------------

    def _clip_gradients(self, max_norm: float) -> float:
        """The gradients' total norm, scaling them down to max_norm when it is larger: torch's clip_grad_norm_, bit
        for bit, without its multiplication by 1.0 on a step that needs no clipping (the norm is read on the host
        anyway; on nanoGPT's CPU config that multiplication is ~0.4 ms of a 28 ms step)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        total = torch.nn.utils.get_total_norm(grads, foreach=True)
        norm = float(total)
        if norm > max_norm:
            torch.nn.utils.clip_grads_with_norm_(self.params, max_norm, total, foreach=True)
        return norm

    def run(self) -> Finished:
        """Train until max_iters, a stop request or divergence -> the Finished message (also emitted)."""
        cfg = self.config
        self.emit(Started(self.run_id, config=cfg.to_dict(), n_params=self.raw.num_params(),
                          world_size=self.world_size, step=self.iter_num, flops_per_token=self.flops_per_token,
                          peak_flops=self.peak_flops, exchange=self._exchange()))
        outcome, detail = Outcome.COMPLETED, ""
        try:
            if self.iter_num == 0 and not cfg.resume:
                self.evaluate()
            while self.iter_num < cfg.max_iters:
                result = self.train_step()
                if result == "diverged":
                    saved = (f"the last checkpoint is step {self.last_saved}" if self.last_saved >= 0
                             else "no checkpoint was saved")
                    outcome = Outcome.DIVERGED
                    detail = (f"the loss became non-finite at step {self.iter_num + 1} in float32; "
                              f"lower the learning rate (lr={cfg.lr:g}) or clip gradients harder; {saved}")
                    break
                if self.iter_num % cfg.eval_interval == 0:
                    self.evaluate()
                if cfg.checkpoint_interval and self.iter_num % cfg.checkpoint_interval == 0:
                    self.save()
                if result == "stop":
                    outcome = Outcome.STOPPED
                    break
            if outcome is Outcome.COMPLETED and self.iter_num % cfg.eval_interval and self.last_eval != self.iter_num:
                self.evaluate()
        except _StopInEvaluation:  # asked to stop (or orphaned) during an evaluation: it is left unfinished
            outcome = Outcome.STOPPED
        if outcome is not Outcome.DIVERGED and self.last_saved != self.iter_num:  # a diverged state is not kept
            self.save()
        if self.world_size > 1:  # no rank tears the group down (close()) while rank 0 still writes the checkpoint
            dist.barrier()
        finished = Finished(self.run_id, step=self.iter_num, outcome=outcome, detail=detail)
        self.emit(finished)
        return finished

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
            sync = nullcontext() if last or self.world_size == 1 else cast(DDP, model).no_sync()
            with sync:
                with self.autocast:
                    _, loss = model(x, y)
                    loss = loss / cfg.grad_accum
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach().float()

        # one collective per step: the global loss and whether any rank was asked to stop (with the gradients, in
        # shared memory)
        stats = torch.stack([loss_sum, torch.tensor(float(bool(self.should_stop())), device=self.device)])
        if self.reducer is not None:  # averaged in the same exchange as the gradients DDP left to it
            self.reducer.finish(stats)
        elif self.world_size > 1:
            dist.all_reduce(stats)  # summed
        loss_value, stop = stats.tolist()
        if self.reducer is None:
            loss_value /= self.world_size
        stop = stop > 0

        if not math.isfinite(loss_value) and cfg.precision == "fp32":
            self.optimizer.zero_grad(set_to_none=True)
            self.emit(NonFinite(self.run_id, step=self.iter_num + 1,
                                what=f"loss is {loss_value} in float32: the run stops"))
            return "diverged"

        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients(cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
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
            rate = cfg.tokens_per_iter / dt if dt > 0 else 0.0
            self.emit(Step(self.run_id, step=self.iter_num, loss=loss_value, lr=lr, grad_norm=grad_norm,
                           tokens_per_s=rate, tokens_seen=self.tokens_seen,
                           amp_scale=self.scaler.get_scale() if self.scaler.is_enabled() else 1.0,
                           skipped_steps=self.skipped_steps, time=time.time(),
                           mfu=mfu(rate, self.flops_per_token, self.peak_flops) if rate > 0 else 0.0))
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
                # an evaluation can take minutes: a stop (or the app's death) must not wait for its end; the
                # ranks agree, so they all leave it at the same batch
                if self._any_rank(bool(self.should_stop())):
                    self.raw.train()
                    raise _StopInEvaluation()
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
        """n_tokens generated from the start token through engine.decoding (the sampler Generation uses), seeded by
        the step (does not touch the training RNG). Ids past the tokenizer's (a padded vocabulary) are never drawn."""
        cfg = self.config
        was_training = self.raw.training
        self.raw.eval()
        g = torch.Generator().manual_seed(cfg.seed + self.iter_num)
        settings = DecodeSettings(temperature=cfg.sample_temperature)
        ids = [self.start_id]
        for _ in range(n_tokens):
            if self.should_stop():  # rank 0 alone: cut the sample short, the next step's collective stops the run
                break
            idx = torch.tensor([ids[-cfg.block_size:]], dtype=torch.long, device=self.device)
            with self.autocast:
                logits, _ = self.raw(idx, last_only=True)
            probs = probabilities(logits[0, -1, :self.tokenizer.n_vocab].float().cpu(), settings)
            ids.append(sample(probs, g)[0])
        self.raw.train(was_training)
        return self.tokenizer.decode(ids[1:])

    def save(self) -> None:
        """Checkpoint (collective: every rank contributes its RNG state; rank 0 writes)."""
        rng = _rng_state(self.device)
        if self.world_size > 1:
            states: list[dict | None] = [None] * self.world_size
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
            **({"origin": self.origin} if self.origin else {}),
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
            # DDP's reducer holds the process group too: were it the last to let go, gloo's destructor would join
            # its worker threads under the GIL that a finished work item waits for to free its tensors (a hang)
            if hasattr(self, "raw"):  # (a failed set-up may end before the model was built)
                self.model = self.raw
            dist.destroy_process_group()
            self.started_dist = False
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def train(config: TrainConfig, emit: Callable[[Message], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> Finished:
    """Run (or resume, with config.resume) a training run in this process -> its Finished message.

    emit receives every message on rank 0 (and a Failed message on any rank that fails); should_stop is polled
    once per step, per evaluation batch, per sampled token and per encoded piece of the corpus, and the ranks stop
    together when any of them is asked. Exceptions are reported as a Failed
    message (no traceback for user errors: ConfigError, DataError, CheckpointError) and raised again.
    """
    trainer = None
    try:
        trainer = Trainer(config, emit, should_stop)
        return trainer.run()
    except Cancelled:  # stopped while the corpus was being encoded: nothing was trained or written
        finished = Finished("", step=0, outcome=Outcome.STOPPED)
        if emit is not None:
            emit(finished)
        return finished
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
