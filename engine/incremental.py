"""What makes a one-token decoding step fast: the KV cache, attention of one new token over it, and weights laid
out for single-row products.

``engine.model`` uses the first two in every step with a cache; ``lay_out_for_decoding(model)`` is for a model kept
for decoding (the app's loader calls it). The figures (GPT-2-small fp32, 1 thread, bench/bench_generation_models.py):
with both, a step at context 16 / 256 / 1024 is 1.06-1.08 / 1.11-1.13 / 1.21-1.24x the time its weights take to
stream from memory, against 1.08-1.17 / 1.14-1.21 / 1.32-1.35x with SDPA over keys as rows and row-major weights.
"""

import math

import torch
import torch.nn as nn


def keys_as_columns(dtype: torch.dtype) -> bool:
    """Whether the cache keeps keys as columns and a one-token step reads them with ``one_query_attention`` (float32),
    or keeps them as rows for SDPA (other dtypes: see KVCache)."""
    return dtype == torch.float32


class KVCache:
    """Keys and values of every layer for the tokens seen so far, for incremental decoding.

    Storage per layer: values as (B, nkv, capacity, hs); keys likewise, except in float32, where they are kept as
    columns, (B, nkv, hs, capacity). A new token's scores are then a row times a matrix, which reads the cache front
    to back as MKL's single-row matmul reads fastest (``one_query_attention``; 10% faster than SDPA at context 1024
    in GPT-2-small). In other dtypes SDPA's kernel is the fast one and wants keys as rows. Buffers double when full;
    ``length`` positions are valid. ``truncate(n)`` forgets everything after the first ``n`` tokens (undo) without
    copying.
    """

    def __init__(self, n_layer: int, batch_size: int = 1, max_len: int | None = None):
        self.n_layer = n_layer
        self.batch_size = batch_size
        self.capacity = max_len or 0  # buffers are allocated on first use, when device and dtype are known
        self.length = 0
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new k, v (B, nkv, T, hs) at positions [length, length+T); return all keys and values so far,
        (B, nkv, S, hs) each with S = length + T (the keys a transposed view where they are kept as columns)."""
        B, nkv, T, hs = k.shape
        if B != self.batch_size:
            raise ValueError(f"this KV cache is for batch size {self.batch_size}, got {B}")
        end = self.length + T
        kbuf, vbuf = self.k[layer], self.v[layer]
        if kbuf is None or vbuf is None or end > vbuf.size(2) or vbuf.dtype != v.dtype or vbuf.device != v.device:
            capacity = max(end, self.capacity, 2 * (vbuf.size(2) if vbuf is not None else 0), 16)
            self.capacity = capacity
            kbuf = self._grown(kbuf, k.new_zeros(B, nkv, capacity, hs))
            vbuf = self._grown(vbuf, v.new_zeros(B, nkv, capacity, hs))
            if keys_as_columns(k.dtype):  # keys as columns: the same (B, nkv, capacity, hs) view, other strides
                kbuf = kbuf.transpose(-2, -1).contiguous().transpose(-2, -1)
            self.k[layer], self.v[layer] = kbuf, vbuf
        kbuf[:, :, self.length:end] = k
        vbuf[:, :, self.length:end] = v
        return kbuf[:, :, :end], vbuf[:, :, :end]

    def _grown(self, old: torch.Tensor | None, grown: torch.Tensor) -> torch.Tensor:
        """``grown`` (zeros) holding old's first ``length`` positions."""
        if old is not None and self.length:
            grown[:, :, :self.length] = old[:, :, :self.length]
        return grown

    def truncate(self, n: int):
        """Keep only the first n tokens (0 <= n <= length)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a KV cache of length {self.length} to {n}")
        self.length = n

    def reset(self):
        self.length = 0


def one_query_attention(q, k, v, mask=None):
    """Attention of one new token per sequence over S keys: q (B, nh, 1, hs), k and v (B, nkv, S, hs), mask None or
    additive (B or 1, nh, 1, S) -> (B, nh, 1, hs), all float32.

    The same function as scaled_dot_product_attention with enable_gqa, as two single-row matmuls, which read keys
    kept as columns (KVCache) and values in memory order; query heads are grouped by the key/value head they read
    (nh // nkv consecutive heads each), so no key or value is repeated.
    """
    B, nh, _, hs = q.shape
    nkv, S = k.size(1), k.size(2)
    scores = torch.matmul(q.reshape(B, nkv, nh // nkv, hs), k.transpose(-2, -1)).view(B, nh, 1, S)
    scores = scores * (1.0 / math.sqrt(hs))
    if mask is not None:
        scores = scores + mask
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights.view(B, nkv, nh // nkv, S), v).view(B, nh, 1, hs)


def lay_out_for_decoding(model: nn.Module, stop=None) -> nn.Module:
    """Store every float32 Linear weight on the CPU column-major (its transpose contiguous); values, shapes, names
    and tying stay as they were. Returns the model. ``stop`` (a callable) is asked between weights: true leaves the
    rest as they are, the model as valid as before. GPT-2-small (500 MB) takes ~0.3 s, one weight's copy at a time.

    A decoding step multiplies one row by each weight, and MKL reads a column-major weight for that ~7% faster
    (GPT-2-small fp32, bench/bench_generation_models.py). Only for a model kept for decoding: training is slower so
    (~7% on nanoGPT's CPU config), and so is a bf16 single-row product (~30%), which is why other dtypes are left
    row-major. Call it before the model is shared with other threads: it replaces each weight's storage.
    """
    with torch.no_grad():
        for module in model.modules():
            if stop is not None and stop():
                break
            w = module.weight if isinstance(module, nn.Linear) else None
            if w is not None and w.dtype == torch.float32 and w.device.type == "cpu" and w.dim() == 2 \
                    and w.is_contiguous() and min(w.shape) > 1:  # a tied weight already laid out is skipped
                w.data = w.data.t().contiguous().t()
    return model
