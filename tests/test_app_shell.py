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


def test_error_dialogs_are_modal_one_at_a_time_and_carry_the_traceback(qtbot, qapp):
    from PySide6.QtWidgets import QMessageBox

    from app.errors import ErrorReporter

    rep = ErrorReporter(show_dialogs=True)
    rep.report_message("Oops", "Traceback (most recent call last): here")
    rep.report_message("Second", "Traceback: two")
    rep.report_message("Third", "Traceback: three")
    qtbot.waitUntil(lambda: len(rep.reported) == 3, timeout=2000)
    assert len(rep._dialogs) == 1  # later errors wait; they do not pile up behind the first
    box = rep._dialogs[0]
    assert isinstance(box, QMessageBox) and box.isVisible() and box.isModal()
    assert box.detailedText().startswith("Traceback")
    assert "2 more errors" in box.informativeText()
    box.done(0)
    qtbot.waitUntil(lambda: bool(rep._dialogs) and rep._dialogs[0] is not box, timeout=2000)
    second = rep._dialogs[0]
    assert "Second" in second.text() and "1 more error follows" in second.informativeText()
    second.done(0)
    third = rep._dialogs[0]
    assert "Third" in third.text() and third.informativeText() == ""
    third.done(0)
    assert rep._dialogs == []


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
    assert titles == ["Tokenization", "Training", "Generation", "Inside"]
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


def test_the_panes_objects_are_frozen_out_of_full_collections(qtbot, reporter):
    """A full collection scanned every module, class and widget of the app: 0.3 s on the UI thread with the panes
    built. Once they are, what is alive is frozen and the collector sees only what is made since."""
    import gc

    from app.main_window import MainWindow

    frozen_before = gc.get_freeze_count()
    win = MainWindow(reporter=reporter)
    qtbot.addWidget(win)
    assert win.ready
    assert gc.get_freeze_count() > frozen_before
    assert not any(isinstance(obj, MainWindow) for obj in gc.get_objects())  # the window itself is frozen
    win.close()


def test_python_m_app_entry_point_exists():
    from app.__main__ import main

    assert callable(main)


