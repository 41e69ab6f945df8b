"""One writer per run folder: an OS-level lock (``flock`` on ``DIR/.lock``) that dies with the process holding it.

The trainer's rank 0 holds it for the whole run, whoever started it (``llm-train``, ``torchrun`` or the app); a
second writer, a new run or a ``--resume``, is refused with one line naming the holder::

    with RunLock("runs/sc"):                      # raises RunFolderBusy while another process holds it
        train_into("runs/sc")
    RunLock.holder("runs/sc")                     # None when free, else a Holder (pid, host, start time)

The kernel releases an ``flock`` when its process ends, however it ends (SIGKILL, a crash), so a lock is never
stale; the file itself stays (removing it would race with the next holder) and only says who held it last.
Taking the lock also removes the temporary files a save killed midway left in the folder (``.ckpt.pt.XXXX.tmp``):
with the lock held nobody else can be writing them.
"""

import errno
import json
import os
import re
import socket
import time
from dataclasses import dataclass

from engine.errors import UserError

LOCK_NAME = ".lock"
# temporary files of our own atomic writes: ".ckpt.pt.k2j3h4.tmp" (engine.fileio), ".config.json.tmp" (the trainer)
_STALE_TMP = re.compile(r"^\.(ckpt\.pt|config\.json|metrics\.jsonl)(\..+)?\.tmp$")
_HOLDER_BYTES = 4096


class RunFolderError(UserError):
    """The run folder cannot be used: it is a file, cannot be created or written; the message says which."""


class RunFolderBusy(RunFolderError):
    """Another live process holds the run folder's lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run folder's lock."""

    pid: int
    host: str
    started: float  # time.time() when it took the lock

    def describe(self) -> str:
        """ "pid 1234 on host box, since 2026-12-02 15:51:44 UTC" """
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)) if self.started else "an unknown time"
        return f"pid {self.pid} on host {self.host}, since {when}"


class RunLock:
    """The lock of one run folder. acquire() / release(), or use it as a context manager."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd: int | None = None
        self._created_folder = False
        self.removed: list[str] = []  # stale temporary files removed when the lock was taken

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock (creating the folder if needed) or raise RunFolderBusy; then remove stale temporaries.

        RunFolderError (one readable line) when the folder cannot be created or written.
        """
        if self._fd is not None:
            return self
        import fcntl

        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise RunFolderError(f"{self.folder} is a file, not a folder; choose another out_dir")
        if not os.path.isdir(self.folder):
            try:
                os.makedirs(self.folder)
                self._created_folder = True
            except FileExistsError:
                pass
            except OSError as e:
                raise RunFolderError(f"cannot create the run folder {self.folder}: {e.strerror}; choose another "
                                     f"out_dir") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            self._remove_created()
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise RunFolderError(f"cannot write in the run folder {self.folder}: {e.strerror}; choose another "
                                     f"out_dir") from None
            raise RunFolderError(f"cannot lock the run folder {self.folder} ({LOCK_NAME}: {e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise _busy(self.folder, self.holder(self.folder)) from None
            raise RunFolderError(f"cannot lock the run folder {self.folder}: {e.strerror}") from None
        self._fd = fd
        try:
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, (record + "\n").encode(), 0)
        except OSError:
            pass  # the record only names the holder for others' messages; the lock itself is held
        self.removed = remove_stale_temporaries(self.folder)
        return self

    def release(self) -> None:
        """Give the lock up. A folder that acquire() created and that holds nothing else is removed again."""
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # while still held: nobody else can have written their record yet
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._remove_created()

    def _remove_created(self) -> None:
        """Remove the folder acquire() created, if nothing but (at most) the lock file is in it."""
        if not self._created_folder:
            return
        self._created_folder = False
        try:
            if set(os.listdir(self.folder)) <= {LOCK_NAME}:
                if os.path.exists(self.path):
                    os.unlink(self.path)
                os.rmdir(self.folder)
        except OSError:
            pass

    def keep_folder(self) -> None:
        """The run wrote its files: release() must not remove the folder even if they are gone again."""
        self._created_folder = False

    @staticmethod
    def holder(folder) -> Holder | None:
        """Who holds folder's lock now, or None when nobody does (or the folder has no lock file)."""
        import fcntl

        path = os.path.join(os.fspath(folder), LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                pass  # held by a writer: read who
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            try:
                data = json.loads(os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace") or "{}")
            except (OSError, ValueError, RecursionError):
                data = {}
        finally:
            os.close(fd)
        if not isinstance(data, dict):
            data = {}
        pid, host, started = data.get("pid"), data.get("host"), data.get("started")
        return Holder(pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
                      host=host if isinstance(host, str) else "?",
                      started=float(started) if isinstance(started, (int, float)) and not isinstance(started, bool)
                      else 0.0)

    @staticmethod
    def check_free(folder) -> None:
        """RunFolderBusy, with the message acquire() would give, if a live process holds folder's lock now.

        For a quick answer before starting processes; only acquire() makes sure (the lock may be taken after)."""
        holder = RunLock.holder(folder)
        if holder is not None:
            raise _busy(os.fspath(folder), holder)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def _busy(folder: str, holder: Holder | None) -> RunFolderBusy:
    who = holder.describe() if holder is not None else "another process"
    return RunFolderBusy(f"{folder} is in use by another run ({who}); stop that run first or choose another out_dir")


def remove_stale_temporaries(folder) -> list[str]:
    """Remove the temporary files of interrupted atomic writes in folder -> their names. Call with the lock held."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if _STALE_TMP.match(name):
            path = os.path.join(folder, name)
            try:
                if os.path.isfile(path) and not os.path.islink(path):
                    os.unlink(path)
                    removed.append(name)
            except OSError:
                pass
    return sorted(removed)
