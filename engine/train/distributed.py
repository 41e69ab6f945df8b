"""Distributed set-up: the torchrun environment, this rank's device, and every RNG state as checkpoint-safe data."""

import os
import random
import socket

import numpy as np
import torch

from engine.train.config import ConfigError, TrainConfig

def _dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the environment torchrun (or launch()) sets."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise ConfigError(f"bad distributed environment variable: {e}") from None
    return rank, local_rank, world_size


def _resolve_device(config: TrainConfig, local_rank: int) -> torch.device:
    kind = config.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count > 1:  # two ranks on one GPU: NCCL fails with "Duplicate GPU detected"
            raise ConfigError(f"LOCAL_RANK {local_rank} has no GPU of its own: this machine shows {count} GPUs; "
                              f"start at most {count} processes per node (torchrun --nproc_per_node={count})")
        # one visible GPU and LOCAL_RANK > 0: each process was given its own GPU (CUDA_VISIBLE_DEVICES per rank)
        device = torch.device("cuda", local_rank if local_rank < count else 0)
        torch.cuda.set_device(device)  # before init_process_group: NCCL binds each rank to the current device
        if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use precision=fp16 or fp32")
        return device
    return torch.device("cpu")  # fp16 or device=cuda without CUDA: refused before, by config.problems()


def _rng_state(device: torch.device) -> dict:
    """This process's torch, CUDA, numpy and Python RNG states as plain data (checkpoint-safe)."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy: the MT19937 state as a tuple
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device, cuda_seed: int) -> None:
    """Restore _rng_state()'s states; on CUDA without a saved CUDA state (written on the CPU) seed it by cuda_seed."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if device.type == "cuda":
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        else:  # else every rank would keep torch.manual_seed(seed)'s CUDA stream: the same dropout on all ranks
            torch.cuda.manual_seed(cuda_seed)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
