"""Checkpoint files: a model that rebuilds itself, saved atomically, loaded without ever running code from the file.

A checkpoint is one ``torch.save`` file holding plain data only (dicts, lists, str, numbers, tensors)::

    {"format": "llm-playground-checkpoint", "version": 1,
     "model_config": GPTConfig.to_dict(), "tokenizer": Tokenizer.to_dict(),
     "model": state_dict, "train": {...optional, owned by the trainer...}}

Reading uses ``torch.load(weights_only=True)``, whose unpickler only builds tensors and plain containers: a file
that asks for any other object (a pickle with a malicious ``__reduce__``) is refused, never executed. Every failure
to read becomes a ``CheckpointError`` with a one-line message::

    save_model("ckpt.pt", model, tokenizer, extra={"train": {"step": 100}})
    model, tokenizer, payload = load_model("ckpt.pt")
"""

import hashlib
import math
import os
import pickle
import warnings
import zipfile

import torch

from engine.errors import UserError, one_line, size_text, unpickler_reason
from engine.fileio import atomic_write

FORMAT = "llm-playground-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model_config", "tokenizer", "model")
CHECKSUM_KEY = "weights_sha256"  # sha256 of the weights (names, dtypes, shapes, bytes); absent in older files


class CheckpointError(UserError):
    """A checkpoint file cannot be read or does not describe a valid model."""


def save_checkpoint(path, payload: dict):
    """Write payload to path atomically: a crash midway leaves the previous file (if any) untouched.

    The data goes to a temporary file in the same folder, is flushed and fsync'ed, then renamed over path with
    os.replace (atomic), and the folder is fsync'ed so the rename itself survives a power cut.
    "format" and "version" are filled in when missing.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"a checkpoint payload must be a dict, got {type(payload).__name__}")
    payload = {"format": FORMAT, "version": VERSION, **payload}
    if _is_state_dict(payload.get("model")):
        payload[CHECKSUM_KEY] = weights_checksum(payload["model"])
    with atomic_write(path) as f:
        try:
            torch.save(payload, f)
        except (RuntimeError, OSError) as e:  # torch's zip writer hides ENOSPC behind "unexpected pos ..."
            raise _disk_error(path, e) from e
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            raise _disk_error(path, e) from e


def _disk_error(path, exc: BaseException) -> OSError:
    """One readable line for a failed write: "disk full while saving ckpt.pt (needs ...)" when that is the cause."""
    import errno
    import shutil
    name = os.path.basename(os.fspath(path))
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(os.fspath(path)))).free
    except OSError:
        free = None
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "unexpected pos" in str(exc) \
        or (free is not None and free < 1 << 20)
    if full:
        return OSError(errno.ENOSPC, f"disk full while saving {name} ({size_text(free or 0)} free in its folder); "
                                     f"the previous file, if any, is unchanged")
    return OSError(getattr(exc, "errno", None) or errno.EIO, f"cannot write {name}: {one_line(exc)}")


def _is_state_dict(state) -> bool:
    return isinstance(state, dict) and bool(state) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


def weights_checksum(state: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (little-endian, as stored), in name order.

    A flipped byte in the file or a zip marked big-endian (which torch then byte-swaps) changes it.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_checkpoint(path) -> dict:
    """Load a checkpoint's payload (tensors on the CPU), checking it is one of ours. Raises CheckpointError."""
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint file at {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{name} is empty (0 bytes): not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):  # torch.save's zip format: check the archive before torch reads it
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, UnicodeDecodeError, NotImplementedError, ...
            raise CheckpointError(f"{name} is truncated or corrupt ({type(e).__name__}: {one_line(e)})") from e
        if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            raise CheckpointError(f"{name} is a zip file but not a PyTorch checkpoint")
    elif not head.startswith(b"\x80"):  # nor a pickle (torch's legacy format)
        raise CheckpointError(f"{name} is not a PyTorch checkpoint (it starts with {head!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says enough
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{name} was refused: it contains objects other than plain data and tensors, which "
                              f"are never loaded ({unpickler_reason(e)})") from e
    except MemoryError as e:
        raise CheckpointError(f"{name} is too large to load into memory") from e
    except Exception as e:  # noqa: BLE001 - whatever else a damaged file makes torch raise
        raise CheckpointError(f"{name} is truncated or corrupt ({type(e).__name__}: {one_line(e)})") from e

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is a PyTorch file but not an LLM Playground checkpoint "
                              f"(no \"format\": \"{FORMAT}\")")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{name} has no valid format version")
    if version > VERSION:
        raise CheckpointError(f"{name} was written by a newer LLM Playground (format version {version}; "
                              f"this one reads up to {VERSION})")
    _check_weights(payload, name)
    return payload


