"""The main window: the panes as tabs, the wiring between them, settings, and the About box.

Each pane is a QWidget with ``title``, ``save_settings(s)``, ``restore_settings(s)``, ``confirm_close() -> bool`` and
``shutdown()``. Panes never import each other; the window connects their signals.
"""

import platform

from PySide6.QtCore import QByteArray, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFrame, QMainWindow, QMessageBox, QScrollArea, QTabWidget

from app import __version__
from app.generation.pane import GenerationPane
from app.settings import app_settings, read
from app.tokenization.pane import TokenizationPane
from app.training.pane import TrainingPane

AUTOSAVE_MS = 5000  # typed text and settings are also saved periodically, not only at close


class MainWindow(QMainWindow):
    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.setWindowTitle("LLM Playground")
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)

        self.tokenization = TokenizationPane(reporter=reporter)
        self.training = TrainingPane(reporter=reporter)
        self.generation = GenerationPane(reporter=reporter)
        self.panes = [self.tokenization, self.training, self.generation]
        for pane in self.panes:
            # A scroll area lets the window shrink below a pane's minimum size (small screens, tiling desktops).
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(pane)
            self.tabs.addTab(scroll, pane.title)

        self.training.sig_use_checkpoint.connect(self._on_use_checkpoint)
        self.training.sig_checkpoint_saved.connect(self.generation.set_latest_checkpoint)
        self.tokenization.sig_tokenizer_saved.connect(self.training.refresh_tokenizers)

        self._build_menus()
        self.settings = app_settings()
        self._restore()
        self._autosave = QTimer(self)
        self._autosave.timeout.connect(self.save_state)
        self._autosave.start(AUTOSAVE_MS)

    # ---- menus -------------------------------------------------------------------------------------------------
    def _build_menus(self):
        file_menu = self.menuBar().addMenu("&File")
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        for i, pane in enumerate(self.panes):
            action = QAction(pane.title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.triggered.connect(lambda _=False, i=i: self.tabs.setCurrentIndex(i))
            view_menu.addAction(action)

        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About LLM Playground", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    def about_text(self) -> str:
        import PySide6
        import pyqtgraph
        import tiktoken
        import torch
        from PySide6.QtCore import qVersion

        rows = [
            ("LLM Playground", __version__),
            ("Python", platform.python_version()),
            ("PyTorch", torch.__version__),
            ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
            ("pyqtgraph", pyqtgraph.__version__),
            ("tiktoken", tiktoken.__version__),
            ("CUDA", torch.version.cuda if torch.cuda.is_available() else "not available"),
        ]
        table = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;{v}</td></tr>" for k, v in rows)
        return ("<p>Watch next-token prediction happen: see how text becomes tokens, train a small GPT and watch "
                "its loss fall, then step generation one token at a time.</p>"
                f"<table>{table}</table>")

    def show_about(self):
        box = QMessageBox(QMessageBox.Icon.Information, "About LLM Playground", self.about_text(), parent=self)
        box.setTextFormat(box.textFormat().RichText)
        box.open()
        self._about = box

    def show_pane(self, pane) -> None:
        self.tabs.setCurrentIndex(self.panes.index(pane))

    # ---- cross-pane wiring ---------------------------------------------------------------------------------------
    def _on_use_checkpoint(self, path: str):
        self.generation.load_checkpoint(path)
        self.show_pane(self.generation)

    # ---- state -------------------------------------------------------------------------------------------------
    def _restore(self):
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)
        for pane in self.panes:
            s.beginGroup(type(pane).__name__)
            pane.restore_settings(s)
            s.endGroup()
        self.tabs.setCurrentIndex(min(max(read(s, "window/tab", 0), 0), self.tabs.count() - 1))

    def save_state(self):
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        for pane in self.panes:
            s.beginGroup(type(pane).__name__)
            pane.save_settings(s)
            s.endGroup()
        s.sync()

    def closeEvent(self, event):
        if not all(pane.confirm_close() for pane in self.panes):
            event.ignore()
            return
        self._autosave.stop()
        self.save_state()
        for pane in self.panes:
            pane.shutdown()
        event.accept()
