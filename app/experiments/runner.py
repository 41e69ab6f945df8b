"""An A/B experiment in the background: ``llm-train --experiment`` in a child process, exactly as on the command line.

The pane does not train the arms itself: it runs the same command a user would (``python -m engine.train
--experiment KIND ...``) with one torch thread per process and a lower priority, reads its output line by line for
progress, and follows the arms' run folders for the curves. Cancel sends SIGTERM (the command saves the arm being
trained and skips the rest); a second Cancel kills it.
"""

import os
import re
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

import engine
from app.training.runner import NICE

STEP_LINE = re.compile(r"^\[(?P<arm>[^\]]+)\] step (?P<step>\d+):")
ROOT = Path(engine.__file__).resolve().parent.parent  # where `python -m engine.train` finds the engine
MAX_LOG_LINES = 2000


def command(kind: str, settings: dict, preset: str | None = None) -> list[str]:
    """The llm-train arguments of an experiment (settings: key=value overrides, out_dir among them)."""
    args = ["-m", "engine.train", "--experiment", kind, "--threads", "1", "--nice", str(NICE)]
    if preset:
        args += ["--preset", preset]
    return args + [f"{key}={value}" for key, value in settings.items()]


class ExperimentProcess(QObject):
    """One running experiment command. Signals come on the UI thread."""

    sig_line = Signal(str)
    """A line the command printed (stdout or stderr)."""
    sig_progress = Signal(str, int)
    """(arm, step) of the latest step line."""
    sig_ended = Signal(int, str)
    """(exit code, last error line or "") once the process is gone; -1 if it crashed or was killed."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.lines: list[str] = []
        self._buffer = b""
        self._error = ""
        self._cancelled = False

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self, kind: str, settings: dict, preset: str | None = None) -> None:
        if self.running:
            raise RuntimeError("an experiment is already running")
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), env.value("PYTHONPATH", "")) if p))
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.setWorkingDirectory(str(ROOT))
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._on_output)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self.process, self.lines, self._buffer, self._error, self._cancelled = process, [], b"", "", False
        process.start(sys.executable, command(kind, settings, preset))

    def cancel(self) -> None:
        """First call: stop gracefully (the arm being trained saves a checkpoint); second call: kill."""
        if self.process is None:
            return
        if self._cancelled:
            self.process.kill()
        else:
            self._cancelled = True
            self.process.terminate()

    def shutdown(self, wait_ms: int = 5000) -> None:
        """End the experiment (at app close): stop, wait a little, then kill."""
        process = self.process
        if process is None:
            return
        process.terminate()
        if not process.waitForFinished(wait_ms):
            process.kill()
            process.waitForFinished(2000)

    def _on_output(self) -> None:
        if self.process is None:
            return
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.lines.append(line)
            if line.startswith("llm-train: error:"):
                self._error = line.split(":", 2)[2].strip()
            m = STEP_LINE.match(line)
            if m:
                self.sig_progress.emit(m.group("arm"), int(m.group("step")))
            self.sig_line.emit(line)
        del self.lines[:-MAX_LOG_LINES]

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            self._error = f"cannot start {sys.executable}: {self.process.errorString()}"
            process, self.process = self.process, None
            process.deleteLater()
            self.sig_ended.emit(-1, self._error)

    def _on_finished(self, code: int, status) -> None:
        self._on_output()
        process, self.process = self.process, None
        if process is not None:
            process.deleteLater()
        crashed = status == QProcess.ExitStatus.CrashExit
        self.sig_ended.emit(-1 if crashed else code, self._error)