def _check_weights(payload: dict, name: str) -> None:
    """Refuse tensors whose storage is smaller than their shape claims (expanded, stride-0 views of a tiny storage
    that would become full-size tensors once copied), then verify the recorded checksum, if there is one."""
    state = payload.get("model")
    if not isinstance(state, dict):
        return
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        try:
            held = int(t.untyped_storage().nbytes() - t.storage_offset() * t.element_size())
        except Exception:  # noqa: BLE001 - a tensor without a plain storage
            held = -1
        claimed = t.numel() * t.element_size()
        if held < claimed or (t.numel() and not t.is_contiguous()):
            raise CheckpointError(f"{name}: the tensor {key} claims shape {tuple(t.shape)} ({size_text(claimed)}) but "
                                  f"the file holds {size_text(max(held, 0))} for it: the file is damaged or forged")
    recorded = payload.get(CHECKSUM_KEY)
    if recorded is None:
        return  # written before checksums were recorded
    if not isinstance(recorded, str) or not _is_state_dict(state) or weights_checksum(state) != recorded:
        raise CheckpointError(f"{name} is corrupt: its weights do not match the checksum recorded when it was "
                              f"saved")


def available_memory() -> int | None:
    """Bytes of memory this process could still get (MemAvailable, capped by an address-space limit), or None."""
    import resource
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            room = max(soft - used, 0)
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError, AttributeError):
        pass
    return avail


