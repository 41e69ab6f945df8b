"""``python -m app`` and the ``llm-playground`` launcher open the main window.

The window shows first and torch is imported behind it (see ``MainWindow.load_panes``): a first window within a
second instead of three. ``LLM_PLAYGROUND_STARTUP_PROBE=1`` prints when the window was first exposed and when the
panes were ready (wall-clock ``time.time()``), then quits: ``bench/bench_startup.py`` measures with it.
"""

import os
import sys
import time


def main(argv=None) -> int:
    from PySide6.QtWidgets import QApplication

    from app import __version__
    from app.errors import ErrorReporter, setup_logging
    from app.gcguard import collect_on_ui_thread
    from app.main_window import MainWindow

    argv = sys.argv if argv is None else argv
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("LLM Playground")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("LLM Playground")
    setup_logging()
    collect_on_ui_thread()
    reporter = ErrorReporter(app)
    reporter.install()
    window = MainWindow(reporter=reporter, panes_later=True)
    if os.environ.get("LLM_PLAYGROUND_STARTUP_PROBE"):
        _probe(window)
    window.show()
    window.load_panes()
    return app.exec()


def _probe(window) -> None:
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    class Exposed(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Expose and obj.isExposed() and not self.seen:
                self.seen = True
                print(f"first-window {time.time():.4f}", flush=True)
            return False

    def ready():
        print(f"panes-ready {time.time():.4f}", flush=True)
        QTimer.singleShot(200, QApplication.quit)

    watcher = Exposed(window)
    watcher.seen = False
    window.winId()  # creates the QWindow, so its expose events can be watched
    window.windowHandle().installEventFilter(watcher)
    window.sig_ready.connect(ready)


if __name__ == "__main__":
    sys.exit(main())
