"""The training <-> app protocol: small picklable messages, also written as JSON lines to the run folder.

A training run speaks through these messages only. The app receives them through a queue from the processes it
started, or follows ``DIR/metrics.jsonl`` of a run started elsewhere (``torchrun`` on another machine)::

    >>> msg = Step("a1b2", step=10, loss=2.5, lr=1e-3, grad_norm=0.8, tokens_per_s=25000.0, tokens_seen=7680,
    ...            amp_scale=1.0, skipped_steps=0, time=1700000000.0)
    >>> from_json(msg.to_json()) == msg
    True
    >>> msgs, offset = read_jsonl("out/metrics.jsonl", 0)   # later: read_jsonl(path, offset) -> only the new ones

Each line is ``{"type": "step", "v": 1, ...fields}``. A reader skips lines of types it does not know and lines that
are not complete JSON (a run killed mid-write), so old readers keep working when messages are added.

After a resume, the stream carries a new ``Started`` whose ``step`` is the step training continues from; messages
before it with a larger step (redone after a crash) are superseded by the ones that follow.
"""

import json
import math
import os
import stat
from dataclasses import asdict, dataclass, field, fields
from enum import Enum

VERSION = 1


@dataclass(frozen=True)
class Message:
    """Base class: every message names its run."""

    run_id: str

    type = "message"  # the JSON tag; a class attribute, not a field

    def to_dict(self) -> dict:
        return {"type": self.type, "v": VERSION, **asdict(self)}

    def to_json(self) -> str:
        """One line of JSON. Non-finite floats are written as NaN / Infinity (Python's json reads them back)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Started(Message):
    """A run (or a resumed run) begins at ``step``; config is TrainConfig.to_dict()."""

    config: dict = field(default_factory=dict)
    n_params: int = 0
    world_size: int = 1
    step: int = 0  # 0 for a new run; the checkpoint's step when resuming
    flops_per_token: float = 0.0  # the model's training FLOPs per token (engine.flops); 0 when not known
    peak_flops: float = 0.0  # the matmul FLOP/s the run's processes reached together, measured at the start
    exchange: str = ""  # how several processes average their gradients: "shared memory", "gloo" or "nccl"

    type = "started"

    def exchange_note(self) -> str:
        """' (gradients averaged through …)' for a run of several processes, '' otherwise: the CLI's run line and
        the Training pane's status say it alike."""
        return f" (gradients averaged through {self.exchange})" if self.world_size > 1 and self.exchange else ""


@dataclass(frozen=True)
class Step(Message):
    """One optimizer step (or a skipped one): the loss averaged over the global batch."""

    step: int = 0
    loss: float = math.nan
    lr: float = 0.0
    grad_norm: float = math.nan  # before clipping
    tokens_per_s: float = 0.0
    tokens_seen: int = 0
    amp_scale: float = 1.0  # the fp16 GradScaler's scale; 1.0 without one
    skipped_steps: int = 0  # total so far of steps skipped for non-finite gradients
    time: float = 0.0  # time.time() when the step ended
    mfu: float = 0.0  # model FLOPs utilisation of this step: the model's FLOP/s over Started.peak_flops (0: unknown)

    type = "step"


@dataclass(frozen=True)
class Eval(Message):
    """Mean loss over eval_iters batches of each split."""

    step: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    tokens_seen: int = 0

    type = "eval"


@dataclass(frozen=True)
class Sample(Message):
    """Text the model generated at an evaluation."""

    step: int = 0
    text: str = ""

    type = "sample"


@dataclass(frozen=True)
class CheckpointSaved(Message):
    step: int = 0
    path: str = ""

    type = "checkpoint"


@dataclass(frozen=True)
class NonFinite(Message):
    """A non-finite loss or gradient; ``what`` says which and what was done about it."""

    step: int = 0
    what: str = ""

    type = "nonfinite"


class Outcome(str, Enum):
    """How a run that ended on its own terms ended (a crash is a Failed message instead)."""

    COMPLETED = "completed"  # reached max_iters
    STOPPED = "stopped"  # asked to stop; a checkpoint of the last step was saved
    DIVERGED = "diverged"  # the loss became non-finite in float32; the diverged state was not saved


@dataclass(frozen=True)
class Finished(Message):
    """The run ended on its own terms: ``outcome`` says how, ``detail`` explains (why it diverged, what to do).

    >>> msg = Finished("a1b2", step=7, outcome=Outcome.DIVERGED, detail="the loss became non-finite at step 7")
    >>> msg.outcome is Outcome.DIVERGED, msg.reason
    (True, 'diverged: the loss became non-finite at step 7')
    """

    step: int = 0
    outcome: Outcome = Outcome.COMPLETED
    detail: str = ""

    type = "finished"

    def __post_init__(self):
        try:  # from JSON the outcome arrives as its text
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise ValueError(f"unknown run outcome {self.outcome!r}") from None
        if not isinstance(self.detail, str):
            raise ValueError(f"a finished message's detail must be text, got {self.detail!r}")

    @property
    def reason(self) -> str:
        """One line for people: the outcome, then the detail if there is one."""
        return f"{self.outcome.value}: {self.detail}" if self.detail else self.outcome.value

    def to_dict(self) -> dict:
        return {**super().to_dict(), "outcome": self.outcome.value}


