"""The main window: the panes as tabs, the wiring between them, menus, settings, and the About box.

Each pane is a QWidget with ``title``, ``save_settings(s)``, ``restore_settings(s)``, ``confirm_close() -> bool`` and
``shutdown()``. Panes never import each other; the window connects their signals.

The window itself imports neither torch nor pyqtgraph, so it can show within a fraction of a second: with
``panes_later=True`` the tabs first hold a "getting ready" note, :meth:`MainWindow.load_panes` imports torch in a
thread behind the visible window, and the panes replace the notes once it is there (``sig_ready``).
"""

import os
import platform
import sys
import threading

from PySide6.QtCore import QByteArray, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QLabel, QMainWindow, QMessageBox, QScrollArea, QTabWidget,
                               QWidget)

from app import __version__
from app.gcguard import freeze_long_lived
from app.settings import app_settings, read
from app.theme import install_style

AUTOSAVE_MS = 5000  # typed text and settings are also saved periodically, not only at close
DEFAULT_SIZE = QSize(1280, 820)
PANE_TITLES = ("Tokenization", "Training", "Generation", "Inside")  # the tabs shown while the panes are getting ready

SHORTCUTS = (
    ("Ctrl+1 … Ctrl+4", "Show the Tokenization, Training, Generation or Inside pane"),
    ("Ctrl+O", "Open a model in the Generation pane"),
    ("Ctrl+Shift+O", "Follow a training run folder"),
    ("Ctrl+Q", "Quit"),
    ("F1", "This list"),
    ("Generation: Ctrl+Right", "Step: draw one token"),
    ("Generation: Ctrl+Left, Ctrl+Z", "Undo the last token"),
    ("Generation: Ctrl+Return", "Run / pause"),
    ("Tokens: click", "Inspect a token (Tokenization), force it (Generation chart) or choose its position (Inside)"),
)

GUIDE = (
    "<h3>Tokenization</h3><p>Type or paste text and see how an encoding splits it into tokens, one colour per token. "
    "Click a token to inspect its bytes; <i>Compare</i> shows several encodings side by side; <i>Decode ids</i> "
    "turns ids back into text; <i>Train BPE</i> makes your own tokenizer from a corpus.</p>"
    "<h3>Training</h3><p>Pick a corpus, a tokenizer and a model size, press <i>Start</i>, and watch the train and "
    "validation loss fall. Samples appear as the model learns. <i>Follow run folder…</i> watches a run started "
    "from the command line (<code>llm-train</code>).</p>"
    "<h3>Generation</h3><p>Step generation one token at a time: the chart shows the model's probabilities for the "
    "next token before and after the decoding controls (temperature, top-k, top-p). Click a bar to force that "
    "token; Undo takes one back exactly.</p>"
    "<h3>Inside</h3><p>What happens between the tokens and the probabilities, on the Generation pane's model and text "
    "(or text you type): how likely the model found each token, the attention of every layer and head, the logit "
    "lens (what each layer would predict), the embeddings and the position scheme, and the head's last step from "
    "hidden state to probabilities. Click a token to choose the position the views show.</p>"
)


def fitted_geometry(wanted: QRect, available: QRect) -> QRect:
    """``wanted`` moved and shrunk so that it lies inside ``available`` (the screen minus task bars).

    >>> fitted_geometry(QRect(0, 0, 1280, 820), QRect(0, 0, 1366, 738)).height() <= 738
    True
    """
    # leave room for the title bar and frame, which the window manager adds outside the client geometry
    margin_w, margin_h = 16, 48
    w = max(200, min(wanted.width(), available.width() - margin_w))
    h = max(150, min(wanted.height(), available.height() - margin_h))
    x = min(max(wanted.x(), available.left()), available.right() - w + 1)
    y = min(max(wanted.y(), available.top()), available.bottom() - h + 1)
    return QRect(x, y, w, h)


def _ready_note(title: str) -> QWidget:
    note = QLabel(f"<p style='font-size:large'>Getting the {title} pane ready…</p>"
                  "<p>Loading PyTorch; this takes a second or two, once per start.</p>")
    note.setAlignment(Qt.AlignmentFlag.AlignCenter)
    note.setWordWrap(True)
    note.setObjectName("ready_note")
    return note


