"""Every uncaught exception (slot, timer, thread) is logged, shown in a dialog with its traceback, and survived.

PySide6 re-raises exceptions from slots and virtual methods through ``sys.excepthook``; threads go through
``threading.excepthook``. Both land in :class:`ErrorReporter`, which hops to the UI thread with a queued signal.
"""

import logging
import sys
import threading
import traceback

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox

from app.paths import log_file

log = logging.getLogger("llm_playground")


def setup_logging() -> None:
    if log.handlers:
        return
    handler = logging.FileHandler(log_file(), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class ErrorReporter(QObject):
    """Turns exceptions into a modal dialog, one at a time (later ones wait their turn).

    Keeps a list of what it reported (the tests read it)."""

    sig_error = Signal(str, str)
    """(one-line summary, full traceback) — emitted on the UI thread."""

    def __init__(self, parent=None, show_dialogs: bool = True):
        super().__init__(parent)
        self.show_dialogs = show_dialogs
        self.reported: list[tuple[str, str]] = []
        self._dialogs: list[QMessageBox] = []  # the one dialog showing (a list: empty when none)
        self._queue: list[tuple[str, str]] = []  # errors waiting for it to close
        self._previous = (sys.excepthook, threading.excepthook)
        self.sig_error.connect(self._on_error, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def uninstall(self) -> None:
        sys.excepthook, threading.excepthook = self._previous

    def _excepthook(self, exc_type, exc, tb):
        self.report(exc_type, exc, tb)

    def _thread_excepthook(self, args):
        if args.exc_type is SystemExit:
            return
        self.report(args.exc_type, args.exc_value, args.exc_traceback, where=f"thread {args.thread.name}")

    def report(self, exc_type, exc, tb, where: str = "") -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        summary = f"{exc_type.__name__}: {exc}" + (f" (in {where})" if where else "")
        log.error("uncaught exception %s\n%s", summary, text)
        self.sig_error.emit(summary, text)  # queued: safe from any thread

    def report_message(self, summary: str, details: str) -> None:
        """For errors that arrive as text, e.g. a traceback from a worker process."""
        log.error("%s\n%s", summary, details)
        self.sig_error.emit(summary, details)

    @Slot(str, str)
    def _on_error(self, summary: str, details: str) -> None:
        self.reported.append((summary, details))
        if not self.show_dialogs or QApplication.instance() is None:
            return
        self._queue.append((summary, details))
        if self._dialogs:  # one dialog at a time: a later error waits its turn instead of hiding behind another
            self._update_waiting(self._dialogs[0])
            return
        self._show_next()

    def _show_next(self) -> None:
        if not self._queue:
            return
        summary, details = self._queue.pop(0)
        box = QMessageBox(QMessageBox.Icon.Critical, "Something went wrong",
                          f"{summary}\n\nThe app keeps running; nothing you typed was lost. "
                          f"Details are in the log:\n{log_file()}", parent=_parent_window())
        box.setDetailedText(details)
        # Modal, so it stays in front of the window it belongs to and cannot get lost behind a later dialog.
        box.setWindowModality(Qt.WindowModality.ApplicationModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _=0, b=box: self._on_closed(b))
        self._dialogs.append(box)
        self._update_waiting(box)
        box.show()

    def _update_waiting(self, box: QMessageBox) -> None:
        n = len(self._queue)
        box.setInformativeText(f"{n} more {'error follows' if n == 1 else 'errors follow'} after this one."
                               if n else "")

    def _on_closed(self, box: QMessageBox) -> None:
        if box in self._dialogs:
            self._dialogs.remove(box)
        self._show_next()


def _parent_window():
    """The active main window, so the dialog is centred on it and stays above it."""
    app = QApplication.instance()
    window = app.activeWindow() if app is not None else None
    return window.window() if window is not None else None
