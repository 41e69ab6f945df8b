"""How well a training run uses the machine: the model's FLOPs per token and the machine's measured matmul peak.

Model FLOPs utilisation (MFU) is the FLOPs the model needs per second at the measured speed, over the peak FLOPs the
hardware reaches. The count follows the PaLM paper (Chowdhery et al. 2022, appendix B), as nanoGPT does: a trained
token costs 6 FLOPs per matrix weight (2 forward, 4 backward) plus 12 per layer, head dimension and position for
the attention scores and the weighted sum. Norms, activations and the optimizer are not counted: they are work the
hardware does, but not FLOPs the model needs, which is what makes MFU comparable across implementations::

    >>> from engine.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False))
    >>> matmul_params(model)  # 4 layers x (qkv + proj + fc + proj) + the (tied) head
    794752
    >>> flops_per_token(model, seq_len=64)  # 6 x 794752 + 12 x 4 x 128 x 64
    5161728

The peak is measured, not looked up: large square matmuls in the dtype the run computes in, on the run's device with
its thread count, best of a few sizes. On a CPU that other programs share, the peak measured then is lower too.
"""

import functools
import time
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # torch is imported where it is used: the app's views import mfu() without paying for torch
    import torch
    from torch import nn

    from engine.model import GPTConfig

SIZES = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192)}  # square matmul sides tried; the best rate is the peak
WINDOWS = 3  # each size is timed in this many short windows and the best counts: a busy moment lowers one, not all
WINDOW_S = {"cpu": 0.05, "cuda": 0.1}  # seconds per window (after one warm-up product)


def matmul_params(model: "nn.Module") -> int:
    """Weights that multiply activations: every Linear's weight (a head tied to the embedding counts, as a matmul)."""
    from torch import nn

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def flops_per_token(model: "nn.Module", seq_len: int) -> int:
    """Training FLOPs per token (forward and backward) at context seq_len: 6 N + 12 L d T (PaLM's count).

    N is matmul_params(model); L the layers; d the query heads times the head size; T the context.
    """
    config = cast("GPTConfig", model.config)
    attention = 12 * config.n_layer * config.n_head * config.head_size * seq_len
    return 6 * matmul_params(model) + attention


def precision_dtype(precision: str) -> "torch.dtype":
    """The dtype matmuls run in under a run's precision setting (autocast's for bf16/fp16)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


@functools.lru_cache(maxsize=16)
def _peak(device_type: str, index: int | None, dtype: "torch.dtype", threads: int) -> float:
    import torch

    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    cuda = device.type == "cuda"
    best = 0.0
    g = torch.Generator(device).manual_seed(0)  # its own: the run's random streams (dropout, resume) stay untouched
    for n in SIZES["cuda" if cuda else "cpu"]:
        a = torch.rand(n, n, device=device, generator=g).to(dtype)
        b = torch.rand(n, n, device=device, generator=g).to(dtype)
        a @ b  # warm-up: kernels chosen, memory touched
        if cuda:
            torch.cuda.synchronize(device)
        for _ in range(WINDOWS):
            reps, t0 = 0, time.perf_counter()
            while True:
                a @ b
                reps += 1
                if cuda:
                    torch.cuda.synchronize(device)
                elapsed = time.perf_counter() - t0
                if elapsed >= WINDOW_S["cuda" if cuda else "cpu"]:
                    break
            best = max(best, 2 * n ** 3 * reps / elapsed)
    return best


def matmul_peak(device: "torch.device | str", dtype: "torch.dtype | None" = None) -> float:
    """The best FLOP/s a plain matmul reaches on device in dtype (with this process's torch threads), measured once
    per process and remembered. About half a second on a CPU, a second on a GPU."""
    import torch

    device = torch.device(device)
    return _peak(device.type, device.index, dtype or torch.float32, torch.get_num_threads())


@functools.cache
def cpu_has_bf16_matrix_units(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, Xeon from Sapphire Rapids on), where bf16
    autocast trains faster than fp32 (nanoGPT's CPU config 1.4x on a 2-core Xeon, bench/bench_training.py). Read from
    the kernel's CPU flags; False where there are none to read (not Linux)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """The fraction of the peak the model's FLOPs use at tokens_per_s (NaN when something is unknown).

    >>> mfu(1000.0, 5e6, 1e11)
    0.05
    """
    if not (tokens_per_s > 0 and flops_per_token > 0 and peak_flops > 0):
        return float("nan")
    return tokens_per_s * flops_per_token / peak_flops


def human_flops(flops: float) -> str:
    """A FLOP/s figure the way people read it.

    >>> human_flops(1.8e11), human_flops(7.2e14)
    ('180 GFLOP/s', '720 TFLOP/s')
    """
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP/s"
