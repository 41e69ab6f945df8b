"""A GPT-2 style decoder-only transformer with learned, RoPE or ALiBi positions and a KV cache.

Usable by the trainer and the app: ``GPT(config)`` trains with ``model(idx, targets)`` and decodes incrementally with
``model(new_ids, cache=cache)``; ``optimizer_groups`` gives AdamW weight-decay groups.

    >>> import torch
    >>> from engine.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32))
    >>> logits, loss = model(torch.zeros(1, 5, dtype=torch.long))
    >>> logits.shape
    torch.Size([1, 5, 65])

Positions:
    "learned"  absolute position embeddings (GPT-2); cannot run past ``block_size``: a clear ValueError.
    "rope"     rotary embeddings applied to q and k (GPT-NeoX "rotate half" layout), tables computed per call for the
               positions used, so any length works.
    "alibi"    no position embedding; a per-head linear distance penalty added to the attention scores, computed per
               call, so any length works.
``block_size`` only says how long the training contexts were (and sizes the learned table).
"""

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch.nn import functional as F

POSITIONS = ("learned", "rope", "alibi")


@dataclass
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    block_size: int = 256  # training context length (and the size of the learned position table)
    n_layer: int = 4  # transformer blocks: small enough to train on a laptop CPU
    n_head: int = 4  # attention heads; n_embd must divide evenly among them
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # 0 for pre-training on lots of data; try 0.1-0.2 when overfitting a small corpus
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    pos: str = "learned"  # position scheme: "learned" | "rope" | "alibi"
    tie_weights: bool = True  # share the token embedding with the output head (GPT-2 does; saves vocab*n_embd params)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"GPTConfig.{name} must be an integer, got {value!r}")
            if value <= 0:
                raise ValueError(f"GPTConfig.{name} must be > 0, got {value}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        if self.pos not in POSITIONS:
            raise ValueError(f"GPTConfig.pos must be one of {', '.join(POSITIONS)}; got {self.pos!r}")
        if self.pos == "rope" and self.head_size % 2:
            raise ValueError(f"RoPE needs an even head size; n_embd / n_head = {self.head_size}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Build a config from ``to_dict()`` output; unknown keys raise ValueError (a typo is not silently dropped)."""
        if not isinstance(d, dict):
            raise ValueError(f"a model config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(map(str, unknown))}")
        return cls(**d)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, for incremental decoding.

    Storage per layer is a (B, nh, capacity, hs) buffer that doubles when full; ``length`` tokens of it are valid.
    ``truncate(n)`` forgets everything after the first ``n`` tokens (undo) without copying.
    """

    def __init__(self, n_layer: int, batch_size: int = 1, max_len: int | None = None):
        self.n_layer = n_layer
        self.batch_size = batch_size
        self.capacity = max_len or 0  # buffers are allocated on first use, when device and dtype are known
        self.length = 0
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new k, v (B, nh, T, hs) at positions [length, length+T); return all keys/values so far."""
        B, nh, T, hs = k.shape
        if B != self.batch_size:
            raise ValueError(f"this KV cache is for batch size {self.batch_size}, got {B}")
        end = self.length + T
        buf = self.k[layer]
        if buf is None or end > buf.size(2) or buf.dtype != k.dtype or buf.device != k.device:
            capacity = max(end, self.capacity, 2 * (buf.size(2) if buf is not None else 0), 16)
            self.capacity = capacity
            for store, new in ((self.k, k), (self.v, v)):
                grown = new.new_zeros(B, nh, capacity, hs)
                if store[layer] is not None and self.length:
                    grown[:, :, :self.length] = store[layer][:, :, :self.length].to(new)
                store[layer] = grown
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def truncate(self, n: int):
        """Keep only the first n tokens (0 <= n <= length)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a KV cache of length {self.length} to {n}")
        self.length = n

    def reset(self):
        self.length = 0


def rope_tables(positions: torch.Tensor, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (T, hs) for absolute positions (T,), base 10000, in float32."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32)
                                / head_size))  # (hs/2,)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + hs/2) of x (B, nh, T, hs) by the position angles."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Per-head slopes (nh,): the geometric series 2^(-8/n), ... of the ALiBi paper (interleaved for non powers of 2).

    4 heads -> [0.25, 0.0625, 0.0156, 0.0039]
    """
    def power_of_2(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        slopes = power_of_2(n_head)
    else:
        closest = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][:n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, start: int, T: int, device) -> torch.Tensor:
    """Additive attention bias (1, nh, T, start+T): -slope * distance to each earlier key, -inf for future keys."""
    q_pos = torch.arange(start, start + T, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(start + T, device=device)[None, :]  # (1, S)
    distance = (q_pos - k_pos).float()  # (T, S), >= 0 where allowed
    bias = -slopes.to(device)[:, None, None] * distance  # (nh, T, S)
    bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias.unsqueeze(0)


def causal_mask(start: int, T: int, device) -> torch.Tensor:
    """Boolean mask (T, start+T): new token i (at absolute position start+i) sees keys 0..start+i."""
    q_pos = torch.arange(start, start + T, device=device)[:, None]
    k_pos = torch.arange(start + T, device=device)[None, :]
    return k_pos <= q_pos


class CausalSelfAttention(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, *, rope=None, bias=None, start=0, cache=None, layer=0, return_attention=False):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, S, hs) with S = start + T

        # the mask: an additive float bias for ALiBi (includes the causal -inf), else causal
        mask, is_causal = None, False
        if bias is not None:
            mask = bias.to(q.dtype)
        elif start == 0:
            is_causal = T > 1
        elif T > 1:
            mask = causal_mask(start, T, x.device)  # new tokens see the cache and themselves, not later new tokens

        attn = None
        if return_attention:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
            if mask is not None:
                att = att + mask if mask.dtype != torch.bool else att.masked_fill(~mask, float("-inf"))
            elif is_causal:
                att = att.masked_fill(~causal_mask(0, T, x.device), float("-inf"))
            att = F.softmax(att.float(), dim=-1).to(q.dtype)
            attn = att[:, :, -1, :].detach()  # (B, nh, S): what the last position attends to
            if self.training and self.dropout:
                att = F.dropout(att, p=self.dropout)
            y = att @ v  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): re-assemble the heads
        return self.resid_dropout(self.c_proj(y)), attn


class MLP(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, **attn_kwargs):
        a, attn = self.attn(self.ln_1(x), **attn_kwargs)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, attn


class GPT(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if config.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        if config.pos == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)

        # GPT-2 init: N(0, 0.02) everywhere, residual projections scaled down by 1/sqrt(2 * n_layer)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied head counts once); non_embedding leaves out token/position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        return KVCache(self.config.n_layer, batch_size, max_len)

    def forward(self, idx, targets=None, *, cache: KVCache | None = None, return_attention: bool = False,
                last_only: bool = False):
        """idx (B, T) token ids -> (logits (B, T, V), loss or None) [, attention list].

        targets (B, T): next-token ids, -1 to ignore; gives the mean cross-entropy loss.
        cache: holds the keys/values of the tokens before idx; idx are only the new tokens and their positions
            continue at cache.length. The cache is extended by T.
        return_attention: also return, per layer, the attention weights (B, nh, S) of the last position over all
            S keys it sees (computed explicitly instead of with scaled_dot_product_attention).
        last_only: compute logits for the last position only, (B, 1, V): what decoding needs.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be a (batch, time) tensor of token ids, got shape {tuple(idx.shape)}")
        if idx.dtype not in (torch.long, torch.int):
            raise ValueError(f"idx must hold integer token ids, got {idx.dtype}")
        B, T = idx.size()
        if T == 0:
            raise ValueError("idx is empty: at least one token is needed")
        if targets is None and not self.training:  # inference input: say which id is bad (training data is checked)
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.config.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token id {bad} is outside the model's vocabulary (0..{self.config.vocab_size - 1})")
        start = cache.length if cache is not None else 0
        cfg = self.config
        device = idx.device

        x = self.transformer.wte(idx)  # (B, T, C)
        rope = bias = None
        if cfg.pos == "learned":
            if start + T > cfg.block_size:
                raise ValueError(f"this model uses learned positions and was built for at most {cfg.block_size} "
                                 f"tokens (block_size); got {start + T}. Use a shorter context "
                                 f"(or a rope/alibi model, which can run longer)")
            pos = torch.arange(start, start + T, dtype=torch.long, device=device)  # (T,)
            x = x + self.transformer.wpe(pos)  # (B, T, C) + (T, C)
        elif cfg.pos == "rope":
            rope = rope_tables(torch.arange(start, start + T, device=device), cfg.head_size)  # 2 x (T, hs)
        else:
            bias = alibi_bias(self.alibi_slopes, start, T, device)  # (1, nh, T, S)
        x = self.transformer.drop(x)

        attentions = []
        for i, block in enumerate(self.transformer.h):
            x, attn = block(x, rope=rope, bias=bias, start=start, cache=cache, layer=i,
                            return_attention=return_attention)
            attentions.append(attn)
        if cache is not None:
            cache.length = start + T
        x = self.transformer.ln_f(x)

        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            if last_only:
                raise ValueError("targets need logits for every position; do not pass last_only")
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if return_attention:
            return logits, loss, attentions
        return logits, loss

    @torch.no_grad()
    def next_logits(self, ids) -> torch.Tensor:
        """Next-token logits (V,) float32 on the CPU after ids, from a full forward over the last block_size ids."""
        ids = list(ids)[-self.config.block_size:]
        if not ids:
            raise ValueError("next_logits needs at least one token id")
        device = next(self.parameters()).device
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        logits, _ = self(idx, last_only=True)
        return logits[0, -1].float().cpu()

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: matrices and embeddings (dim >= 2) decay; biases and LayerNorm gains do not."""
        params = [p for p in self.parameters() if p.requires_grad]  # parameters() lists a tied weight once
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
