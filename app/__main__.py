"""``python -m app`` and the ``llm-playground`` launcher open the main window."""

import sys


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
    window = MainWindow(reporter=reporter)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
