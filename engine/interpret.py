"""Inside the model: what happens between the token ids going in and the probabilities coming out. Pure functions.

One forward pass, watched through hooks (the model's own computation is untouched, so its logits do not change),
gives every position's next-token prediction, the residual stream after every block and each layer's attention
weights; the embedding helpers read the weight tables. They work for every model the engine builds: our GPT with
learned, RoPE or ALiBi positions, and imported GPT-2, Llama and Qwen2 (one family, see ``engine.model``).

    >>> import torch
    >>> from engine.model import GPT, GPTConfig
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    >>> ids = [3, 1, 4, 1, 5, 9, 2, 6]
    >>> token_losses(model, ids).shape          # the loss of each next token given all before it
    torch.Size([7])
    >>> attention_maps(model, ids)[0].shape     # layer 0: (heads, queries, keys)
    torch.Size([2, 8, 8])
    >>> logit_lens(model, ids).shape            # (layers, positions, vocabulary)
    torch.Size([2, 8, 50])
"""

import math
import threading
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F

from engine.model import GPT

GLTR_BUCKETS = (1, 10, 100, 1000)  # rank bounds of GLTR's colours: top 1, top 10, top 100, top 1000, the rest
CHUNK = 256  # positions per slice when a (positions x vocabulary) tensor would be large


def _check_ids(ids) -> list[int]:
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("at least one token id is needed")
    return ids


def _device(model):
    return next(model.parameters()).device


def context_window(ids, block_size: int) -> int:
    """Index of the first id the model sees: the last ``block_size`` ids, as the Generation pane slides its window.

    >>> context_window(range(300), 128)
    172
    """
    return max(0, len(ids) - block_size)


# -- one forward pass, observed ---------------------------------------------------------------------------------


@dataclass
class Trace:
    """What one forward pass over ``ids`` computed, read off through hooks. Row t is position t."""
    model: GPT
    ids: list[int]
    logits: torch.Tensor  # (T, V) float32: the model's output, unchanged by the watching
    residuals: list[torch.Tensor]  # n_layer x (T, C) float32: the residual stream after each block
    hidden: torch.Tensor  # (T, C) float32: the final norm's output, which the head turns into logits
    attention_inputs: list[tuple]  # per layer (x (1, T, C), rope, bias): what its attention received

    def attention(self, layer: int) -> torch.Tensor:
        """Layer ``layer``'s attention weights (n_head, T, T) float32 on the CPU: rows sum to 1, causal."""
        if not 0 <= layer < len(self.attention_inputs):
            raise ValueError(f"layer {layer} does not exist (the model has {len(self.attention_inputs)})")
        x, rope, bias = self.attention_inputs[layer]
        attn = self.model.blocks[layer].attn
        return attn.probabilities(x, rope=rope, bias=bias)[0].float().cpu()

    def without_logits(self) -> "Trace":
        """This trace less its (T, V) logits (200 MB for GPT-2 at 1024 tokens), to keep once they are scored:
        ``lens_at`` and ``head_view`` compute what they need from ``hidden``."""
        return replace(self, logits=self.logits[:0])


@torch.no_grad()
def trace(model, ids) -> Trace:
    """Run the model once over ``ids`` (in eval mode) and keep what each part computed."""
    ids = _check_ids(ids)
    idx = torch.tensor([ids], dtype=torch.long, device=_device(model))
    blocks = model.transformer.h
    residuals: list = [None] * len(blocks)
    inputs: list = [None] * len(blocks)
    hidden: list = []

    # The hooks only record this thread's pass: an app may run the same model in another thread meanwhile (the
    # Generation pane steps it while the Inside pane reads it), and that pass fires the same hooks.
    me = threading.get_ident()

    def keep_residual(i):
        def hook(module, args, output):
            if threading.get_ident() == me:
                residuals[i] = output[0][0].float()
        return hook

    def keep_input(i):
        def hook(module, args, kwargs):
            if threading.get_ident() == me:
                inputs[i] = (args[0], kwargs.get("rope"), kwargs.get("bias"))
        return hook

    def keep_hidden(module, args, output):
        if threading.get_ident() == me:
            hidden.append(output[0].float())

    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_hook(keep_residual(i)))
        handles.append(block.attn.register_forward_pre_hook(keep_input(i), with_kwargs=True))
    handles.append(model.transformer.ln_f.register_forward_hook(keep_hidden))
    was_training = model.training
    if was_training:  # dropout off; an eval model (shared with other threads) is left as it is
        model.eval()
    try:
        logits, _ = model(idx)
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    return Trace(model, ids, logits[0].float(), residuals, hidden[0], inputs)


