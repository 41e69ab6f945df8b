"""Position schemes of the transformer: rotary tables (with Llama 3 / linear scaling), ALiBi biases, causal masks.

Pure functions of positions and shapes, shared by training and decoding; ``engine.model`` re-exports them.
"""

import math

import torch

ROPE_SCALINGS = ("llama3", "linear")


def rope_inv_freq(head_size: int, theta: float = 10000.0, scaling: dict | None = None) -> torch.Tensor:
    """Inverse frequencies (hs/2,) float32 of rotary embeddings, with theta and an optional scaling.

    scaling: None; {"rope_type": "linear", "factor": f} divides every frequency by f; {"rope_type": "llama3",
    "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"} is Llama 3.1's: long
    wavelengths divided by factor, short ones kept, a smooth blend in between (as transformers computes it).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.int64).float() / head_size))  # (hs/2,)
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind != "llama3":
        raise ValueError(f"unsupported rope scaling {kind!r} (supported: {', '.join(ROPE_SCALINGS)})")
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_len = float(scaling["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_tables(positions: torch.Tensor, head_size: int, theta: float = 10000.0, scaling: dict | None = None,
                inv_freq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (T, hs) for absolute positions (T,), in float32."""
    if inv_freq is None:
        inv_freq = rope_inv_freq(head_size, theta, scaling)
    angles = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]  # (T, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + hs/2) of x (B, nh, T, hs) by the position angles (GPT-NeoX / Llama "rotate half")."""
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
