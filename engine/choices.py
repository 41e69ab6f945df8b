"""The choices the engine accepts, in one place, and the facts the app shows about them before anything is built.

This module imports neither torch nor tiktoken at import time, so a form can fill its lists at start-up::

    >>> ENCODINGS
    ('gpt2', 'p50k_base', 'cl100k_base', 'o200k_base')
    >>> vocab_size("cl100k_base"), vocab_size("char")
    (100277, None)
    >>> estimate_params({"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "bias": False}, 65)
    804096

``vocab_size`` and ``estimate_params`` are the only answers to "how many tokens" and "how many parameters": the
Training form, the trainer and engine.hf ask them rather than re-deriving the figures.
"""

import os
from typing import Any

ENCODINGS = ("gpt2", "p50k_base", "cl100k_base", "o200k_base")  # OpenAI's encodings, offline (engine.tokenizers)
ENCODING_VOCAB = {"gpt2": 50257, "p50k_base": 50281, "cl100k_base": 100277, "o200k_base": 200019}  # their n_vocab
CHAR = "char"  # the training tokenizer built from the corpus: one token per character
TRAIN_TOKENIZERS = (CHAR, *ENCODINGS)  # names llm-train accepts for `tokenizer` (besides a saved tokenizer file)
PRECISIONS = ("fp32", "bf16", "fp16")  # training precision: fp16 needs CUDA (its GradScaler is CUDA-only)
DEVICES = ("auto", "cpu", "cuda")
POSITIONS = ("learned", "rope", "alibi")  # position schemes of engine.model
NORMS = ("layernorm", "rmsnorm")  # GPT-2's LayerNorm, Llama's RMSNorm
MLPS = ("gelu", "swiglu")  # GPT-2's MLP, Llama's gated MLP
LOAD_DTYPES = ("float32", "bfloat16")  # the precisions a Hugging Face model is loaded in (engine.hf)

_vocab_cache: dict[tuple, int] = {}


def vocab_size(tokenizer: "str | os.PathLike[str]") -> int | None:
    """How many token ids a tokenizer has, without building it: None for "char" (it depends on the corpus).

    ``tokenizer`` is an encoding name, a saved tokenizer file (character or BPE), a Hugging Face ``tokenizer.json``
    or a folder holding one. Files are read once while they are unchanged. A missing or unreadable file raises
    :class:`engine.errors.UserError` saying why.
    """
    from engine.errors import UserError

    name = os.fspath(tokenizer)
    if name == CHAR:
        return None
    if name in ENCODING_VOCAB:
        return ENCODING_VOCAB[name]
    if name == "r50k_base":
        return ENCODING_VOCAB["gpt2"]
    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "tokenizer.json")):
        name = os.path.join(name, "tokenizer.json")
    try:
        st = os.stat(name)
    except OSError:
        raise UserError(f"the tokenizer {name} does not exist: choose an encoding "
                        f"({', '.join(TRAIN_TOKENIZERS)}) or a saved tokenizer file") from None
    key = (name, st.st_mtime_ns, st.st_size)
    if key not in _vocab_cache:
        _vocab_cache[key] = _file_vocab(name)
    return _vocab_cache[key]


def _file_vocab(path: str) -> int:
    from engine.errors import UserError
    from engine.tokenizers.base import load_json

    data = load_json(path)
    if data.get("kind") == "bpe" and isinstance(data.get("n_vocab"), int):
        return data["n_vocab"]
    if data.get("kind") == "char" and isinstance(data.get("chars"), str):
        return len(data["chars"]) + (1 if data.get("unknown") == "replace" else 0)
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("vocab"), (dict, list)):  # a Hugging Face tokenizer.json
        from engine.tokenizers.hf import HFTokenizer

        return HFTokenizer.from_file(path).n_vocab
    raise UserError(f"{path} is not a saved character or BPE tokenizer, nor a Hugging Face tokenizer.json")


def estimate_params(model: "dict[str, Any] | Any", vocab_size: int) -> int:
    """Parameters of the model a config builds (counted on the meta device: no memory is allocated).

    ``model`` is a GPTConfig or a dict of its fields (other keys, such as a training config's, are ignored);
    ``vocab_size`` replaces its vocabulary. Raises ValueError for a config the model family refuses.
    """
    import torch

    from engine.model import GPT, GPTConfig

    if isinstance(model, GPTConfig):
        fields = model.to_dict()
    else:
        names = set(GPTConfig.__dataclass_fields__)
        fields = {k: v for k, v in dict(model).items() if k in names}
    config = GPTConfig(**{**fields, "vocab_size": vocab_size, "dropout": 0.0})
    key = repr(config)  # every field: the form asks again for every check, mostly about the same model
    if key not in _PARAM_COUNTS:
        if len(_PARAM_COUNTS) >= 64:
            _PARAM_COUNTS.clear()
        with torch.device("meta"):
            _PARAM_COUNTS[key] = GPT(config).num_params()
    return _PARAM_COUNTS[key]


_PARAM_COUNTS: dict[str, int] = {}