# -- every position predicts --------------------------------------------------------------------------------------


@torch.no_grad()
def token_losses(model, ids) -> torch.Tensor:
    """Cross-entropy (T-1,) in nats of each next token given all before it; its mean is the training loss.

    ValueError for fewer than two ids (nothing to predict).
    """
    ids = _check_ids(ids)
    if len(ids) < 2:
        raise ValueError("a loss needs at least two tokens: one to read and one to predict")
    return predictions(trace(model, ids).logits, ids, k=1).losses


@dataclass
class Predictions:
    """Each position's next-token prediction, scored against the token that came next.

    Position t predicts token t+1, so the scored arrays have T-1 entries; the top-k has T rows (the last row is the
    model's guess after the text).
    """
    losses: torch.Tensor  # (T-1,) nats: -log p(true next token)
    probs: torch.Tensor  # (T-1,) p(true next token)
    ranks: torch.Tensor  # (T-1,) long: 1 + how many tokens the model rated above the true one
    top_ids: torch.Tensor  # (T, k) long, most likely first
    top_probs: torch.Tensor  # (T, k)
    entropy: torch.Tensor  # (T,) nats: how unsure the model is at each position

    @property
    def mean_loss(self) -> float:
        return float(self.losses.mean()) if self.losses.numel() else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)

    def bits_per_char(self, n_chars: int) -> float:
        """Total loss in bits over the characters the scored tokens spell (ids 1..T-1 decoded)."""
        if n_chars <= 0:
            return math.nan
        return float(self.losses.sum()) / math.log(2) / n_chars

    def buckets(self) -> torch.Tensor:
        """(T-1,) GLTR bucket of each true token: 0 = top 1, 1 = top 10, 2 = top 100, 3 = top 1000, 4 = the rest."""
        return torch.bucketize(self.ranks, torch.tensor(GLTR_BUCKETS), right=False)


@torch.no_grad()
def predictions(logits: torch.Tensor, ids, k: int = 5) -> Predictions:
    """Score logits (T, V) of ``ids`` (T,) against the ids themselves; ``k`` predictions kept per position."""
    ids = _check_ids(ids)
    T, V = logits.shape
    if T != len(ids):
        raise ValueError(f"{T} rows of logits for {len(ids)} ids")
    k = max(1, min(int(k), V))
    target = torch.tensor(ids[1:] + [0], dtype=torch.long, device=logits.device)  # the last row has no target
    losses, probs, ranks, top_ids, top_probs, entropy = [], [], [], [], [], []
    for s in range(0, T, CHUNK):  # (CHUNK, V) slices keep memory flat on a 50k vocabulary
        rows = logits[s:s + CHUNK].float()
        logp = F.log_softmax(rows, dim=-1)
        t = target[s:s + CHUNK]
        true_logp = logp.gather(1, t[:, None])[:, 0]
        losses.append(-true_logp)
        probs.append(true_logp.exp())
        ranks.append((rows > rows.gather(1, t[:, None])).sum(-1) + 1)
        tp, ti = logp.topk(k, dim=-1)
        top_ids.append(ti)
        top_probs.append(tp.exp())
        entropy.append(-(logp.exp() * logp).nan_to_num().sum(-1))
    cat = lambda xs: torch.cat(xs).cpu()  # noqa: E731
    return Predictions(cat(losses)[:-1], cat(probs)[:-1], cat(ranks)[:-1], cat(top_ids), cat(top_probs),
                       cat(entropy))


