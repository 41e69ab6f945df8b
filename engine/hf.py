"""Hugging Face model folders on the user's disk -> our transformer family, offline, never running code from a file.

    model, tokenizer, info = load_hf_model("~/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M")

A folder is ``config.json`` + weights (``model.safetensors``; shards named by ``model.safetensors.index.json``; or
``pytorch_model.bin``, read only with ``weights_only=True``) + ``tokenizer.json``. A hub-cache repository folder
(``models--org--name``) is resolved through ``refs/main`` to its snapshot. Supported architectures and how each maps
onto ``GPTConfig`` (see ``engine.model``):

    GPT2LMHeadModel   LayerNorm, GELU (tanh), learned positions, fused q/k/v with biases, tied head
    LlamaForCausalLM  RMSNorm, SwiGLU, grouped-query attention, RoPE (theta, Llama 3 / linear scaling), tied or not
    Qwen2ForCausalLM  as Llama, with biases on q, k and v

Weights are read tensor by tensor from memory-mapped files straight into the model (peak memory: the model plus one
tensor), in float32 or bfloat16, with a progress callback and a cancel check between tensors. Every failure is an
``HFModelError`` (a ``CheckpointError``) with one line.
"""

import json
import os
import pickle
import warnings
from typing import cast

import torch

from engine.checkpoint import CheckpointError, available_memory
from engine.choices import estimate_params
from engine.errors import Cancelled, one_line, size_text, unpickler_reason
from engine.model import GPT, GPTConfig

ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
BF16_ABOVE = 300_000_000  # parameters: larger models load in bfloat16 unless asked otherwise (half the memory)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class HFModelError(CheckpointError):
    """A Hugging Face model folder cannot be opened."""


class LoadCancelled(Cancelled):
    """The caller's cancel check said stop while weights were loading (an engine.errors.Cancelled)."""


# -- finding the folder


def hub_cache_dir() -> str:
    """Where the Hugging Face cache lives: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return os.path.expanduser(os.path.join("~", ".cache", "huggingface", "hub"))


def is_hf_folder(path) -> bool:
    """A folder with config.json, or a hub-cache repository folder (it has snapshots/)."""
    path = os.fspath(path)
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "config.json"))
                                    or os.path.isdir(os.path.join(path, "snapshots"))
                                    or os.path.basename(os.path.normpath(path)).startswith("models--"))


def resolve_snapshot(path) -> str:
    """The folder holding config.json: path itself, or a hub repository's snapshot named by refs/main."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    snapshots = os.path.join(path, "snapshots")
    name = os.path.basename(os.path.normpath(path))
    if not os.path.isdir(snapshots):
        if os.path.isdir(path):
            raise HFModelError(f"{name} has no config.json: not a Hugging Face model folder")
        raise HFModelError(f"no model folder at {path}")
    ref = os.path.join(path, "refs", "main")
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8", errors="replace") as f:
            commit = f.read().strip()
        snap = os.path.join(snapshots, commit)
        if not os.path.isdir(snap):
            raise HFModelError(f"{name}: download incomplete (refs/main names snapshot {commit[:12]}, which is "
                               f"missing)")
    else:
        found = sorted(os.listdir(snapshots))
        if len(found) != 1:
            raise HFModelError(f"{name} has no refs/main and {len(found)} snapshots: open a snapshot folder")
        snap = os.path.join(snapshots, found[0])
    if not os.path.isfile(os.path.join(snap, "config.json")):
        raise HFModelError(f"{name}: its snapshot has no config.json (download incomplete?)")
    return snap


def resolve_model(name_or_path) -> str:
    """A path to a model folder, or a hub name such as "openai-community/gpt2" found in the cache."""
    text = os.fspath(name_or_path)
    if os.path.exists(os.path.expanduser(text)):
        return os.path.expanduser(text)
    repo = os.path.join(hub_cache_dir(), "models--" + text.replace("/", "--"))
    if os.path.isdir(repo):
        return repo
    raise HFModelError(f"no model {text!r}: not a path, and not in the Hugging Face cache at {hub_cache_dir()}")


# -- config


def _rope(cfg: dict) -> tuple[float, dict | None]:
    """(theta, scaling) from transformers 5's rope_parameters or 4's rope_theta + rope_scaling."""
    params = cfg.get("rope_parameters") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling") or ({k: v for k, v in params.items() if k != "rope_theta"} or None)
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
        elif kind not in ("llama3", "linear"):
            raise HFModelError(f"rope scaling {kind!r} is not supported (supported: llama3, linear)")
    return float(theta), scaling


