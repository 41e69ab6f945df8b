"""How a run's failures are told: one readable line naming the file ("disk full while saving ckpt.pt ..."), and the
run's small JSON files written so that a failed write leaves nothing half-written."""

import errno
import json
import os
from pathlib import Path

from engine.train.config import USER_ERRORS, _one_line


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path) from e


def write_error(exc: OSError, path) -> OSError:
    """exc as one readable line naming the file: "disk full while writing metrics.jsonl (...)"."""
    name = os.path.basename(os.fspath(path))
    if is_disk_full(exc):
        if "disk full" in str(exc):
            return exc
        return OSError(exc.errno, f"disk full while writing {name} in {os.path.dirname(os.fspath(path))}; free "
                                  f"some space and resume")
    return OSError(exc.errno, f"cannot write {name}: {exc.strerror or _one_line(exc)}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether exc is a write that failed for want of space (ENOSPC) or quota (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def error_line(exc: BaseException) -> str:
    """The one line a user is told: the message of a user error or a full disk, else "Type: message"."""
    if isinstance(exc, USER_ERRORS):
        return _one_line(exc)
    if is_disk_full(exc):
        return exc.strerror if exc.strerror and "disk full" in exc.strerror else \
            f"disk full while writing {exc.filename or 'the run folder'}"
    return f"{type(exc).__name__}: {_one_line(exc)}"