@dataclass(frozen=True)
class Failed(Message):
    """The run crashed: error is one readable line, traceback the full Python traceback ("" for user errors)."""

    step: int = 0
    error: str = ""
    traceback: str = ""

    type = "failed"


MESSAGE_TYPES = {cls.type: cls for cls in (Started, Step, Eval, Sample, CheckpointSaved, NonFinite, Finished, Failed)}


def from_dict(d: dict) -> Message:
    """Rebuild a message from to_dict() output; ValueError for an unknown type or missing fields.

    Unknown extra keys are ignored (a newer writer may add fields).
    """
    if not isinstance(d, dict):
        raise ValueError(f"a message must be a JSON object, got {type(d).__name__}")
    type_name = d.get("type")
    cls = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ValueError(f"unknown message type {d.get('type')!r}")
    names = {f.name for f in fields(cls)}
    if cls is Finished and "outcome" not in d and isinstance(d.get("reason"), str):  # written before Outcome existed
        outcome, _, detail = d["reason"].partition(":")
        d = {**d, "outcome": outcome.strip(), "detail": detail.strip()}
    if "run_id" not in d:
        raise ValueError(f"{cls.type} message without run_id")
    values = {k: v for k, v in d.items() if k in names}
    for f in fields(cls):  # a followed file may hold anything: a field of the wrong type is no message of ours
        if f.name in values and not _fits(values[f.name], f.type):
            raise ValueError(f"bad {cls.type} message: {f.name} is {type(values[f.name]).__name__}, "
                             f"not {getattr(f.type, '__name__', f.type)}")
    try:
        return cls(**values)
    except TypeError as e:
        raise ValueError(f"bad {cls.type} message: {e}") from e


def _fits(value, kind) -> bool:
    """Whether a JSON value has a message field's type (an int is a float too; a bool is neither)."""
    if kind is float:
        return isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)
                                            and abs(value) < 2 ** 1023)
    if kind is int:  # int64, as the app's arrays hold them
        return isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 <= value < 2 ** 63
    if isinstance(kind, type) and issubclass(kind, Enum):  # JSON holds its value; the message checks which
        return isinstance(value, (str, kind))
    return isinstance(value, kind) if isinstance(kind, type) else True


def from_json(text: str) -> Message:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not a JSON message: {e}") from e
    return from_dict(d)


def append_jsonl(path, msg: Message) -> None:
    """Append one message as a line to path (created if missing). One write call per line."""
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
        f.write(msg.to_json() + "\n")


class JsonlWriter:
    """Keeps path open for appending; each message is one flushed line, so readers see it at once.

    If the file ends in a partial line (the writer was killed mid-line), it is finished with a newline first, so
    the next message starts on a line of its own.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._f = open(self.path, "a+b")
        size = self._f.seek(0, os.SEEK_END)
        if size:
            self._f.seek(size - 1)
            last = self._f.read(1)
            self._f.seek(0, os.SEEK_END)
            if last != b"\n":
                self._f.write(b"\n")
                self._f.flush()

    def write(self, msg: Message) -> None:
        # a lone surrogate (a non-UTF-8 file name decoded by Python) becomes its JSON escape \udcXX, read back as is
        self._f.write((msg.to_json() + "\n").encode("utf-8", "backslashreplace"))
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_jsonl(path, offset: int = 0) -> tuple[list[Message], int]:
    """Messages in path from byte offset on -> (messages, new offset). A missing file gives ([], offset), and so
    does anything at path that is not a regular file (a folder, a FIFO). For following a file as it grows, off the
    UI thread and in bounded pieces, see engine.metricstail.MetricsTail.

    Only complete lines are read; a line still being written is left for the next call. Lines that are not valid
    messages (unknown type, cut short) are skipped. If the file shrank below offset (replaced), it is read from 0.
    """
    try:  # O_NONBLOCK: a FIFO at path must not hang the reader; only a regular file is read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError):
        return [], offset
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return [], offset
        size = f.seek(0, os.SEEK_END)
        if offset > size:
            offset = 0
        f.seek(offset)
        data = f.read(size - offset)
    end = data.rfind(b"\n") + 1  # only whole lines
    msgs = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            msgs.append(from_json(line.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
            continue
    return msgs, offset + end