class MainWindow(QMainWindow):
    sig_ready = Signal()
    """The panes exist (emitted once, on the UI thread)."""

    _sig_torch_loaded = Signal(str)  # from the loading thread: "" or the import error

    def __init__(self, reporter=None, parent=None, *, panes_later: bool = False):
        install_style()  # before any pane is built: Fusion's check boxes visible in a dark palette
        super().__init__(parent)
        self.reporter = reporter
        self.setWindowTitle("LLM Playground")
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.setCentralWidget(self.tabs)
        self.panes: list = []
        self.settings = app_settings()
        self._dialogs: list = []
        self._build_menus()
        self._restore_geometry()
        self._autosave = QTimer(self)
        self._autosave.timeout.connect(self.save_state)
        self._sig_torch_loaded.connect(self._on_torch_loaded, Qt.ConnectionType.QueuedConnection)
        if panes_later:
            for title in PANE_TITLES:
                self.tabs.addTab(_ready_note(title), title)
            self.tabs.setCurrentIndex(self._restored_tab())
        else:
            self.build_panes()

    @property
    def ready(self) -> bool:
        return bool(self.panes)

    # ---- panes ---------------------------------------------------------------------------------------------------
    def load_panes(self) -> None:
        """Import torch in a thread (the window stays live), then build the panes on the UI thread."""
        def work():
            try:
                import numpy  # noqa: F401
                import torch  # noqa: F401
                import engine.model  # noqa: F401
                from engine.choices import estimate_params

                # a first model on the meta device imports torch._dynamo (its weight init runs through torch's
                # reference ops): 2-3 s that the Training form's parameter count would otherwise take on the UI thread
                estimate_params({"n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 8}, 8)
            except Exception as exc:  # noqa: BLE001 - shown to the user below
                self._sig_torch_loaded.emit(f"{type(exc).__name__}: {exc}")
            else:
                self._sig_torch_loaded.emit("")

        threading.Thread(target=work, name="import-torch", daemon=True).start()

    def _on_torch_loaded(self, error: str) -> None:
        if error:
            for i in range(self.tabs.count()):
                note = self.tabs.widget(i)
                if isinstance(note, QLabel):
                    note.setText(f"<p>PyTorch could not be loaded:</p><p>{error}</p>")
            return
        QTimer.singleShot(0, self.build_panes)

    def build_panes(self) -> None:
        if self.panes:
            return
        from app.generation.pane import GenerationPane
        from app.inside.pane import InsidePane
        from app.tokenization.pane import TokenizationPane
        from app.training.pane import TrainingPane

        current = self._restored_tab() if self.tabs.count() == 0 else self.tabs.currentIndex()
        self.tokenization = TokenizationPane(reporter=self.reporter)
        self.training = TrainingPane(reporter=self.reporter)
        self.generation = GenerationPane(reporter=self.reporter)
        self.inside = InsidePane(reporter=self.reporter)
        self.panes = [self.tokenization, self.training, self.generation, self.inside]
        self.tabs.setUpdatesEnabled(False)
        notes = [self.tabs.widget(i) for i in range(self.tabs.count())]
        self.tabs.clear()
        for note in notes:
            note.deleteLater()
        for pane in self.panes:
            # A scroll area lets the window shrink below a pane's minimum size (small screens, tiling desktops).
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(pane)
            self.tabs.addTab(scroll, pane.title)
        self.tabs.setUpdatesEnabled(True)

        self.training.sig_use_checkpoint.connect(self._on_use_checkpoint)
        self.training.sig_checkpoint_saved.connect(self.generation.set_latest_checkpoint)
        self.tokenization.sig_tokenizer_saved.connect(self.training.refresh_tokenizers)
        self.generation.sig_context_changed.connect(self.inside.set_context)
        context = self.generation.context()
        if context is not None:
            self.inside.set_context(*context)

        s = self.settings
        for pane in self.panes:
            s.beginGroup(type(pane).__name__)
            pane.restore_settings(s)
            s.endGroup()
        self.tabs.setCurrentIndex(min(max(current, 0), self.tabs.count() - 1))
        for action in self._pane_actions:
            action.setEnabled(True)
        self._autosave.start(AUTOSAVE_MS)
        freeze_long_lived()
        self.sig_ready.emit()

    # ---- menus -------------------------------------------------------------------------------------------------
    def _action(self, menu, text: str, slot, shortcut=None, needs_panes: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        if needs_panes:
            action.setEnabled(False)
            self._pane_actions.append(action)
        return action

    def _build_menus(self):
        self._pane_actions: list[QAction] = []
        file_menu = self.menuBar().addMenu("&File")
        self.open_model_action = self._action(file_menu, "Open &model…", self.open_model, "Ctrl+O", True)
        self._action(file_menu, "Open &run folder…", self.open_run_folder, "Ctrl+Shift+O", True)
        export = file_menu.addMenu("&Export")
        self._action(export, "Training &curves as PNG…", lambda: self.export("curves-png"), None, True)
        self._action(export, "Training curves as &CSV…", lambda: self.export("curves-csv"), None, True)
        self._action(export, "Generation c&hart as PNG…", lambda: self.export("chart"), None, True)
        self._action(export, "&Token table as CSV…", lambda: self.export("tokens"), None, True)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        view_menu = self.menuBar().addMenu("&View")
        for i, title in enumerate(PANE_TITLES):
            self._action(view_menu, title, lambda i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")

        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        self._action(help_menu, "A short &guide to the panes", self.show_guide)
        help_menu.addSeparator()
        self._action(help_menu, "&About LLM Playground", self.show_about)

    def open_model(self) -> None:
        self.show_pane(self.generation)
        self.generation.choose_model()

    def open_run_folder(self) -> None:
        from app.paths import runs_dir

        folder = QFileDialog.getExistingDirectory(self, "Follow a run folder", str(runs_dir()))
        if folder:
            self.show_pane(self.training)
            self.training.follow(folder)

    EXPORTS = {  # kind: (dialog title, default file name, filter)
        "curves-png": ("Export training curves as PNG", "curves.png", "PNG image (*.png)"),
        "curves-csv": ("Export training curves as CSV", "curves.csv", "CSV (*.csv)"),
        "chart": ("Export the next-token chart as PNG", "next-token.png", "PNG image (*.png)"),
        "tokens": ("Export the token table as CSV", "tokens.csv", "CSV (*.csv)"),
    }

    def export(self, kind: str, path: str | None = None) -> None:
        """Ask for a file (unless ``path`` is given) and write what ``kind`` names (see EXPORTS)."""
        if path is None:
            title, name, filters = self.EXPORTS[kind]
            start = os.path.join(self.training.run_dir, name) if kind.startswith("curves") and self.training.run_dir \
                else os.path.join(os.path.expanduser("~"), name)
            path, _ = QFileDialog.getSaveFileName(self, title, start, filters)
            if not path:
                return
        if kind == "curves-png":
            self.training.export_png(path)
        elif kind == "curves-csv":
            self.training.export_csv(path)
        elif kind == "chart":
            self.generation.export_chart(path)
        elif kind == "tokens":
            self.tokenization.export_token_table(path)

    def _show_text(self, title: str, html: str, icon=QMessageBox.Icon.NoIcon) -> QMessageBox:
        box = QMessageBox(icon, title, html, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self._dialogs = [d for d in self._dialogs if d.isVisible()] + [box]
        return box

    def shortcuts_text(self) -> str:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        return f"<table>{rows}</table>"

    def show_shortcuts(self):
        return self._show_text("Keyboard shortcuts", self.shortcuts_text())

    def show_guide(self):
        return self._show_text("The panes", GUIDE)

    def about_text(self) -> str:
        import PySide6
        from PySide6.QtCore import qVersion

        torch = sys.modules.get("torch")  # not imported here: it may still be loading
        pyqtgraph = sys.modules.get("pyqtgraph")
        loading = "loading…"
        rows = [
            ("LLM Playground", __version__),
            ("Python", platform.python_version()),
            ("PyTorch", torch.__version__ if torch else loading),
            ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
            ("pyqtgraph", pyqtgraph.__version__ if pyqtgraph else loading),
            ("CUDA", (torch.version.cuda if torch.cuda.is_available() else "not available") if torch else loading),
        ]
        try:
            from importlib.metadata import version

            rows.insert(5, ("tiktoken", version("tiktoken")))
        except Exception:  # noqa: BLE001 - a version line is not worth a failure
            pass
        table = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;{v}</td></tr>" for k, v in rows)
        return ("<p>Watch next-token prediction happen: see how text becomes tokens, train a small GPT and watch "
                "its loss fall, then step generation one token at a time.</p>"
                f"<table>{table}</table>")

    def show_about(self):
        self._about = self._show_text("About LLM Playground", self.about_text(), QMessageBox.Icon.Information)
        return self._about

    def show_pane(self, pane) -> None:
        self.tabs.setCurrentIndex(self.panes.index(pane))

    # ---- cross-pane wiring ---------------------------------------------------------------------------------------
    def _on_use_checkpoint(self, path: str):
        self.generation.load_checkpoint(path)
        self.show_pane(self.generation)

    # ---- state -------------------------------------------------------------------------------------------------
    def _restored_tab(self) -> int:
        return max(read(self.settings, "window/tab", 0), 0)

    def _restore_geometry(self):
        geometry = self.settings.value("window/geometry")
        restored = isinstance(geometry, QByteArray) and not geometry.isEmpty() and self.restoreGeometry(geometry)
        # Nothing saved (an unshown window only reports Qt's placeholder 640x480, and show() would shrink it to its
        # size hint), or a window saved before it was laid out: the default size, then fitted to the screen.
        if not restored or self.width() < 400 or self.height() < 300:
            self.resize(DEFAULT_SIZE)
        self.fit_to_screen()

    def fit_to_screen(self) -> None:
        """Shrink and move the window so that it lies on the screen it opens on (a laptop, a scaled display)."""
        screen = self.screen()
        if screen is None:
            return
        available = screen.availableGeometry()
        current = self.geometry()
        fitted = fitted_geometry(current, available)
        if fitted.size() != current.size():
            self.resize(fitted.size())
            # centre a default-sized window; a restored one keeps its place as far as it fits
            if self.settings.value("window/geometry") is None:
                fitted.moveCenter(available.center())
                fitted = fitted_geometry(fitted, available)
        if fitted.topLeft() != current.topLeft():
            self.move(fitted.topLeft())

    def save_state(self):
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        for pane in self.panes:
            s.beginGroup(type(pane).__name__)
            pane.save_settings(s)
            s.endGroup()
        s.sync()

    def closeEvent(self, event):  # noqa: N802 (Qt override)
        if not all(pane.confirm_close() for pane in self.panes):
            event.ignore()
            return
        self._autosave.stop()
        if self.panes:
            self.save_state()
        for pane in self.panes:
            pane.shutdown()
        event.accept()
