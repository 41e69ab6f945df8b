"""How much memory a training run needs, estimated before anything is built, so an absurd size is refused in one
line (``n_layer=100000``, ``batch_size=1e9``) instead of swapping the machine to a halt or being killed by the OS::

    memory_problem(config, vocab_size=65, memory=16 * 2**30)   # None, or the sentence that refuses it

The figure is a lower bound, so a refusal is always right: float32 weights, gradients and AdamW's two moments (16
bytes per parameter), plus the activations one micro-batch keeps for the backward pass (Korthikanti et al. 2022,
sbh(34 + 5as/h) bytes per layer, counted at 2 bytes an element) and the logits (kept, softmaxed, and their gradient),
in every process on this machine. ``engine.train.config.problems`` asks it, so the form and the CLI refuse alike.
"""


def _lower_bound_params(config, vocab_size: int) -> int:
    """Parameters the model has at least, without building it: the embedding and each block's query and output
    projections (d x d each, whatever the attention's grouping or the MLP's kind)."""
    return vocab_size * config.n_embd + config.n_layer * 2 * config.n_embd ** 2


def training_memory(config, vocab_size: int, params: int, world_size: int = 1) -> int:
    """Bytes all world_size processes need at least to train config (see the module doc)."""
    b = max(1, config.batch_size // max(1, world_size))
    s, h, a = config.block_size, config.n_embd, config.n_head
    activations = config.n_layer * s * b * h * (34 + 5 * a * s / h)
    logits = 3 * 4 * b * s * vocab_size
    return int(16 * params + activations + logits) * max(1, world_size)


def memory_problem(config, vocab_size: int, memory: int | None, world_size: int = 1) -> str | None:
    """The sentence refusing config when training it cannot fit in memory bytes (None: unknown, or it fits).

    An absurd model is refused from a lower bound of its size, before even its meta-device shape is built (100 000
    layers take minutes to describe); a plausible one is counted exactly (engine.choices.estimate_params)."""
    if not memory:
        return None
    params = _lower_bound_params(config, vocab_size)
    if training_memory(config, vocab_size, params, world_size) <= memory:
        from engine.choices import estimate_params
        from engine.train.config import model_config

        params = estimate_params(model_config(config, vocab_size), vocab_size)
    need = training_memory(config, vocab_size, params, world_size)
    if need <= memory:
        return None
    return (f"the model has about {_count(params)} parameters: training it with batch_size {config.batch_size} and "
            f"block_size {config.block_size} needs at least {_size(need)} (weights, gradients, optimizer state and "
            f"activations), more than the {memory / 2**30:,.1f} GiB of memory here; choose a smaller width, fewer "
            f"layers, a smaller batch or a smaller vocabulary")


def _size(n: float) -> str:
    for unit, div in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def _count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:,.1f} B"
    return f"{n / 1e6:,.0f} M" if n >= 1e6 else f"{n:,}"
