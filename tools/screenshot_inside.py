"""Take the README screenshot of the Inside pane: the bundled word model's attention while stepping in Generation.

    xvfb-run -a .venv/bin/python tools/screenshot_inside.py [output.png] [--size 900x600] [--dark] [--view N]

Opens the real main window with private settings folders, loads the bundled word-level model in the Generation pane
(the character model if it is missing), types the prompt, steps ``STEPS`` tokens with a fixed seed, shows the Inside
tab's view ``--view`` (0 predictions, 1 attention, 2 logit lens, 3 embeddings, 4 head) and saves the window.
``--dark`` uses a dark Fusion palette, to check the pane reads well on a dark desktop (QT_SCALE_FACTOR=1.5 in the
environment checks a scaled display).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "screenshots" / "inside.png"
PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
STEPS = 12
SEED = 7
MODELS = ("shakespeare-words.pt", "shakespeare-char.pt")  # the first that exists
LAYER = 2


def _wait(app, until, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("the panes did not finish their work in time")
        app.processEvents()
        time.sleep(0.01)


def main(out: Path = OUT, size=(1280, 820), dark: bool = False, view: int = 1) -> Path:
    home = tempfile.mkdtemp(prefix="llm-playground-shot-")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")  # never touch the user's own settings
    os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
    sys.path.insert(0, str(ROOT))

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    if dark:
        from app.theme import dark_palette

        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    from app.main_window import MainWindow
    from engine.decoding import DecodeSettings

    win = MainWindow()
    win.resize(*size)
    gen, inside = win.generation, win.inside
    win.show()
    gen.prompt.setPlainText(PROMPT)
    path = next((ROOT / "assets" / "models" / m for m in MODELS if (ROOT / "assets" / "models" / m).exists()))
    gen.load_checkpoint(str(path))
    _wait(app, lambda: gen.loaded is not None and gen.snapshot is not None and not gen.busy
          and os.path.basename(gen.loaded.source.path) == path.name)
    gen.controls.set_settings(DecodeSettings(top_p=0.9), seed=SEED)
    for _ in range(STEPS):
        gen.step()
        _wait(app, lambda: not gen.busy)
    win.show_pane(inside)
    inside.views.setCurrentIndex(view)
    inside.layer.setValue(min(LAYER, inside.layer.maximum()))
    _wait(app, lambda: inside.result is not None and inside.result.ids == gen.snapshot.ids[-len(inside.result.ids):]
          and not inside.runner.busy)
    settle = time.monotonic() + 0.5  # let the last layout and repaint happen
    _wait(app, lambda: time.monotonic() > settle)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    win.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default=str(OUT))
    parser.add_argument("--size", default="1280x820")
    parser.add_argument("--dark", action="store_true")
    parser.add_argument("--view", type=int, default=1)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(main(Path(args.out), (w, h), args.dark, args.view))