def config_from_hf(cfg: dict, source: str = "config.json") -> tuple[GPTConfig, str]:
    """Our GPTConfig for a Hugging Face config.json dict -> (config, architecture). Unsupported: HFModelError."""
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else cfg.get("model_type", "unknown")
    family = ARCHITECTURES.get(arch)
    if family is None:
        raise HFModelError(f"{source}: the architecture {arch} is not supported (supported: "
                           f"{', '.join(ARCHITECTURES)})")
    try:
        if family == "gpt2":
            act = cfg.get("activation_function", "gelu_new")
            if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
                raise HFModelError(f"{source}: GPT-2 with activation {act!r} is not supported")
            if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("scale_attn_weights") is False:
                raise HFModelError(f"{source}: GPT-2 with non-standard attention scaling is not supported")
            config = GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg.get("n_positions", 1024),
                               n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                               intermediate_size=cfg.get("n_inner"), bias=True, pos="learned",
                               norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
                               gelu_approximate="none" if act == "gelu" else "tanh",
                               tie_weights=cfg.get("tie_word_embeddings", True))
        else:
            if cfg.get("hidden_act", "silu") != "silu":
                raise HFModelError(f"{source}: activation {cfg.get('hidden_act')!r} is not supported")
            n_embd, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
            head_dim = cfg.get("head_dim")
            if head_dim is not None and head_dim * n_head != n_embd:
                raise HFModelError(f"{source}: head_dim {head_dim} x {n_head} heads != hidden size {n_embd}: "
                                   f"not supported")
            if family == "qwen2" and cfg.get("use_sliding_window"):
                raise HFModelError(f"{source}: Qwen2 with sliding-window attention is not supported")
            theta, scaling = _rope(cfg)
            attention_bias = bool(cfg.get("attention_bias", False))
            config = GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg.get("max_position_embeddings", 2048),
                               n_layer=cfg["num_hidden_layers"], n_head=n_head, n_embd=n_embd,
                               n_kv_head=cfg.get("num_key_value_heads") or n_head,
                               intermediate_size=cfg["intermediate_size"], bias=False,
                               qkv_bias=True if family == "qwen2" else attention_bias,
                               proj_bias=attention_bias, mlp_bias=bool(cfg.get("mlp_bias", False)),
                               norm="rmsnorm", norm_eps=cfg.get("rms_norm_eps", 1e-6), mlp="swiglu", pos="rope",
                               rope_theta=theta, rope_scaling=scaling,
                               tie_weights=bool(cfg.get("tie_word_embeddings", False)))
    except KeyError as e:
        raise HFModelError(f"{source}: {arch} config has no {e.args[0]!r}") from None
    except (ValueError, TypeError) as e:
        if isinstance(e, HFModelError):
            raise
        raise HFModelError(f"{source}: {arch} config is not valid: {one_line(e)}") from None
    return config, arch