# -- attention, the lens and the head -------------------------------------------------------------------------------


def attention_maps(model, ids) -> list[torch.Tensor]:
    """Per layer, the attention weights (n_head, T, T) the model computes over ``ids``: query rows, key columns."""
    t = trace(model, ids)
    return [t.attention(i) for i in range(len(t.residuals))]


@torch.no_grad()
def lens_logits(model, residual: torch.Tensor) -> torch.Tensor:
    """A residual stream (T, C) put through the final norm and the head -> logits (T, V) float32."""
    head = model.lm_head
    x = residual.to(head.weight.dtype)
    return head(model.transformer.ln_f(x)).float()


@torch.no_grad()
def logit_lens(model, ids) -> torch.Tensor:
    """(n_layer, T, V): each block's residual stream read as if it were the last; layer n_layer-1 is the logits."""
    t = trace(model, ids)
    return torch.stack([lens_logits(model, r) for r in t.residuals]).cpu()


@dataclass
class Lens:
    """The logit lens at some positions: per layer and position, its top token and the final choice's chance."""
    positions: list[int]
    top_ids: torch.Tensor  # (n_layer, P) long: the top token if the model stopped after this layer
    top_probs: torch.Tensor  # (n_layer, P)
    final_probs: torch.Tensor  # (n_layer, P): probability of the last layer's top token (the final choice)


LENS_ROWS = 384  # (layer, position) rows per matrix product in lens_at: the head's weights are read once per slice


@torch.no_grad()
def lens_at(t: Trace, positions) -> Lens:
    """The logit lens of a trace at ``positions`` only (a 50k vocabulary times every position and layer is large).

    Every (layer, position) row goes through the final norm and the head in a few large matrix products: one small
    product per layer would read the head's whole weight matrix (150 MB on GPT-2) once per layer. The last layer is
    the head on the final norm's output, the model's own logits.
    """
    positions = [int(p) for p in positions]
    if any(not 0 <= p < len(t.ids) for p in positions):
        raise ValueError(f"positions must lie in 0..{len(t.ids) - 1}")
    L, P = len(t.residuals), len(positions)
    head = t.model.lm_head
    logits = head(t.hidden[positions].to(head.weight.dtype)).float()  # (P, V): the model's logits there
    final = logits.argmax(-1)  # (P,)
    tops: list[torch.Tensor] = []
    top_probs: list[torch.Tensor] = []
    final_probs: list[torch.Tensor] = []
    rows = torch.cat([r[positions] for r in t.residuals[:-1]]) if L > 1 else t.hidden[:0]  # ((L-1) P, C)
    finals = final.repeat(L - 1)
    for s in range(0, rows.size(0), LENS_ROWS):
        tops_s, probs_s, finals_s = _lens_rows(lens_logits(t.model, rows[s:s + LENS_ROWS]), finals[s:s + LENS_ROWS])
        tops.append(tops_s)
        top_probs.append(probs_s)
        final_probs.append(finals_s)
    last = _lens_rows(logits, final)
    shape = lambda xs, extra: torch.cat(xs + [extra]).reshape(L, P).cpu()  # noqa: E731
    return Lens(positions, shape(tops, last[0]), shape(top_probs, last[1]), shape(final_probs, last[2]))


def _lens_rows(logits: torch.Tensor, final: torch.Tensor):
    """Logits (R, V), the final choice (R,) -> top id, its probability, the final choice's probability (each (R,))."""
    lse = torch.logsumexp(logits, dim=-1)
    top, top_id = logits.max(-1)
    return top_id, (top - lse).exp(), (logits.gather(1, final[:, None])[:, 0] - lse).exp()


@dataclass
class HeadView:
    """The last step at one position: hidden state -> logits (the head's matrix product) -> softmax."""
    position: int
    hidden: torch.Tensor  # (C,) the final norm's output
    logits: torch.Tensor  # (V,) float32
    probs: torch.Tensor  # (V,)
    top_ids: torch.Tensor  # (k,) by probability

    @property
    def logsumexp(self) -> float:
        return float(torch.logsumexp(self.logits, 0))