def check_optimizer_state(state, params, source: str = "the checkpoint") -> None:
    """Raise CheckpointError unless ``state`` (an optimizer state_dict) fits ``params`` (in param-group order):
    every tensor in a parameter's state must be a scalar or have the parameter's shape. A wrong-shaped exp_avg makes
    the fused AdamW step write out of bounds (heap corruption), so this runs before the first step."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) \
            or not isinstance(state.get("param_groups"), list):
        raise CheckpointError(f"{source}: the optimizer state is missing or not an optimizer state")
    params = list(params)
    ids = []
    for group in state["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise CheckpointError(f"{source}: the optimizer state has a damaged parameter group")
        ids.extend(group["params"])
    if len(ids) != len(params):
        raise CheckpointError(f"{source}: the optimizer state is for {len(ids)} parameters, the model has "
                              f"{len(params)}")
    by_id = dict(zip(ids, params))
    for pid, entry in state["state"].items():
        if pid not in by_id or not isinstance(entry, dict):
            raise CheckpointError(f"{source}: the optimizer state holds an entry for unknown parameter {pid!r}")
        p = by_id[pid]
        for k, v in entry.items():
            if not isinstance(v, torch.Tensor):
                continue
            if v.dim() == 0 and k == "step":
                continue
            if tuple(v.shape) != tuple(p.shape) or not v.is_floating_point():
                raise CheckpointError(f"{source}: the optimizer's {k} for parameter {pid} has shape "
                                      f"{tuple(v.shape)} ({v.dtype}), the parameter {tuple(p.shape)}")
            if v.numel() and not v.is_contiguous():
                raise CheckpointError(f"{source}: the optimizer's {k} for parameter {pid} is not a plain tensor")


def _unwrap(model):
    """The GPT inside torch.compile (._orig_mod) and DistributedDataParallel (.module) wrappers."""
    for attr in ("_orig_mod", "module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model


def save_model(path, model, tokenizer, extra: dict | None = None):
    """Save model (config + weights) and the identity of its tokenizer; extra adds keys such as "train"."""
    model = _unwrap(model)
    state: dict[str, torch.Tensor] = {}
    dense: dict[tuple, torch.Tensor] = {}
    for key, t in model.state_dict().items():  # as rows (weights laid out for decoding are columns); tied stay tied
        state[key] = dense.setdefault((t.data_ptr(), t.shape, t.stride()), t if t.is_contiguous() else t.contiguous())
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "model": state,
    }
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra cannot replace the checkpoint's own key {key!r}")
        payload[key] = value
    save_checkpoint(path, payload)


def load_model(path, device="cpu", **hf_options):
    """Rebuild the model and tokenizer a checkpoint describes -> (GPT in eval mode on device, Tokenizer, payload).

    A Hugging Face model folder or hub-cache repository is opened by ``engine.hf.load_hf_model`` (hf_options:
    dtype, progress, cancel); its third item is then an info dict with "format": "huggingface".
    Raises CheckpointError for anything wrong with the file, with a one-line message.
    """
    if os.path.isdir(os.fspath(path)):
        from engine.hf import is_hf_folder, load_hf_model
        if is_hf_folder(path):
            return load_hf_model(path, device=device, **hf_options)
    from engine.model import GPT, GPTConfig
    from engine.tokenizers import tokenizer_from_dict

    payload = read_checkpoint(path)
    name = os.path.basename(os.fspath(path))
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{name} is incomplete: missing {', '.join(missing)}")
    try:
        config = GPTConfig.from_dict(payload["model_config"])
    except Exception as e:  # noqa: BLE001 - ValueError, TypeError, OverflowError from foreign values
        raise CheckpointError(f"{name} has an invalid model config: {one_line(e)}") from e
    try:
        tokenizer = tokenizer_from_dict(payload["tokenizer"])
    except Exception as e:  # noqa: BLE001 - a foreign dict can fail in many ways; all mean "bad tokenizer"
        raise CheckpointError(f"{name} has a tokenizer that cannot be rebuilt: {one_line(e)}") from e
    if tokenizer.n_vocab > config.vocab_size:
        raise CheckpointError(f"{name}: its tokenizer has {tokenizer.n_vocab} tokens but the model only "
                              f"{config.vocab_size}")

    state = payload["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}: \"model\" is not a state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{name}: \"model\" must map parameter names to tensors")
    state = {(k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k): v
             for k, v in state.items()}
    # check the shapes before allocating: a tiny file claiming a huge config must not build a huge model
    layers = {k.split(".")[2] for k in state if k.startswith("transformer.h.")}
    if len(layers) != config.n_layer:
        raise CheckpointError(f"{name}: the weights do not fit the model config: they hold {len(layers)} "
                              f"layer(s), the config says n_layer={config.n_layer}")
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    except Exception as e:  # noqa: BLE001 - sizes torch cannot even describe (~1e18)
        raise CheckpointError(f"{name} has an invalid model config: {type(e).__name__}: {one_line(e)}") from e
    for key in sorted(set(expected) | set(state)):
        if key not in state or key not in expected or tuple(state[key].shape) != expected[key]:
            what = ("missing" if key not in state else "unexpected" if key not in expected else
                    f"shape {tuple(state[key].shape)}, the config needs {expected[key]}")
            raise CheckpointError(f"{name}: the weights do not fit the model config: {key} ({what})")
    need = sum(4 * math.prod(shape) for shape in expected.values())  # float32 parameters, built before loading
    avail = available_memory()
    if avail is not None and need > avail:
        raise CheckpointError(f"{name}: building its model needs {size_text(need)} of memory, only "
                              f"{size_text(avail)} is available")
    try:
        model = GPT(config)
    except (MemoryError, RuntimeError) as e:
        raise CheckpointError(f"{name}: its model ({size_text(need)}) cannot be built: {one_line(e)}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        details = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        reason = details[0] if details else one_line(e)
        raise CheckpointError(f"{name}: the weights do not fit the model config: {reason[:200]}") from e
    model.to(device).eval()
    return model, tokenizer, payload
