"""Shared test set-up: headless Qt, a private home for every test, and no uncaught exception goes unnoticed.

pytest-qt's own exception capture does not see exceptions that PySide6 re-raises through ``sys.excepthook``
(slots, virtual methods), nor those of Python threads, so every test runs with hooks that collect them and fails
if any were collected.
"""

import os
import sys
import threading

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Settings, saved text, runs and caches of the app go to a fresh folder per test."""
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))  # never list the user's own models
    # The corpus/token caches are shared across tests (converting the built-in corpora takes seconds).
    monkeypatch.setenv("XDG_CACHE_HOME", str(_shared_cache()))
    return tmp_path


_CACHE = None


def _shared_cache():
    global _CACHE
    if _CACHE is None:
        import tempfile

        _CACHE = tempfile.mkdtemp(prefix="llmp-test-cache-")
    return _CACHE


@pytest.fixture(autouse=True)
def collect_garbage_on_the_main_thread(qapp):
    """As the app does (app.gcguard): no cycle collection in worker threads, which can free Qt objects there."""
    from app.gcguard import collect_on_ui_thread

    collect_on_ui_thread()  # its timer collects whenever a test runs the event loop


@pytest.fixture(autouse=True)
def fail_on_uncaught_exceptions():
    caught = []
    previous = sys.excepthook, threading.excepthook
    sys.excepthook = lambda t, e, tb: caught.append((t, e, tb))
    threading.excepthook = lambda args: caught.append((args.exc_type, args.exc_value, args.exc_traceback))
    yield caught
    sys.excepthook, threading.excepthook = previous
    if caught:
        import traceback

        text = "\n".join("".join(traceback.format_exception(*c)) for c in caught)
        pytest.fail(f"uncaught exception(s) during the test:\n{text}", pytrace=False)


@pytest.fixture
def reporter(qapp):
    """An ErrorReporter that records instead of showing dialogs; a test fails if anything was reported to it that
    it did not expect with :func:`expect_reported`."""
    from app.errors import ErrorReporter

    rep = ErrorReporter(show_dialogs=False)
    rep.expected_reports = []  # substrings of the summaries a test expects (expect_reported)
    yield rep
    from PySide6.QtCore import QCoreApplication

    QCoreApplication.processEvents()
    unexpected = [(s, d) for s, d in rep.reported if not any(text in s for text in rep.expected_reports)]
    if unexpected:
        pytest.fail("errors reported to the user during the test:\n" + "\n".join(s + "\n" + d for s, d in unexpected),
                    pytrace=False)


@pytest.fixture
def expect_reported(reporter, qtbot):
    """A context manager: the block must make ``reporter`` report an error whose summary contains ``text``.

        with expect_reported("worker died (exit code -9)"):
            os.kill(pid, signal.SIGKILL)

    Only that error is allowed: any other report still fails the test. On leaving the block it waits up to
    ``timeout_ms`` for the report (reports arrive through the event loop) and fails if none came.
    """
    from contextlib import contextmanager

    @contextmanager
    def expect(text: str, timeout_ms: int = 5000):
        reporter.expected_reports.append(text)
        yield
        qtbot.waitUntil(lambda: any(text in summary for summary, _ in reporter.reported), timeout=timeout_ms)

    return expect


@pytest.fixture
def tokenization_pane(qtbot, reporter):
    """A shown Tokenization pane, shut down after the test (its test files each call it ``pane``)."""
    from app.tokenization.pane import TokenizationPane

    p = TokenizationPane(reporter=reporter)
    qtbot.addWidget(p)
    p.resize(1200, 760)
    p.show()
    yield p
    p.shutdown()
