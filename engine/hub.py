"""The models in the Hugging Face cache on this machine, listed without the network and without loading weights.

    >>> [m.name for m in hub_models("/nonexistent")]
    []

Each repository folder (``models--org--name``) is reported with its name, architecture, parameter count (from the
safetensors headers alone), size on disk, and whether ``engine.hf.load_hf_model`` can open it, and if not, why (an
unfinished download, a missing snapshot or shard, an unsupported architecture). A listing never raises.
"""

import json
import math
import os
from dataclasses import dataclass

from engine.choices import estimate_params
from engine.errors import one_line
from engine.hf import (HFModelError, config_from_hf, hub_cache_dir, read_config, repo_name,
                       resolve_snapshot)

@dataclass
class HubModel:
    name: str  # "openai-community/gpt2"
    path: str  # the repository folder (models--org--name), what load_model takes
    architecture: str | None
    n_params: int | None
    size_bytes: int  # on disk: the repository's blobs
    openable: bool
    reason: str  # why not, when not openable ("" otherwise)


def _safetensors_params(paths) -> int:
    """Parameter count from safetensors headers only (8-byte length + JSON), without reading any tensor."""
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100 * 2**20:
                raise ValueError("bad safetensors header")
            header = json.loads(f.read(size))
        n += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return n


def _dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def inspect_repo(repo: str) -> HubModel:
    """What the cache holds in one repository folder; never raises for a damaged or partial download."""
    name = repo_name(repo)
    blobs = os.path.join(repo, "blobs")
    size = _dir_size(blobs) if os.path.isdir(blobs) else _dir_size(repo)
    arch = n_params = None
    try:
        incomplete = [f for f in os.listdir(blobs) if f.endswith(".incomplete")] if os.path.isdir(blobs) else []
        snap = resolve_snapshot(repo)
        cfg = read_config(snap)
        archs = cfg.get("architectures")
        arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else cfg.get("model_type")
        config, arch = config_from_hf(cfg, name)
        shards = []
        index = os.path.join(snap, "model.safetensors.index.json")
        if os.path.isfile(index):
            with open(index, "rb") as f:
                shards = sorted(set(json.loads(f.read())["weight_map"].values()))
            shards = [os.path.join(snap, s) for s in shards]
        elif os.path.exists(os.path.join(snap, "model.safetensors")):
            shards = [os.path.join(snap, "model.safetensors")]
        missing = [os.path.basename(s) for s in shards if not os.path.isfile(s)]  # a dangling link: blob missing
        if incomplete or missing:
            what = f"{len(incomplete)} unfinished file(s)" if incomplete else f"{missing[0]} missing"
            raise HFModelError(f"download incomplete ({what})")
        if shards:
            n_params = _safetensors_params(shards)
        elif os.path.isfile(os.path.join(snap, "pytorch_model.bin")):
            n_params = estimate_params(config, config.vocab_size)
        else:
            raise HFModelError("no weights (model.safetensors or pytorch_model.bin)")
        if not os.path.isfile(os.path.join(snap, "tokenizer.json")):
            raise HFModelError("no tokenizer.json")
        return HubModel(name, repo, arch, n_params, size, True, "")
    except Exception as e:  # noqa: BLE001 - a listing reports, it does not crash
        reason = str(e).split(": ", 1)[1] if isinstance(e, HFModelError) and ": " in str(e) \
            and str(e).startswith(name) else one_line(e)
        return HubModel(name, repo, arch, n_params, size, False, reason)


def hub_models(cache_dir: str | None = None) -> list[HubModel]:
    """The model repositories in the Hugging Face cache, sorted by name; no network, never raises."""
    root = cache_dir or hub_cache_dir()
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    return [inspect_repo(os.path.join(root, e)) for e in entries
            if e.startswith("models--") and os.path.isdir(os.path.join(root, e))]
