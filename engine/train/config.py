"""The training configuration: TrainConfig (validated on construction), its checks, the learning-rate schedule.

Every setting is checked by one function, :func:`problems`; strings from the command line are parsed there too. The
CLI, a config file and ``TrainConfig(...)`` raise ``ConfigError`` with its first problem; a form calls it directly to
list every problem before Start::

    >>> for problem in problems({"n_embd": 130, "n_head": 4, "lr": "fast"}, cuda=False):
    ...     print(problem)
    lr must be a number, got 'fast'
    width n_embd=130 does not split evenly among n_head=4 heads: use a multiple of 4 (e.g. 128)
    >>> problems({"precision": "fp16"}, cuda=False)
    ['precision fp16 needs a CUDA GPU (its GradScaler is CUDA-only); on the CPU use bf16 or fp32']
    >>> problems({"batch_size": 12}, world_size=5)
    ['batch_size 12 cannot be split evenly over 5 processes; use a multiple of 5']

A Llama-style model trains from scratch with ``norm=rmsnorm mlp=swiglu pos=rope`` (and ``n_kv_head`` for grouped-
query attention), or the ``llama-char-cpu`` preset; ``init_from`` fine-tunes an existing model (see TrainConfig).
"""

import difflib
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from engine.checkpoint import CheckpointError, read_checkpoint
from engine.choices import DEVICES, MLPS, NORMS, POSITIONS, PRECISIONS, vocab_size
from engine.errors import UserError, error_line, one_line
from engine.model import GPTConfig
from engine.train.memory import memory_problem
from engine.runs import CKPT_NAME, CONFIG_NAME, METRICS_NAME  # noqa: F401 - re-exported by engine.train

# the settings that shape the model (GPTConfig's fields of the same names; 0 for n_kv_head / intermediate_size
# means the family's default)
MODEL_FIELDS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "pos", "tie_weights", "norm", "mlp",
                "n_kv_head", "intermediate_size", "rope_theta")
ALIASES = {"learning_rate": "lr", "gradient_accumulation_steps": "grad_accum", "init_lr": "lr"}


class ConfigError(UserError):
    """A training setting is unknown, has the wrong type, or does not fit with the others."""


# user errors: reported as one line (CLI) or a Failed message without traceback (app). Every one derives from
# engine.errors.UserError (ConfigError, DataError, CheckpointError, TokenizerError, CorpusError, RunFolderError, ...).
USER_ERRORS = (UserError,)


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
    norm: str = "layernorm"  # "layernorm" (GPT-2) | "rmsnorm" (Llama)
    mlp: str = "gelu"  # "gelu" (GPT-2) | "swiglu" (Llama's gated MLP)
    n_kv_head: int = 0  # key/value heads; 0 = n_head. Fewer is grouped-query attention (Llama 3)
    intermediate_size: int = 0  # MLP hidden width; 0 = 4 * n_embd (gelu) or the same parameters in swiglu
    rope_theta: float = 10000.0  # RoPE's base (pos=rope)
    init_from: str = ""  # fine-tune: a checkpoint, run folder, Hugging Face folder or cached hub name ("" = scratch);
    #                      the model's shape and tokenizer then come from it (the settings above are not used)
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
        for problem in _checks(self):
            raise ConfigError(problem)

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


