"""Following a run folder's ``metrics.jsonl`` incrementally, safely, whatever is at that path::

    tail = MetricsTail("runs/sc/metrics.jsonl")
    batch = tail.read()          # at most max_bytes of complete lines from where the last read ended
    batch.messages, batch.skipped, batch.problem, batch.more

:class:`MetricsTail` keeps its position between reads and reads a bounded piece each time (``more`` says whether
the file holds more already), so a 100 MB file is read in pieces a worker thread can hand over as they come. It never
blocks and never raises for what the file holds:

- a folder, a named pipe (FIFO) or a device at that path is ``problem`` (one line), never opened for reading;
- a line that is not a message (cut short, not UTF-8, nested thousands deep, a field of the wrong type, longer
  than ``max_line``) is counted in ``skipped`` with the first such reason in ``skip_reason``, so a reader can say
  "N lines skipped" once instead of once per line;
- a file replaced by another (a run started over in the folder) is read again from its start (``restarted``).
"""

import errno
import json
import os
import stat
from dataclasses import dataclass, field

from engine.messages import MESSAGE_TYPES, Message, from_dict

READ_BYTES = 4 << 20  # one read() hands over at most this much (about 20 000 step messages)
MAX_LINE = 1 << 20  # a longer line is no message of ours (a sample is a few KB): skipped unparsed
HEAD_BYTES = 256  # the first bytes of the file identify it (its first line names the run)


@dataclass
class TailRead:
    """What one :meth:`MetricsTail.read` found."""

    messages: list[Message] = field(default_factory=list)
    skipped: int = 0  # lines that were not messages
    skip_reason: str = ""  # why the first of them was skipped
    problem: str = ""  # the path cannot be followed at all (a folder, a FIFO, unreadable): one line
    restarted: bool = False  # the file was replaced: messages start again from its first line
    more: bool = False  # the file already holds more complete data than this read took


class MetricsTail:
    """An incremental reader of one metrics.jsonl (see the module doc). Not thread-safe: one reader thread."""

    def __init__(self, path, max_bytes: int = READ_BYTES, max_line: int = MAX_LINE):
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.max_line = max_line
        self.offset = 0
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file being read
        self._head = b""
        self._discarding = False  # inside a line longer than max_line: drop bytes up to its newline

    def read(self, max_bytes: int | None = None) -> TailRead:
        """The complete lines added since the last read (at most max_bytes of them) as messages."""
        out = TailRead()
        try:  # O_NONBLOCK: opening a FIFO for reading would wait for a writer; fstat then tells what it is
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return out  # not written yet
        except IsADirectoryError:
            out.problem = f"{self.path} is a folder, not a file: a run's metrics.jsonl is a file of JSON lines"
            return out
        except OSError as e:
            out.problem = f"cannot read {self.path}: {e.strerror}"
            return out
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode)
                        else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
                out.problem = (f"{self.path} is {kind}, not a file: a run's metrics.jsonl is a file of JSON lines; "
                               f"it is not read")
                return out
            identity = (st.st_dev, st.st_ino)
            head = os.pread(fd, HEAD_BYTES, 0) if self.offset else b""
            if self.offset and (identity != self._identity or st.st_size < self.offset
                                or head[:len(self._head)] != self._head):
                # replaced (a run started over in the folder), possibly by a file already longer than our offset
                self.offset, self._head, self._discarding = 0, b"", False
                out.restarted = True
            self._identity = identity
            # reads start at a line's start: one longer than any line of ours holds a newline unless it is overlong
            budget = max(max_bytes or self.max_bytes, self.max_line + 1)
            data = os.pread(fd, min(budget, max(st.st_size - self.offset, 0)), self.offset)
        except OSError as e:
            code = errno.errorcode.get(e.errno, str(e)) if e.errno is not None else e
            out.problem = f"cannot read {self.path}: {e.strerror or code}"
            return out
        finally:
            os.close(fd)
        if len(self._head) < HEAD_BYTES and self.offset == 0:
            self._head = data[:HEAD_BYTES]
        out.more = self.offset + len(data) < st.st_size
        self._parse(data, out)
        return out

    def _parse(self, data: bytes, out: TailRead) -> None:
        start = 0
        if self._discarding:  # the rest of an overlong line
            nl = data.find(b"\n")
            if nl < 0:
                self.offset += len(data)
                return
            self._discarding = False
            start = nl + 1
        end = data.rfind(b"\n") + 1  # only complete lines
        if end <= start:
            if len(data) - start > self.max_line:  # no newline for longer than any line of ours: skip it whole
                self._skip(out, f"a line longer than {self.max_line // 2**20} MiB")
                self._discarding = True
                self.offset += len(data)
            else:
                self.offset += start
            return
        for line in data[start:end].split(b"\n")[:-1]:
            if not line.strip():
                continue
            if len(line) > self.max_line:
                self._skip(out, f"a line longer than {self.max_line // 2**20} MiB")
                continue
            try:
                d = json.loads(line.decode("utf-8"))
                if isinstance(d, dict) and isinstance(d.get("type"), str) and d["type"] not in MESSAGE_TYPES:
                    continue  # a message a newer engine added: not ours to read, not an error either
                out.messages.append(from_dict(d))
            except UnicodeDecodeError:
                self._skip(out, "a line that is not UTF-8 text")
            except RecursionError:
                self._skip(out, "a line of JSON nested too deep")
            except json.JSONDecodeError:
                self._skip(out, "a line that is not complete JSON")
            except (ValueError, TypeError) as e:  # not one of our messages, or a field of the wrong type
                self._skip(out, str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        self.offset += end

    @staticmethod
    def _skip(out: TailRead, reason: str) -> None:
        if not out.skipped:
            out.skip_reason = reason
        out.skipped += 1