def read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, "rb") as f:
            cfg = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise HFModelError(f"{os.path.basename(folder)} has no config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFModelError(f"config.json cannot be read: {one_line(e)}") from None
    if not isinstance(cfg, dict):
        raise HFModelError("config.json is not a JSON object")
    return cfg


# -- weights


class _Weights:
    """The tensors of a folder by name, read lazily: safetensors (single or sharded, memory-mapped) or a .bin."""

    def __init__(self, folder: str):
        self.folder = folder
        self.where: dict[str, str] = {}  # tensor name -> file
        self._open: dict[str, object] = {}
        self._bin = None
        single = os.path.join(folder, "model.safetensors")
        index = os.path.join(folder, "model.safetensors.index.json")
        binary = os.path.join(folder, "pytorch_model.bin")
        if os.path.isfile(index):
            try:
                with open(index, "rb") as f:
                    weight_map = json.loads(f.read().decode("utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise HFModelError(f"model.safetensors.index.json cannot be read: {one_line(e)}") from None
            for shard in sorted(set(weight_map.values())):
                if not os.path.isfile(os.path.join(folder, shard)):
                    raise HFModelError(f"a weight shard is missing: {shard} (named by model.safetensors.index.json; "
                                       f"download incomplete?)")
            self.where = {k: os.path.join(folder, v) for k, v in weight_map.items()}
            self.kind = "safetensors"
        elif os.path.isfile(single):
            self._scan_safetensors(single)
            self.kind = "safetensors"
        elif os.path.isfile(binary):
            self._bin = _read_bin(binary)
            self.where = {k: binary for k in self._bin}
            self.kind = "pytorch_model.bin"
        else:
            raise HFModelError(f"{os.path.basename(folder)} has no weights (model.safetensors, "
                               f"model.safetensors.index.json or pytorch_model.bin)")

    def _scan_safetensors(self, path):
        for k in self._handle(path).keys():
            self.where[k] = path

    def _handle(self, path):
        from safetensors import safe_open
        if path not in self._open:
            try:
                self._open[path] = safe_open(path, framework="pt", device="cpu")
            except Exception as e:  # noqa: BLE001 - a truncated or foreign file
                raise HFModelError(f"{os.path.basename(path)} is not a readable safetensors file "
                                   f"({one_line(e)})") from None
        return self._open[path]

    def get(self, name: str) -> torch.Tensor:
        if self._bin is not None:
            return self._bin[name]
        try:
            return self._handle(self.where[name]).get_tensor(name)
        except HFModelError:
            raise
        except Exception as e:  # noqa: BLE001
            raise HFModelError(f"{os.path.basename(self.where[name])}: tensor {name} cannot be read "
                               f"({one_line(e)})") from None


def _read_bin(path: str) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise HFModelError(f"pytorch_model.bin was refused: it contains objects other than tensors, which are never "
                           f"loaded ({unpickler_reason(e)})") from None
    except Exception as e:  # noqa: BLE001
        raise HFModelError(f"pytorch_model.bin is truncated or corrupt ({one_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HFModelError("pytorch_model.bin does not hold a dict of tensors")
    return state


def _plan(family: str, config: GPTConfig, names: set[str]) -> dict[str, tuple[list[str], bool]]:
    """Our parameter name -> (their tensor names, concatenated along dim 0 in this order; transpose?)."""
    plan: dict[str, tuple[list[str], bool]] = {}
    if family == "gpt2":
        pre = "transformer." if any(n.startswith("transformer.") for n in names) else ""
        plan["transformer.wte.weight"] = ([pre + "wte.weight"], False)
        plan["transformer.wpe.weight"] = ([pre + "wpe.weight"], False)
        for i in range(config.n_layer):
            h = f"{pre}h.{i}."
            for part in ("ln_1", "ln_2"):
                for p in ("weight", "bias"):
                    plan[f"transformer.h.{i}.{part}.{p}"] = ([h + f"{part}.{p}"], False)
            for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):  # Conv1D: stored (in, out)
                plan[f"transformer.h.{i}.{part}.weight"] = ([h + f"{part}.weight"], True)
                plan[f"transformer.h.{i}.{part}.bias"] = ([h + f"{part}.bias"], False)
        plan["transformer.ln_f.weight"] = ([pre + "ln_f.weight"], False)
        plan["transformer.ln_f.bias"] = ([pre + "ln_f.bias"], False)
    else:
        plan["transformer.wte.weight"] = (["model.embed_tokens.weight"], False)
        for i in range(config.n_layer):
            h = f"model.layers.{i}."
            ours = f"transformer.h.{i}."
            plan[ours + "ln_1.weight"] = ([h + "input_layernorm.weight"], False)
            plan[ours + "ln_2.weight"] = ([h + "post_attention_layernorm.weight"], False)
            qkv = [h + f"self_attn.{x}_proj" for x in "qkv"]
            plan[ours + "attn.c_attn.weight"] = ([n + ".weight" for n in qkv], False)
            if config.qkv_bias:
                plan[ours + "attn.c_attn.bias"] = ([n + ".bias" for n in qkv], False)
            plan[ours + "attn.c_proj.weight"] = ([h + "self_attn.o_proj.weight"], False)
            if config.proj_bias:
                plan[ours + "attn.c_proj.bias"] = ([h + "self_attn.o_proj.bias"], False)
            plan[ours + "mlp.c_fc.weight"] = ([h + "mlp.gate_proj.weight", h + "mlp.up_proj.weight"], False)
            plan[ours + "mlp.c_proj.weight"] = ([h + "mlp.down_proj.weight"], False)
            if config.mlp_bias:
                plan[ours + "mlp.c_fc.bias"] = ([h + "mlp.gate_proj.bias", h + "mlp.up_proj.bias"], False)
                plan[ours + "mlp.c_proj.bias"] = ([h + "mlp.down_proj.bias"], False)
        plan["transformer.ln_f.weight"] = (["model.norm.weight"], False)
    if not config.tie_weights:
        plan["lm_head.weight"] = (["lm_head.weight"], False)
    return plan


# -- the model


def load_hf_tokenizer(path):
    """Only the tokenizer of a Hugging Face model folder or hub repository (no weights read) -> HFTokenizer.

    The Tokenization pane uses it: a model whose architecture this engine cannot run still has a tokenizer to look at.
    """
    original = os.fspath(path)
    return _folder_tokenizer(resolve_snapshot(original), repo_name(original))


def _folder_tokenizer(folder: str, name: str):
    from engine.tokenizers.hf import HFTokenizer

    tok_path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(tok_path):
        raise HFModelError(f"{name} has no tokenizer.json (this app needs the model's own tokenizer)")
    try:
        return HFTokenizer.from_file(tok_path, name=name, bos_token=_tokenizer_extras(folder)["bos_token"])
    except ValueError as e:
        raise HFModelError(f"{name}: tokenizer.json is corrupt or unsupported: {one_line(e)}") from None


def load_hf_model(path, *, dtype: str | None = None, device="cpu", progress=None, cancel=None):
    """Open a Hugging Face model folder or hub repository -> (GPT in eval mode, HFTokenizer, info dict).

    dtype: "float32" | "bfloat16" | None (bfloat16 above ``BF16_ABOVE`` parameters, else float32).
    progress(done_bytes, total_bytes) is called after each tensor; cancel() returning true stops with LoadCancelled.
    info: {"format": "huggingface", "name", "path", "architecture", "dtype", "n_params", "weights",
    "hf_config", "chat_template", "bos_token", "eos_token"}.
    """
    original = os.fspath(path)
    folder = resolve_snapshot(original)
    name = repo_name(original)
    cfg = read_config(folder)
    config, arch = config_from_hf(cfg, f"{name}/config.json")
    family = ARCHITECTURES[arch]
    extras = _tokenizer_extras(folder)
    tokenizer = _folder_tokenizer(folder, name)
    if tokenizer.n_vocab > config.vocab_size:
        raise HFModelError(f"{name}: its tokenizer has {tokenizer.n_vocab} tokens but the model only "
                           f"{config.vocab_size}")

    n_params = estimate_params(config, config.vocab_size)
    if dtype is None:
        dtype = "bfloat16" if n_params > BF16_ABOVE else "float32"
    if dtype not in DTYPES:
        raise HFModelError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    torch_dtype = DTYPES[dtype]
    need = n_params * torch_dtype.itemsize
    avail = available_memory()
    if avail is not None and need > avail:
        raise HFModelError(f"{name}: its {n_params / 1e6:,.0f} M parameters need {size_text(need)} of memory in "
                           f"{dtype}, only {size_text(avail)} is available")

    weights = _Weights(folder)
    plan = _plan(family, config, set(weights.where))
    for ours, (theirs, _) in plan.items():
        for t in theirs:
            if t not in weights.where:
                raise HFModelError(f"{name}: the weights have no {t} (needed for {ours}); not a complete {arch}")
    with torch.device("meta"):
        model = GPT(config).to(torch_dtype)
    model.to_empty(device="cpu")  # allocates in torch_dtype, uninitialised: every tensor is filled below
    if config.tie_weights:
        model.lm_head.weight = cast(torch.nn.Embedding, model.transformer["wte"]).weight
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = set(k for k in params if k not in plan and not (config.tie_weights and k == "lm_head.weight"))
    if missing:
        raise HFModelError(f"{name}: no mapping for {sorted(missing)[0]}")  # a bug here, not in the file
    total = sum(params[k].numel() * params[k].element_size() for k in plan)
    done = 0
    with torch.no_grad():
        for ours, (theirs, transpose) in plan.items():
            if cancel is not None and cancel():
                raise LoadCancelled(f"loading {name} was cancelled")
            parts = [weights.get(t) for t in theirs]
            tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            if transpose:
                tensor = tensor.t()
            target = params[ours]
            if tuple(tensor.shape) != tuple(target.shape):
                raise HFModelError(f"{name}: {theirs[0]} has shape {tuple(tensor.shape)}, the config needs "
                                   f"{tuple(target.shape)}")
            target.copy_(tensor)
            done += target.numel() * target.element_size()
            if progress is not None:
                progress(done, total)
    model.to(device).eval()
    info = {"format": "huggingface", "name": name, "path": folder, "architecture": arch, "dtype": dtype,
            "n_params": model.num_params(), "weights": weights.kind, "hf_config": cfg}
    info.update(extras)
    return model, tokenizer, info


def _tokenizer_extras(folder: str) -> dict:
    """chat_template (tokenizer_config.json or chat_template.jinja), bos_token and eos_token as text, or None."""
    out: dict[str, str | None] = {"chat_template": None, "bos_token": None, "eos_token": None}
    try:
        with open(os.path.join(folder, "tokenizer_config.json"), "rb") as f:
            tc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        tc = {}
    if not isinstance(tc, dict):
        tc = {}
    for key in ("bos_token", "eos_token"):
        v = tc.get(key)
        out[key] = v.get("content") if isinstance(v, dict) else v if isinstance(v, str) else None
    template = tc.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    jinja = os.path.join(folder, "chat_template.jinja")
    if not isinstance(template, str) and os.path.isfile(jinja):
        with open(jinja, encoding="utf-8", errors="replace") as f:
            template = f.read()
    out["chat_template"] = template if isinstance(template, str) else None
    return out


def repo_name(path) -> str:
    """"openai-community/gpt2" for .../models--openai-community--gpt2[/snapshots/HASH], else the folder's name."""
    parts = os.path.normpath(os.path.abspath(os.fspath(path))).split(os.sep)
    for part in reversed(parts):
        if part.startswith("models--"):
            return "/".join(part[len("models--"):].split("--"))
    return parts[-1] or os.fspath(path)