def test_first_window_shows_before_torch_and_the_panes_follow(qtbot, reporter):
    """The window module imports neither torch nor pyqtgraph; with panes_later the tabs say they are getting ready."""
    code = ("import sys; import app.main_window, app.__main__\n"
            "bad = [m for m in ('torch', 'pyqtgraph', 'numpy') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr

    from app.main_window import PANE_TITLES, MainWindow

    win = MainWindow(reporter=reporter, panes_later=True)
    qtbot.addWidget(win)
    assert not win.ready
    assert [win.tabs.tabText(i) for i in range(win.tabs.count())] == list(PANE_TITLES)
    assert "getting" in win.tabs.widget(0).text().lower()
    assert not win.open_model_action.isEnabled()
    assert "loading" in win.about_text() or "torch" in sys.modules
    with qtbot.waitSignal(win.sig_ready, timeout=60000):
        win.load_panes()
    assert win.ready and win.open_model_action.isEnabled()
    assert [win.tabs.tabText(i) for i in range(win.tabs.count())] == list(PANE_TITLES)
    assert win.tabs.widget(0).widget() is win.tokenization
    win.close()


def test_window_fits_the_screen_it_opens_on(qtbot, reporter):
    from PySide6.QtCore import QRect

    from app.main_window import MainWindow, fitted_geometry

    # a 1366x768 laptop (minus a task bar), and 1600x1000 at scale 1.5 (1066x666 device-independent pixels)
    for available in (QRect(0, 0, 1366, 738), QRect(0, 0, 1066, 666), QRect(100, 50, 800, 600)):
        fitted = fitted_geometry(QRect(0, 0, 1280, 820), available)
        assert available.contains(fitted), (available, fitted)
    assert fitted_geometry(QRect(10, 10, 300, 200), QRect(0, 0, 1366, 738)) == QRect(10, 10, 300, 200)

    win = MainWindow(reporter=reporter, panes_later=True)  # the default 1280x820 on the 800x800 offscreen screen
    qtbot.addWidget(win)
    assert win.screen().availableGeometry().contains(win.geometry())


def test_first_launch_opens_at_the_default_size_fitted_to_the_screen(qtbot, reporter, private_home):
    # Regression: with no saved geometry the unshown window reported Qt's placeholder 640x480, the default size was
    # never applied, and show() shrank the window to its size hint (204x123 seen under Xvfb).
    from PySide6.QtCore import QPoint, QRect

    from app.main_window import DEFAULT_SIZE, MainWindow, fitted_geometry

    for panes_later in (True, False):
        win = MainWindow(reporter=reporter, panes_later=panes_later)
        qtbot.addWidget(win)
        available = win.screen().availableGeometry()
        want = fitted_geometry(QRect(QPoint(0, 0), DEFAULT_SIZE), available).size()
        win.show()
        qtbot.waitExposed(win)
        assert win.size() == want, (win.size(), want, available)


def test_menus_open_export_and_help(qtbot, reporter, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.main_window import MainWindow

    win = MainWindow(reporter=reporter)
    qtbot.addWidget(win)
    menus = {a.text().replace("&", ""): a.menu() for a in win.menuBar().actions()}
    file_items = [a.text().replace("&", "") for a in menus["File"].actions() if a.text()]
    assert file_items == ["Open model…", "Open run folder…", "Export", "Quit"]
    help_items = [a.text().replace("&", "") for a in menus["Help"].actions() if a.text()]
    assert help_items == ["Keyboard shortcuts", "A short guide to the panes", "About LLM Playground"]

    win.show()
    win.open_model()  # the Generation pane's model list opens: hub models, bundled ones, and the Open… entries
    picker = win.generation.source_box
    assert picker.view().isVisible() and win.tabs.currentIndex() == win.panes.index(win.generation)
    assert any("Open model folder" in text for text, _ in picker.entries)
    picker.hidePopup()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    win.open_run_folder()
    assert win.training.state == "following" and win.tabs.currentIndex() == win.panes.index(win.training)

    win.tokenization.set_text("Hello world")
    qtbot.waitUntil(lambda: win.tokenization.analysis is not None and win.tokenization.analysis.n_tokens == 2,
                    timeout=10000)
    win.export("tokens", str(tmp_path / "tokens.csv"))
    rows = (tmp_path / "tokens.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "index,id,text,bytes,char_start,char_end" and len(rows) == 3
    assert rows[1].startswith("0,") and "Hello" in rows[1]
    win.export("chart", str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    win.export("curves-csv", str(tmp_path / "curves.csv"))
    assert (tmp_path / "curves.csv").exists()

    box = win.show_shortcuts()
    assert "Ctrl+Right" in box.text() and box.isModal()
    box.close()
    assert "Training" in win.show_guide().text()
    win.training.stop()
    win.close()


def test_colours_come_from_the_palette(qtbot, reporter):
    """In a dark palette the selected token's characters use the highlight pair and the plots are dark."""
    from PySide6.QtGui import QColor, QPalette

    from app.theme import hint_color, is_dark, selection_colors, style_plots
    from app.training.curves import CurvesWidget
    from app.training.history import History

    dark = QPalette()
    for role, colour in (("Window", "#2b2b2b"), ("WindowText", "#e6e6e6"), ("Base", "#1e1e1e"),
                         ("Text", "#e6e6e6"), ("Highlight", "#2f65ca"), ("HighlightedText", "#ffffff")):
        dark.setColor(getattr(QPalette.ColorRole, role), QColor(colour))
    curves = CurvesWidget(History())
    qtbot.addWidget(curves)
    curves.graphics.setPalette(dark)
    style_plots(curves.graphics)
    assert curves.graphics.backgroundBrush().color() == QColor("#1e1e1e")
    axis = curves.loss_plot.getAxis("left")
    assert axis.textPen().color() == QColor("#e6e6e6")
    curves.setPalette(dark)
    assert is_dark(curves) and QColor(hint_color(curves)).lightness() > 128  # readable, not grey on grey
    assert selection_colors(curves) == (QColor("#2f65ca"), QColor("#ffffff"))

    from app.tokenization.pane import TokenizationPane

    pane = TokenizationPane(reporter=reporter)
    qtbot.addWidget(pane)
    pane.editor.setPalette(dark)
    pane.set_text("Hello world")
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.n_tokens == 2, timeout=10000)
    pane.select_token(1)
    (selection,) = pane.editor.extraSelections()
    assert selection.format.background().color() == QColor("#2f65ca")
    assert selection.format.foreground().color() == QColor("#ffffff")
