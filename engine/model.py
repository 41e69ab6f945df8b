"""One decoder-only transformer family, described by its config: our GPT, GPT-2, Llama and Qwen2 are points of it.

Usable by the trainer and the app: ``GPT(config)`` trains with ``model(idx, targets)`` and decodes incrementally with
``model(new_ids, cache=cache)``; ``optimizer_groups`` gives AdamW weight-decay groups.

    >>> import torch
    >>> from engine.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32))
    >>> logits, loss = model(torch.zeros(1, 5, dtype=torch.long))
    >>> logits.shape
    torch.Size([1, 5, 65])

The axes along which the family varies (litgpt's approach: one model, the config says which variant):
    norm      "layernorm" (GPT-2, with a bias when ``bias``) | "rmsnorm" (Llama, Qwen2), epsilon ``norm_eps``
    mlp       "gelu" (GPT-2: fc -> GELU -> proj, ``gelu_approximate`` "none" | "tanh") |
              "swiglu" (Llama: proj(silu(gate(x)) * up(x))), hidden width ``intermediate_size``
    heads     ``n_head`` query heads, ``n_kv_head`` key/value heads (grouped-query attention when fewer)
    biases    ``bias`` (norms and every Linear, GPT-2), or per part: ``qkv_bias`` (Qwen2), ``proj_bias``,
              ``mlp_bias``
    positions "learned" (GPT-2; cannot run past ``block_size``) | "rope" (rotary, base ``rope_theta``, optional
              ``rope_scaling`` such as Llama 3.1's) | "alibi" (a per-head distance penalty; any length)
    head      ``tie_weights``: the output head shares the token embedding, or has its own
Old config dicts (before these fields) get the defaults, which are our original GPT.

Interface the app's panes rely on, for every family: ``model.transformer.h`` (the blocks; a forward hook on block i
sees the residual stream after it as ``output[0]``), ``model.transformer.ln_f`` (final norm), ``model.lm_head``,
``model.transformer.wte``, ``model.config``, ``model(idx, return_attention=True)`` giving per-layer attention of
the last position, per query head, and ``block.attn.probabilities(x, rope=..., bias=...)`` giving a whole layer's
attention weights from what a forward pre-hook on ``block.attn`` sees (``engine.interpret`` uses it).
"""

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import cast

import torch
import torch.nn as nn
from torch.nn import functional as F

from engine.dropout import Dropout, dropout
from engine.incremental import KVCache, keys_as_columns, one_query_attention
from engine.positions import (ROPE_SCALINGS, alibi_bias, alibi_slopes, apply_rope, causal_mask,  # noqa: F401
                              rope_inv_freq, rope_tables)

