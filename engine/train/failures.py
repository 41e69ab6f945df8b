"""A run's small JSON files, written so that a failed write leaves nothing half-written and says why in one line.

How a failure is told ("disk full while saving ckpt.pt ...") is engine.errors' (error_line, write_error,
is_disk_full), imported from here by the trainer and the CLI.
"""

import json
from pathlib import Path

from engine.errors import error_line, is_disk_full, write_error  # noqa: F401 - re-exported for the trainer and CLI
from engine.fileio import atomic_write


def write_json_atomic(path: Path, data: dict) -> None:
    try:
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise write_error(e, path) from e
