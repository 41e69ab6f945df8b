"""LLM Playground engine: tokenizers, the causal transformer, decoding, data and training.

Pure Python + torch; never imports Qt. Names are loaded lazily so that ``import engine`` stays cheap (torch is only
imported when a model-side name is first used)::

    >>> import engine
    >>> enc = engine.get_tokenizer("gpt2")
    >>> enc.encode("Hello world")
    [15496, 995]
"""

from importlib import import_module

# public name -> module that defines it
_EXPORTS = {
    "get_tokenizer": "engine.tokenizers",
    "tokenizer_from_dict": "engine.tokenizers",
    "Tokenizer": "engine.tokenizers",
    "TokenSpan": "engine.tokenizers",
    "ENCODINGS": "engine.tokenizers",
    "corpora": "engine.corpora",
    "load_corpus": "engine.corpora",
    "CorpusError": "engine.corpora",
    "GPT": "engine.model",
    "GPTConfig": "engine.model",
    "load_model": "engine.checkpoint",
    "save_model": "engine.checkpoint",
    "hub_models": "engine.hub",
    "load_hf_model": "engine.hf",
    "HFModelError": "engine.hf",
    "render_chat": "engine.chat",
    "CheckpointError": "engine.checkpoint",
    "DecodeSettings": "engine.decoding",
    "GenerationSession": "engine.session",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return __all__
