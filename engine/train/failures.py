"""A run's small JSON files, written so that a failed write leaves nothing half-written and says why in one line.

How a failure is told ("disk full while saving ckpt.pt ...") is engine.errors' (error_line, write_error,
is_disk_full), imported from here by the trainer and the CLI.
"""

import json
import os
from pathlib import Path

from engine.errors import error_line, is_disk_full, write_error  # noqa: F401 - re-exported for the trainer and CLI
from engine.fileio import atomic_write
from engine.train.config import ConfigError


def write_json_atomic(path: Path, data: dict) -> None:
    try:
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise write_error(e, path) from e


def check_writable_folder(path: str, setting: str) -> None:
    """ConfigError (one line) unless path is, or can be made, a folder this process can write in."""
    p = Path(path)
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        where = "is a file" if existing == p else f"cannot be created: {existing} is a file"
        raise ConfigError(f"{setting} {path} {where}, not a folder; choose another {setting}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting} {path} cannot be written (no permission in {existing}); choose another "
                          f"{setting}")
