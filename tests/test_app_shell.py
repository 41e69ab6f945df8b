"""The foundation: the engine stays Qt-free, errors are reported and survived, the window remembers its state."""

import subprocess
import sys
import threading

import pytest
from PySide6.QtCore import QTimer

from tests.conftest import ROOT


def test_engine_never_imports_qt():
    code = (
        "import sys, engine, engine.tokenizers, engine.corpora, engine.model, engine.decoding, engine.checkpoint, "
        "engine.session, engine.data, engine.messages, engine.train, engine.presets\n"
        "engine.get_tokenizer('gpt2'); engine.GPT\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6', 'app'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_engine_import_is_cheap():
    """`import engine` must not pull torch in: the Tokenization pane and the CLI's --help stay fast."""
    code = "import sys, engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_unknown_engine_name_is_an_attribute_error():
    import engine

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        engine.nope


@pytest.fixture
def live_reporter(qapp):
    from app.errors import ErrorReporter

    rep = ErrorReporter(show_dialogs=False)
    rep.install()
    yield rep
    rep.uninstall()


def test_exception_in_a_slot_is_reported_and_survived(qtbot, live_reporter):
    def boom():
        raise RuntimeError("slot exploded")

    QTimer.singleShot(0, boom)
    qtbot.waitUntil(lambda: bool(live_reporter.reported), timeout=3000)
    summary, details = live_reporter.reported[0]
    assert "RuntimeError: slot exploded" in summary
    assert "Traceback" in details and "boom" in details
    # the event loop still runs
    fired = []
    QTimer.singleShot(0, lambda: fired.append(1))
    qtbot.waitUntil(lambda: bool(fired), timeout=1000)


def test_exception_in_a_thread_is_reported_on_the_ui_thread(qtbot, live_reporter):
    def work():
        raise ValueError("worker failed")

    t = threading.Thread(target=work, name="worker-1")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: bool(live_reporter.reported), timeout=3000)
    assert "worker failed" in live_reporter.reported[0][0]
    assert "worker-1" in live_reporter.reported[0][0]


def test_reported_errors_are_logged(qtbot, live_reporter):
    from app.errors import log, setup_logging
    from app.paths import log_file

    setup_logging()
    try:
        live_reporter.report_message("Training worker died", "Traceback: exit code -9")
        for h in log.handlers:
            h.flush()
        assert "Training worker died" in log_file().read_text()
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()


def test_error_dialog_is_non_modal_and_carries_the_traceback(qtbot, qapp):
    from PySide6.QtWidgets import QMessageBox

    from app.errors import ErrorReporter

    rep = ErrorReporter(show_dialogs=True)
    rep.report_message("Oops", "Traceback (most recent call last): here")
    qtbot.waitUntil(lambda: bool(rep._dialogs), timeout=2000)
    box = rep._dialogs[0]
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert box.detailedText().startswith("Traceback")
    assert not box.isModal()
    box.close()


def test_state_files_round_trip_any_text(private_home):
    from app.paths import read_state, write_state

    text = "héllo 👨‍👩‍👧\r\n lone \ud800 surrogate"
    write_state("t.txt", text)
    assert read_state("t.txt") == text
    assert read_state("missing.txt", "default") == "default"


def test_settings_read_coerces_types(private_home):
    from app.settings import app_settings, read

    s = app_settings()
    s.setValue("flag", False)
    s.setValue("n", 7)
    s.sync()
    s2 = app_settings()
    assert read(s2, "flag", True) is False
    assert read(s2, "n", 0) == 7
    assert read(s2, "absent", 3.5) == 3.5


def test_main_window_tabs_about_and_geometry(qtbot, reporter):
    from app.main_window import MainWindow

    win = MainWindow(reporter=reporter)
    qtbot.addWidget(win)
    titles = [win.tabs.tabText(i) for i in range(win.tabs.count())]
    assert titles == ["Tokenization", "Training", "Generation"]
    about = win.about_text()
    import torch

    assert torch.__version__ in about and "PySide6" in about
    win.setGeometry(40, 30, 700, 500)  # fits the offscreen 800x800 screen, so nothing clamps it
    win.tabs.setCurrentIndex(2)
    geometry = win.geometry()
    win.close()

    again = MainWindow(reporter=reporter)
    qtbot.addWidget(again)
    assert again.tabs.currentIndex() == 2
    assert again.geometry() == geometry
    again.close()


def test_python_m_app_entry_point_exists():
    from app.__main__ import main

    assert callable(main)