@torch.no_grad()
def head_view(t: Trace, position: int, k: int = 10) -> HeadView:
    """Run the head on the hidden state at ``position``; the logits equal ``t.logits[position]``."""
    if not 0 <= position < len(t.ids):
        raise ValueError(f"position {position} is outside 0..{len(t.ids) - 1}")
    head = t.model.lm_head
    h = t.hidden[position]
    logits = head(h.to(head.weight.dtype)[None])[0].float().cpu()
    probs = F.softmax(logits, dim=-1)
    return HeadView(position, h.cpu(), logits, probs, probs.topk(min(k, probs.numel())).indices)


# -- embeddings and positions ---------------------------------------------------------------------------------------


def _table(model, n_valid: int | None) -> torch.Tensor:
    w = model.transformer.wte.weight.detach().float().cpu()
    return w[:n_valid] if n_valid else w


@torch.no_grad()
def nearest_tokens(model, token_id: int, k: int = 10, n_valid: int | None = None) -> list[tuple[int, float]]:
    """The ``k`` tokens whose embeddings are closest to ``token_id``'s by cosine similarity, most similar first.

    ``n_valid`` leaves out padding rows past the tokenizer's vocabulary.
    """
    w = _table(model, n_valid)
    if not 0 <= token_id < w.size(0):
        raise ValueError(f"token id {token_id} is outside the embedding table (0..{w.size(0) - 1})")
    cos = F.cosine_similarity(w, w[token_id][None], dim=-1)
    cos[token_id] = -math.inf
    k = max(0, min(k, w.size(0) - 1))
    values, ids = cos.topk(k)
    return [(int(i), float(v)) for i, v in zip(ids, values)]


@torch.no_grad()
def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of x (N, C) projected on their two principal axes -> (coordinates (N, 2), explained variance (2,)).

    Each axis's sign is fixed so that its largest-magnitude loading is positive: the same input, the same picture.
    """
    x = x.float()
    centred = x - x.mean(0, keepdim=True)
    cov = (centred.T.double() @ centred.double()) / max(1, x.size(0) - 1)  # (C, C)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    axes = vectors[:, -2:].flip(1)  # (C, 2), largest first
    signs = torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    axes = axes * signs
    total = float(values.clamp(min=0).sum()) or 1.0
    return (centred.double() @ axes).float(), (values[-2:].flip(0).clamp(min=0) / total).float()


def embedding_pca(model, n_valid: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D PCA of the token embedding table -> (coordinates (V, 2), share of variance on each axis)."""
    return pca_2d(_table(model, n_valid))


def _needs(model, pos: str, what: str):
    if model.config.pos != pos:
        raise ValueError(f"{what} exists only for {pos} positions; this model uses {model.config.pos}")


@torch.no_grad()
def position_similarity(model) -> torch.Tensor:
    """(block_size, block_size): cosine similarity between the learned position embeddings."""
    _needs(model, "learned", "a learned position table")
    w = model.transformer.wpe.weight.detach().float().cpu()
    w = F.normalize(w, dim=-1)
    return w @ w.T


@torch.no_grad()
def rope_angles(model, n_positions: int) -> torch.Tensor:
    """(n_positions, head_size / 2) radians: how far RoPE turns frequency pair j of q and k at each position."""
    _needs(model, "rope", "a rotary angle table")
    inv_freq = model.rope_inv_freq.detach().float().cpu()
    return torch.arange(n_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]


@torch.no_grad()
def alibi_biases(model, n_positions: int) -> torch.Tensor:
    """(n_head, T, T): what ALiBi adds to each head's attention scores; -inf above the diagonal (the future)."""
    _needs(model, "alibi", "an ALiBi bias")
    from engine.positions import alibi_bias
    return alibi_bias(model.alibi_slopes.detach().float().cpu(), 0, n_positions, "cpu")[0]
