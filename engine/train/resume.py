"""Resuming a run: read a checkpoint that can be resumed, check its optimizer hyperparameters, load its optimizer.

Everything is checked before the first step: a damaged run folder is one line (CheckpointError), never a traceback
or a corrupted heap (see engine.checkpoint.check_optimizer_state for the optimizer's tensors).
"""

import math

import torch

from engine.checkpoint import REQUIRED_KEYS, CheckpointError, read_checkpoint

RESUME_KEYS = (*REQUIRED_KEYS, "train.optimizer", "train.iter_num", "train.tokens_seen", "train.data_generator",
               "train.rng")


def read_resumable(path) -> dict:
    """The checkpoint at path, with every key a resume needs; CheckpointError naming what is missing."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt.get("train"), dict):
        raise CheckpointError(f"{path} holds a model but no training state to resume from")
    missing = [k for k in RESUME_KEYS
               if (ckpt["train"] if k.startswith("train.") else ckpt).get(k.split(".")[-1]) is None]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it lacks {', '.join(missing)}")
    train = ckpt["train"]
    for key in ("iter_num", "tokens_seen"):
        value = train[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63):
            raise CheckpointError(f"{path} cannot be resumed: its train.{key} {value!r} is not a step count")
    rng = train["rng"]
    if not (isinstance(rng, list) and rng and all(isinstance(r, dict) for r in rng)):
        raise CheckpointError(f"{path} cannot be resumed: its train.rng is not one random state per process")
    return ckpt


def check_param_groups(groups: list, source: str) -> None:
    """CheckpointError unless every saved optimizer group's hyperparameters are numbers AdamW can step with."""
    for group in groups:
        betas = group.get("betas")
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)):
            raise CheckpointError(f"{source}: the optimizer's betas {betas!r} are not two numbers in [0, 1)")
        for key, low in (("eps", 0.0), ("weight_decay", 0.0), ("lr", 0.0)):
            value = group.get(key)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value >= low):
                raise CheckpointError(f"{source}: the optimizer's {key} {value!r} is not a finite number >= {low:g}")


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load the optimizer's state but keep the fused / foreach choice made for this device.

    load_state_dict would bring back the saved run's flags: a checkpoint from a foreach fallback would turn
    fused AdamW off on CUDA, and a fused one would fail where fused is not available. Fused AdamW keeps its
    step counts as float32 on the parameters' device, foreach on the CPU.
    """
    flags = [{k: group.get(k) for k in ("fused", "foreach")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, flags):
        group.update(own)
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            if isinstance(st.get("step"), torch.Tensor) and not group.get("capturable"):
                st["step"] = st["step"].to(p.device, torch.float32) if own["fused"] else st["step"].cpu()
