"""Atomic file writes: the final path holds either the old file or the complete new one, never a partial file.

The one way the engine and the app replace a file (checkpoints, tokenizers, the corpus cache, run configs, the
app's saved text)::

    with atomic_write("ckpt.pt") as f:
        torch.save(payload, f)
    with atomic_write("config.json", "w", encoding="utf-8") as f:
        f.write(text)

The temporary file is ``.NAME.<random>.tmp`` beside NAME: a unique name (two writers never share one), hidden, and
recognisable as a leftover by its ``.tmp`` suffix.
"""

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_write(path, mode: str = "wb", **open_args):
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    ``mode`` and ``open_args`` (encoding, errors, newline) are those of :func:`open`; the mode must write.

    If the body raises (or the process dies), the temporary file is removed (or left as a hidden ``.tmp``) and
    ``path`` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; the file gets the mode open() would give it
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)


def fsync_dir(folder: str) -> None:
    """Make a rename inside ``folder`` durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
