"""The engine's error contract: what is the user's mistake, what is a cancel, and how an error is told in one line.

Every error the user can cause and mend (a bad setting, an unreadable file, a model this app cannot open) derives
from :class:`UserError`. The app shows those as the user's mistake, in one line, and reports everything else (a
ValueError raised inside torch or numpy, say) as a bug with its traceback::

    >>> from engine.checkpoint import CheckpointError
    >>> issubclass(CheckpointError, UserError)
    True
    >>> is_user_error(ValueError("from deep inside torch"))
    False
    >>> one_line(ValueError("first line\\n  second line"))
    'first line'
    >>> size_text(3 * 2**30), size_text(5 * 2**20)
    ('3.0 GiB', '5.0 MiB')

:class:`Cancelled` is the one "the caller asked to stop" exception (BPE training, corpus encoding, model loading).
"""

import errno
import os
import re


class UserError(ValueError):
    """Something the user can mend: the message says what is wrong, in words meant for them.

    A ValueError, so code that caught ValueError for these before keeps working; new code catches UserError.
    """


class Cancelled(Exception):
    """Work stopped because its ``cancel()`` callback returned true; nothing half-done was kept."""


def is_user_error(exc: BaseException) -> bool:
    """Whether exc is the user's mistake (show it in one line) rather than a bug (report it)."""
    return isinstance(exc, UserError)


def one_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first non-empty line of an exception's message, shortened to limit characters (torch's run for pages;
    None: never shortened, for the engine's own messages); its type name if the message is empty."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def size_text(n: int) -> str:
    """A memory or file size for a message: GiB from one GiB up, else MiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def unpickler_reason(exc: BaseException) -> str:
    """What torch's long weights-only refusal refused: "it asks for posix.mkdir", "Unsupported operand 149", ..."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks for {found.group(1)}"
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0][:120]
    return "not plain data"


def write_error(exc: OSError, path) -> OSError:
    """exc as one readable line naming the file: "disk full while writing metrics.jsonl (...)"."""
    name = os.path.basename(os.fspath(path))
    if is_disk_full(exc):
        if "disk full" in str(exc):
            return exc
        return OSError(exc.errno, f"disk full while writing {name} in {os.path.dirname(os.fspath(path))}; free "
                                  f"some space and resume")
    return OSError(exc.errno, f"cannot write {name}: {exc.strerror or one_line(exc)}")


def is_disk_full(exc: BaseException) -> bool:
    """Whether exc is a write that failed for want of space (ENOSPC) or quota (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def error_line(exc: BaseException) -> str:
    """The one line a user is told: the message of a user error or a full disk, else "Type: message"."""
    if isinstance(exc, UserError):
        return one_line(exc, None)
    if isinstance(exc, OSError) and is_disk_full(exc):
        return exc.strerror if exc.strerror and "disk full" in exc.strerror else \
            f"disk full while writing {exc.filename or 'the run folder'}"
    return f"{type(exc).__name__}: {one_line(exc, None)}"
