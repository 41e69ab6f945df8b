"""The training configuration: TrainConfig (validated on construction), the learning-rate schedule, a run's config.

Every setting is checked in ``TrainConfig.__post_init__``; strings from the command line are parsed there too, so the
app's form, the CLI and a config file go through the same checks.
"""

import difflib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from engine.checkpoint import CheckpointError, read_checkpoint
from engine.data import DataError
from engine.model import GPTConfig
from engine.runlock import RunFolderError
from engine.runs import CKPT_NAME, CONFIG_NAME, METRICS_NAME  # noqa: F401 - re-exported by engine.train

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
MODEL_FIELDS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "pos", "tie_weights")
ALIASES = {"learning_rate": "lr", "gradient_accumulation_steps": "grad_accum", "init_lr": "lr"}


class ConfigError(ValueError):
    """A training setting is unknown, has the wrong type, or does not fit with the others."""


# user errors: reported as one line (CLI) or a Failed message without traceback (app)
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunFolderError)


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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ConfigError(f"cannot read {path}: {_one_line(e)}; it should hold the run's settings as a JSON "
                              f"object") from e
        if not isinstance(d, dict):
            raise ConfigError(f"{path} holds a JSON {type(d).__name__}, not the run's settings (a JSON object)")
    elif (out_dir / CKPT_NAME).exists():
        d = read_checkpoint(out_dir / CKPT_NAME).get("train", {}).get("config")
        if not isinstance(d, dict):
            raise CheckpointError(f"{out_dir / CKPT_NAME} holds no training state to resume from")
    else:
        raise ConfigError(f"{out_dir} is not a run folder (no {CONFIG_NAME} or {CKPT_NAME})")
    return TrainConfig.from_dict({**d, "out_dir": str(out_dir), "resume": True})


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
