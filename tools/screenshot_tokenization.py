"""Take the README screenshot of the Tokenization pane: assets/screenshots/tokenization.png (1280x820).

Run:  xvfb-run -a .venv/bin/python tools/screenshot_tokenization.py

Opens the real main window with private settings, shows the sample text with cl100k_base, selects a token that is
a piece of an emoji (so the inspector explains it) and grabs the window.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "screenshots" / "tokenization.png"


def main() -> int:
    home = tempfile.mkdtemp(prefix="llm-playground-shot-")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")  # never read or touch the user's settings
    os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
    os.environ["HF_HUB_CACHE"] = os.path.join(home, "hf-hub")  # the picture never shows the models of this machine
    sys.path.insert(0, str(ROOT))
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication(sys.argv)
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    window = MainWindow()
    window.resize(1280, 820)
    window.show()
    pane = window.tokenization
    window.show_pane(pane)
    pane.set_encoding("cl100k_base")

    def settle(condition, timeout=30.0):
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise RuntimeError("the pane did not finish tokenizing in time")
            app.processEvents()
            time.sleep(0.01)

    settle(lambda: pane.analysis is not None and pane.analysis.encoding == "cl100k_base"
           and pane.analysis.text == pane.text())
    spans = pane.analysis.spans
    pane.select_token(next((s.index for s in spans if s.partial), 0))
    hovered = min(3, len(spans) - 1)
    pane.ids_view.set_highlight(hovered)  # as if the mouse were over a token: its id lights up
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        app.processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT))
    print(f"wrote {OUT}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