POSITIONS = ("learned", "rope", "alibi")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclass
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    block_size: int = 256  # training context length (and the size of the learned position table)
    n_layer: int = 4  # transformer blocks: small enough to train on a laptop CPU
    n_head: int = 4  # attention (query) heads; n_embd must divide evenly among them
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # 0 for pre-training on lots of data; try 0.1-0.2 when overfitting a small corpus
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    pos: str = "learned"  # position scheme: "learned" | "rope" | "alibi"
    tie_weights: bool = True  # share the token embedding with the output head (GPT-2 does; saves vocab*n_embd params)
    norm: str = "layernorm"  # "layernorm" (GPT-2) | "rmsnorm" (Llama: no mean, no bias, cheaper)
    norm_eps: float = 1e-5  # added to the variance in every norm (GPT-2 1e-5, Llama 1e-5 or 1e-6)
    mlp: str = "gelu"  # "gelu" (GPT-2) | "swiglu" (Llama: a gated MLP, three matrices)
    gelu_approximate: str = "none"  # "none" (exact erf GELU) | "tanh" (GPT-2's gelu_new)
    intermediate_size: int | None = None  # MLP hidden width; None: 4 * n_embd
    n_kv_head: int | None = None  # key/value heads; None: n_head. Fewer is grouped-query attention (Llama 3, Qwen2)
    qkv_bias: bool | None = None  # biases on q, k, v; None: follow `bias` (Qwen2: true with bias false)
    proj_bias: bool | None = None  # bias on the attention output projection; None: follow `bias`
    mlp_bias: bool | None = None  # biases in the MLP; None: follow `bias`
    rope_theta: float = 10000.0  # rotary base (Llama 3: 500000; larger means slower rotation, longer contexts)
    rope_scaling: dict | None = None  # e.g. Llama 3.1's {"rope_type": "llama3", "factor": 8.0, ...}; None: none

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_int(name, getattr(self, name))
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd if isinstance(self.n_embd, int) else self.n_embd
        _check_int("n_kv_head", self.n_kv_head)
        _check_int("intermediate_size", self.intermediate_size)
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"GPTConfig.n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        for name, allowed in (("pos", POSITIONS), ("norm", NORMS), ("mlp", MLPS),
                              ("gelu_approximate", ("none", "tanh"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.pos == "rope" and self.head_size % 2:
            raise ValueError(f"RoPE needs an even head size; n_embd / n_head = {self.head_size}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("qkv_bias", "proj_bias", "mlp_bias"):
            if getattr(self, name) is None:
                setattr(self, name, self.bias)
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("norm_eps", "rope_theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"GPTConfig.{name} must be a positive number, got {value!r}")
            setattr(self, name, float(value))
        if self.rope_scaling is not None:
            if not isinstance(self.rope_scaling, dict):
                raise ValueError(f"GPTConfig.rope_scaling must be a dict or None, got {self.rope_scaling!r}")
            try:
                rope_inv_freq(2, self.rope_theta, self.rope_scaling)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                raise ValueError(f"GPTConfig.rope_scaling is not usable ({type(e).__name__}: {e})") from None

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


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"GPTConfig.{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"GPTConfig.{name} must be > 0, got {value}")


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 and cast back (as Llama does, so bf16 matches)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def attends_in_float32(q: torch.Tensor) -> bool:
    """Whether a bf16 attention that autograd records runs in float32 instead: on the CPU, torch's flash attention
    is 2-5x slower forward + backward in bf16 than in float32 (casts included) at contexts under 256 or heads under 64
    wide, and the same or faster from there (2 threads, torch 2.13: (12, 4, 64, 32) 4.3 against 1.1 ms; (8, 6, 256, 64)
    14.5 against 17.3). Forward alone bf16 stays ahead (decoding, the Inside pane), so only training changes. q is
    (B, heads, T, head_size); float32 only adds precision."""
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.requires_grad
            and (q.size(-2) < 256 or q.size(-1) < 64))


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      is_causal: bool = False) -> torch.Tensor:
    """Softmax attention weights (B, nh, T, S) in float32, as scaled_dot_product_attention forms them inside.

    q (B, nh, T, hs); k (B, nkv, S, hs) with nkv dividing nh (each group of nh // nkv query heads reads one key
    head); mask None, bool (True: may attend) or additive; is_causal: query i sees keys 0..i (with T == S).
    """
    nh, nkv = q.size(1), k.size(1)
    if nkv != nh:
        k = k.repeat_interleave(nh // nkv, dim=1)
    att = (q * (1.0 / math.sqrt(q.size(-1)))) @ k.transpose(-2, -1)  # scaling q: fewer values than the scores
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    elif is_causal:
        att = att.masked_fill(~causal_mask(0, att.size(-2), q.device), float("-inf"))
    return F.softmax(att, dim=-1, dtype=torch.float32)


def drops_weights_itself(q: torch.Tensor) -> bool:
    """Whether attention with dropout forms its weights explicitly and drops them with engine.dropout's mask (on the
    CPU: torch's CPU SDPA forms them explicitly too when it drops, but draws its mask with the slow bernoulli_) rather
    than through SDPA's dropout_p (GPUs, whose fused kernels drop inside)."""
    return q.device.type == "cpu"


class CausalSelfAttention(nn.Module):
    """Multi-head attention with n_kv_head key/value heads shared by groups of query heads.

    ``c_attn`` computes q (n_head heads), k and v (n_kv_head heads each) in one matmul: its rows are
    [q | k | v], (n_head + 2 * n_kv_head) * head_size of them.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        # GPTConfig.__post_init__ replaced these Nones by their defaults
        assert config.n_kv_head is not None and config.qkv_bias is not None and config.proj_bias is not None
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_size = config.head_size
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        qkv = (config.n_head + 2 * config.n_kv_head) * config.head_size
        self.c_attn = nn.Linear(config.n_embd, qkv, bias=config.qkv_bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.proj_bias)
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x, *, rope=None, bias=None, start=0, cache=None, layer=0, return_attention=False):
        B, T, C = x.size()
        hs, nh, nkv = self.head_size, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split((nh * hs, nkv * hs, nkv * hs), dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, S, hs) with S = start + T

        # the mask: an additive float bias for ALiBi (includes the causal -inf), else causal
        mask, is_causal = None, False
        if bias is not None:
            mask = bias.to(q.dtype)
        elif start == 0:
            is_causal = T > 1
        elif T > 1:
            mask = causal_mask(start, T, x.device)  # new tokens see the cache and themselves, not later new tokens

        attn = None
        if cache is not None and T == 1 and keys_as_columns(q.dtype) and not return_attention \
                and not (self.training and self.dropout):
            y = one_query_attention(q, k, v, mask)
        else:
            dtype, in_float32 = q.dtype, attends_in_float32(q)
            if in_float32:
                q, k, v = q.float(), k.float(), v.float()
                mask = mask.float() if mask is not None and mask.is_floating_point() else mask  # bool stays bool
            p = self.dropout if self.training else 0.0
            with torch.autocast(x.device.type, enabled=False) if in_float32 else nullcontext():
                if return_attention or (p and drops_weights_itself(q)):  # explicit weights
                    att = attention_weights(q, k, mask, is_causal).to(q.dtype)
                    if return_attention:
                        attn = att[:, :, -1, :].detach().to(dtype)  # (B, nh, S): what the last position attends to
                    if nkv != nh:  # each group of nh/nkv query heads reads the same value head
                        v = v.repeat_interleave(nh // nkv, dim=1)
                    y = dropout(att, p, training=True) @ v  # (B, nh, T, hs)
                else:
                    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=p,
                                                       enable_gqa=nkv != nh)
            y = y.to(dtype)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): re-assemble the heads
        return self.resid_dropout(self.c_proj(y)), attn

    @torch.no_grad()
    def probabilities(self, x, *, rope=None, bias=None):
        """The attention weights (B, nh, T, T) a cache-less pass from position 0 gives x (this layer's normed input).

        ``rope`` and ``bias`` are what ``forward`` receives from the model. Row i is query i's softmax over keys
        0..i (zero above the diagonal). ``forward`` itself is untouched, so reading these changes no logits.
        """
        B, T, _ = x.size()
        hs, nh, nkv = self.head_size, self.n_head, self.n_kv_head
        q, k, _ = self.c_attn(x).split((nh * hs, nkv * hs, nkv * hs), dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # ALiBi's bias holds the causal -inf with its distance penalty
        return attention_weights(q.float(), k.float(), None if bias is None else bias.float(), is_causal=bias is None)


class MLP(nn.Module):
    """GELU: c_proj(gelu(c_fc(x))). SwiGLU: c_proj(silu(gate) * up) with [gate | up] = c_fc(x) in one matmul."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        hidden = config.intermediate_size
        assert hidden is not None and config.mlp_bias is not None  # GPTConfig.__post_init__ replaced the Nones
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden if self.swiglu else hidden, bias=config.mlp_bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.mlp_bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, **attn_kwargs):
        a, attn = self.attn(self.ln_1(x), **attn_kwargs)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, attn


class GPT(nn.Module):
    alibi_slopes: torch.Tensor  # buffers, registered in __init__ for the position scheme that uses them
    rope_inv_freq: torch.Tensor

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        ))
        if config.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = cast(nn.Embedding, self.transformer["wte"]).weight
        if config.pos == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
        if config.pos == "rope":
            self.register_buffer("rope_inv_freq", rope_inv_freq(config.head_size, config.rope_theta,
                                                                config.rope_scaling), persistent=False)

        # GPT-2 init: N(0, 0.02) everywhere, residual projections scaled down by 1/sqrt(2 * n_layer). Not on the meta
        # device (a shape only, for counting or loading weights into): there it has no values to fill and costs
        # ~2.5 ms a tensor through torch's reference ops, which made the form's parameter estimate stall the UI
        if not self.lm_head.weight.is_meta:
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
        elif isinstance(module, RMSNorm):
            torch.nn.init.ones_(module.weight)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied head counts once); non_embedding leaves out token/position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= cast(nn.Embedding, self.transformer["wte"]).weight.numel()
            if "wpe" in self.transformer:
                n -= cast(nn.Embedding, self.transformer["wpe"]).weight.numel()
        return n

    @property
    def blocks(self) -> Sequence[Block]:
        """The transformer blocks, typed (they are registered as transformer.h, the checkpoint's key names)."""
        return cast(Sequence[Block], self.transformer["h"])

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        return KVCache(self.config.n_layer, batch_size, max_len)

    def _apply(self, fn, recurse=True):
        # the rotary frequencies are derived, not learned: recompute them in float32 after any move or cast (a
        # .to(bfloat16) would round them; to_empty() would leave them uninitialised)
        out = super()._apply(fn, recurse)
        buf = getattr(self, "rope_inv_freq", None)
        if buf is not None and buf.device.type != "meta":
            self.rope_inv_freq = rope_inv_freq(self.config.head_size, self.config.rope_theta,
                                               self.config.rope_scaling).to(buf.device)
        return out

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

        x = self.transformer["wte"](idx)  # (B, T, C)
        rope = bias = None
        if cfg.pos == "learned":
            if start + T > cfg.block_size:
                raise ValueError(f"this model uses learned positions and was built for at most {cfg.block_size} "
                                 f"tokens (block_size); got {start + T}. Use a shorter context "
                                 f"(or a rope/alibi model, which can run longer)")
            pos = torch.arange(start, start + T, dtype=torch.long, device=device)  # (T,)
            x = x + self.transformer["wpe"](pos)  # (B, T, C) + (T, C)
        elif cfg.pos == "rope":
            rope = rope_tables(torch.arange(start, start + T, device=device), cfg.head_size,
                               inv_freq=self.rope_inv_freq.float())  # 2 x (T, hs)
        else:
            bias = alibi_bias(self.alibi_slopes, start, T, device)  # (1, nh, T, S)
        x = self.transformer["drop"](x)

        attentions = []
        for i, block in enumerate(self.blocks):
            x, attn = block(x, rope=rope, bias=bias, start=start, cache=cache, layer=i,
                            return_attention=return_attention)
            attentions.append(attn)
        if cache is not None:
            cache.length = start + T
        x = self.transformer["ln_f"](x)

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
