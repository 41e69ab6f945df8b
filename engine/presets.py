"""Named training configurations and model sizes.

A training preset is a dict of TrainConfig fields applied over the defaults (then a config file, then key=value
overrides)::

    >>> preset("shakespeare-char-cpu")["n_layer"]
    4
    >>> MODEL_SIZES["small"]
    {'n_layer': 4, 'n_head': 4, 'n_embd': 128}

"shakespeare-char-cpu" is nanoGPT's documented CPU run of its shakespeare_char config (README, "I only have a
macbook"): its published result, validation loss about 1.88-1.89 after 2000 iterations, is what bench/ compares to.
"""

# Model sizes the app offers: name -> architecture fields.
MODEL_SIZES = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64},  # trains in seconds; for trying things out
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 128},  # nanoGPT's CPU shakespeare-char model (~0.8 M params)
    "medium": {"n_layer": 6, "n_head": 6, "n_embd": 384},  # nanoGPT's GPU shakespeare-char model (~10.7 M params)
    "gpt2-small": {"n_layer": 12, "n_head": 12, "n_embd": 768},  # GPT-2 124M's shape
}

TRAIN_PRESETS = {
    # A few seconds on a CPU: smoke tests and trying the app.
    "tiny": {
        "tokenizer": "char", **MODEL_SIZES["tiny"], "block_size": 32, "dropout": 0.0,
        "batch_size": 8, "grad_accum": 1, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 10,
        "max_iters": 100, "lr_decay_iters": 100, "eval_interval": 50, "eval_iters": 5, "sample_len": 64,
        "checkpoint_interval": 50,
    },
    # nanoGPT: python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
    #   --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
    #   --lr_decay_iters=2000 --dropout=0.0   (the rest from config/train_shakespeare_char.py and train.py defaults)
    "shakespeare-char-cpu": {
        "corpus": "shakespeare", "tokenizer": "char", **MODEL_SIZES["small"], "block_size": 64, "dropout": 0.0,
        "bias": False, "batch_size": 12, "grad_accum": 1, "lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99,
        "weight_decay": 0.1, "grad_clip": 1.0, "warmup_iters": 100, "max_iters": 2000, "lr_decay_iters": 2000,
        "eval_interval": 250, "eval_iters": 20, "checkpoint_interval": 250, "sample_len": 200,
    },
    # nanoGPT's config/train_shakespeare_char.py as is: a GPU run (~10 M params, context 256).
    "shakespeare-char": {
        "corpus": "shakespeare", "tokenizer": "char", **MODEL_SIZES["medium"], "block_size": 256, "dropout": 0.2,
        "bias": False, "batch_size": 64, "grad_accum": 1, "lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99,
        "weight_decay": 0.1, "grad_clip": 1.0, "warmup_iters": 100, "max_iters": 5000, "lr_decay_iters": 5000,
        "eval_interval": 250, "eval_iters": 200, "checkpoint_interval": 500, "sample_len": 300,
    },
    # The CPU run above as a Llama-style model: RMSNorm, a SwiGLU MLP, rotary positions, grouped-query attention
    # (2 key/value heads for 4 query heads), no biases.
    "llama-char-cpu": {
        "corpus": "shakespeare", "tokenizer": "char", **MODEL_SIZES["small"], "block_size": 64, "dropout": 0.0,
        "bias": False, "norm": "rmsnorm", "mlp": "swiglu", "pos": "rope", "n_kv_head": 2, "rope_theta": 10000.0,
        "batch_size": 12, "grad_accum": 1, "lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99,
        "weight_decay": 0.1, "grad_clip": 1.0, "warmup_iters": 100, "max_iters": 2000, "lr_decay_iters": 2000,
        "eval_interval": 250, "eval_iters": 20, "checkpoint_interval": 250, "sample_len": 200,
    },
    # A small model over the GPT-2 byte-level BPE vocabulary (50257 tokens): words instead of characters.
    "bpe-small": {
        "corpus": "shakespeare", "tokenizer": "gpt2", **MODEL_SIZES["small"], "block_size": 128, "dropout": 0.1,
        "batch_size": 16, "grad_accum": 2, "lr": 6e-4, "min_lr": 6e-5, "beta2": 0.95,
        "weight_decay": 0.1, "grad_clip": 1.0, "warmup_iters": 100, "max_iters": 3000, "lr_decay_iters": 3000,
        "eval_interval": 250, "eval_iters": 20, "checkpoint_interval": 500, "sample_len": 100,
    },
}


def preset(name: str) -> dict:
    """A copy of the training preset's fields; ValueError naming the known presets for an unknown name."""
    try:
        return dict(TRAIN_PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(TRAIN_PRESETS)}") from None


def model_size(name: str) -> dict:
    """A copy of the model size's architecture fields; ValueError for an unknown name."""
    try:
        return dict(MODEL_SIZES[name])
    except KeyError:
        raise ValueError(f"unknown model size {name!r}; known sizes: {', '.join(MODEL_SIZES)}") from None
