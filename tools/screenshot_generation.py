"""Take the README screenshot of the Generation pane: the bundled Shakespeare model, mid-generation.

    xvfb-run -a .venv/bin/python tools/screenshot_generation.py [output.png]

Opens the real main window at 1280x820 with private settings folders, loads the bundled checkpoint (a random
character model if it is missing), types the prompt, steps ``STEPS`` tokens with a fixed seed and top-p 0.9, and
saves the window to assets/screenshots/generation.png.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "screenshots" / "generation.png"
PROMPT = "ROMEO:\n"
STEPS = 42  # with this seed the text ends after a space, where the next-token distribution is wide
SEED = 27
TOP_N = 20  # enough rows to show the top-p cutoff and the tokens it cuts


def _wait(app, until, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("the Generation pane did not finish its work in time")
        app.processEvents()
        time.sleep(0.01)


def main(out: Path = OUT) -> Path:
    home = tempfile.mkdtemp(prefix="llm-playground-shot-")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")  # never touch the user's own settings
    os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
    sys.path.insert(0, str(ROOT))

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    from app.main_window import MainWindow
    from engine.decoding import DecodeSettings

    win = MainWindow()
    win.resize(1280, 820)
    pane = win.generation
    win.show_pane(pane)
    win.show()
    pane.prompt.setPlainText(PROMPT)
    _wait(app, lambda: pane.loaded is not None and pane.snapshot is not None and not pane.busy)
    pane.controls.set_settings(DecodeSettings(top_p=0.9), seed=SEED)
    pane.top_n.setValue(TOP_N)
    for _ in range(STEPS):
        pane.step()
        _wait(app, lambda: not pane.busy)
    settle = time.monotonic() + 0.3  # let the last layout and repaint happen
    _wait(app, lambda: time.monotonic() > settle)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    win.close()
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