def model_config(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The GPTConfig a training config builds from scratch, for a tokenizer of vocab_size ids."""
    values = {k: getattr(config, k) for k in MODEL_FIELDS}
    values["n_kv_head"] = values["n_kv_head"] or None
    if not values["intermediate_size"]:
        # SwiGLU has three matrices to GELU's two: 2/3 of 4 * n_embd keeps the parameters (Llama), rounded up to 8
        values["intermediate_size"] = (-(-8 * config.n_embd // 3 // 8) * 8 if config.mlp == "swiglu"
                                       else 4 * config.n_embd)
    return GPTConfig(vocab_size=vocab_size, **values)


def problems(settings: "dict | TrainConfig", *, world_size: int = 1, cuda: bool | None = None,
             memory: int | None = None) -> list[str]:
    """Everything wrong with a training config, each as one readable sentence; [] when it can start.

    settings: a TrainConfig or a dict of its fields (values may be text, as typed; aliases such as learning_rate are
    accepted). world_size: how many processes will share the batch. cuda: whether a CUDA GPU is there (None: ask
    torch). memory: bytes of memory (None: this machine's). Beyond the settings themselves it checks what the
    machine and the files decide: fp16 and device=cuda need CUDA, the batch splits evenly over the processes, the
    tokenizer file is readable, and the weights, gradients and AdamW state fit in memory.

    The app's form and ``llm-train`` call this same function, so they never disagree.
    """
    found: list[str] = []
    if isinstance(settings, TrainConfig):
        cfg = settings
    else:
        if not isinstance(settings, dict):
            return [f"a training config must be a set of key=value settings, got {type(settings).__name__}"]
        values = {}
        for key, value in settings.items():
            try:
                values.update(_known({key: value}))
            except ConfigError as e:
                found.append(str(e))
        cfg = object.__new__(TrainConfig)
        for f in fields(TrainConfig):
            default = getattr(TrainConfig, f.name)
            try:
                setattr(cfg, f.name, _coerce(f.name, values.get(f.name, default), f.type))
            except ConfigError as e:
                found.append(str(e))
                setattr(cfg, f.name, default)
    found += list(_checks(cfg))
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        found.append(f"the number of processes must be a positive integer, got {world_size!r}")
        world_size = 1
    if cfg.batch_size >= 1 and cfg.batch_size % world_size:
        found.append(f"batch_size {cfg.batch_size} cannot be split evenly over {world_size} processes; use a "
                     f"multiple of {world_size}")
    if cfg.device != "cpu" and (cfg.precision == "fp16" or cfg.device == "cuda"):
        if not _has_cuda(cuda):
            what = "precision fp16" if cfg.precision == "fp16" else "device cuda"
            found.append(f"{what} needs a CUDA GPU (its GradScaler is CUDA-only); on the CPU use bf16 or fp32"
                         if cfg.precision == "fp16" else f"{what} needs a CUDA GPU, and this machine has none")
    if cfg.compile and (cfg.device == "cpu" or (cfg.device == "auto" and not _has_cuda(cuda))):
        compile_problem = _cpu_compile_problem()
        if compile_problem:
            found.append(compile_problem)
    if found or cfg.init_from:
        return found
    try:
        vocab = vocab_size(cfg.tokenizer)
    except UserError as e:
        return found + [f"tokenizer: {e}"]
    memory = _memory_bytes() if memory is None else memory
    # weights, gradients, AdamW's moments and a micro-batch's activations, in every process; an absurd size is
    # refused from a lower bound, before its shape is even built on the meta device
    problem = memory_problem(cfg, vocab or 256, memory, world_size)
    if problem:
        found.append(problem)
    return found


def _has_cuda(told: bool | None) -> bool:
    """Whether a CUDA GPU is there: as the caller was told, else as torch says."""
    if told is not None:
        return told
    import torch

    return torch.cuda.is_available()


def _cpu_compile_problem() -> str:
    """Why torch.compile cannot build CPU kernels here ("" when it can): it compiles C++ with the system's compiler."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler

        get_cpp_compiler()
    except (InvalidCxxCompiler, OSError, RuntimeError) as e:  # inductor says which compiler it looked for
        return (f"compile=true on the CPU needs a C++ compiler for torch.compile ({error_line(e)}); install one "
                f"(Debian/Ubuntu: apt install g++) or set compile=false")
    return ""


def _checks(cfg: TrainConfig):
    """The problems of a TrainConfig whose fields have their types, one sentence each."""
    for name in ("corpus", "tokenizer", "out_dir"):
        if not getattr(cfg, name).strip():
            yield f"{name} must not be empty"
    heads, width = cfg.n_head, cfg.n_embd
    shape_ok = True
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        if getattr(cfg, name) < 1:
            yield f"{name} must be at least 1, got {getattr(cfg, name)}"
            shape_ok = False
    for name in ("n_kv_head", "intermediate_size"):
        if getattr(cfg, name) < 0:
            yield f"{name} must not be negative (0 = the default), got {getattr(cfg, name)}"
            shape_ok = False
    for name, allowed in (("pos", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
        if getattr(cfg, name) not in allowed:
            yield f"{name} must be one of {', '.join(allowed)}; got {getattr(cfg, name)!r}"
            shape_ok = False
    if shape_ok and width % heads:
        yield (f"width n_embd={width} does not split evenly among n_head={heads} heads: use a multiple of {heads} "
               f"(e.g. {heads * max(1, round(width / heads))})")
    elif shape_ok and cfg.pos == "rope" and (width // heads) % 2:
        yield (f"RoPE rotates pairs of numbers, so each head needs an even size; n_embd {width} / n_head {heads} "
               f"= {width // heads}")
    elif shape_ok and cfg.n_kv_head and heads % cfg.n_kv_head:
        yield f"n_head ({heads}) must be a multiple of n_kv_head ({cfg.n_kv_head})"
    elif shape_ok:
        try:
            model_config(cfg, 1)
        except ValueError as e:
            yield str(e).replace("GPTConfig.", "")
    positive = ("batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval")
    for name in positive:
        if getattr(cfg, name) < 1:
            yield f"{name} must be at least 1, got {getattr(cfg, name)}"
    for name in ("max_iters", "warmup_iters", "lr_decay_iters", "sample_len", "checkpoint_interval",
                 "weight_decay", "grad_clip", "sample_temperature", "min_lr"):
        if getattr(cfg, name) < 0:
            yield f"{name} must not be negative, got {getattr(cfg, name)}"
    if not 0 <= cfg.seed < 2**63:  # torch seeds are 64-bit; the trainer adds ranks and steps to it
        yield f"seed must be between 0 and 2**63 - 1, got {cfg.seed}"
    if 0 < cfg.sample_temperature < 1e-6:  # logits / 1e-40 overflow to inf: no distribution to sample from
        yield f"sample_temperature must be 0 (greedy) or at least 1e-06, got {cfg.sample_temperature}"
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        yield f"lr must be a positive number, got {cfg.lr}"
    elif cfg.min_lr > cfg.lr:
        yield f"min_lr ({cfg.min_lr}) must not exceed lr ({cfg.lr})"
    if cfg.lr_decay_iters < cfg.warmup_iters:
        yield f"lr_decay_iters ({cfg.lr_decay_iters}) must be at least warmup_iters ({cfg.warmup_iters})"
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            yield f"{name} must be in [0, 1), got {getattr(cfg, name)}"
    if not 0.0 < cfg.val_fraction < 1.0:
        yield f"val_fraction must be between 0 and 1 (exclusive), got {cfg.val_fraction}"
    if not 0.0 <= cfg.dropout < 1.0:
        yield f"dropout must be in [0, 1), got {cfg.dropout}"
    if not (cfg.rope_theta > 0 and math.isfinite(cfg.rope_theta)):
        yield f"rope_theta must be a positive number, got {cfg.rope_theta}"
    if cfg.precision not in PRECISIONS:
        yield f"precision must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}"
    if cfg.device not in DEVICES:
        yield f"device must be one of {', '.join(DEVICES)}; got {cfg.device!r}"
    if cfg.precision == "fp16" and cfg.device == "cpu":
        yield "precision fp16 needs a CUDA GPU (its GradScaler is CUDA-only); on the CPU use bf16 or fp32"
    if cfg.init_from.strip() and cfg.resume is False and cfg.init_from.strip() == cfg.out_dir.strip():
        yield "init_from cannot be the run folder itself (out_dir): fine-tuning writes a new run"


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
            raise ConfigError(f"cannot read {path}: {read_error(e)}; it should hold the run's settings as a JSON "
                              f"object (delete it to resume from {CKPT_NAME}'s own copy)") from e
        if not isinstance(d, dict):
            raise ConfigError(f"{path} holds a JSON {type(d).__name__}, not the run's settings (a JSON object)")
    elif (out_dir / CKPT_NAME).exists():
        d = read_checkpoint(out_dir / CKPT_NAME).get("train", {}).get("config")
        if not isinstance(d, dict):
            raise CheckpointError(f"{out_dir / CKPT_NAME} holds no training state to resume from")
    else:
        raise ConfigError(f"{out_dir} is not a run folder (no {CONFIG_NAME} or {CKPT_NAME})")
    return TrainConfig.from_dict({**d, "out_dir": str(out_dir), "resume": True})


def read_error(exc: BaseException) -> str:
    """Why a JSON file could not be read, in words rather than a codec's or parser's message."""
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start:exc.start + 1]
        return f"it is not UTF-8 text (byte 0x{bad.hex() or '??'} at offset {exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, RecursionError):
        return "its JSON is nested too deep"
    if isinstance(exc, OSError):
        return exc.strerror or one_line(exc)
    return one_line(exc)
