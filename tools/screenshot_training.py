"""Screenshot of the Training pane during a real run: assets/screenshots/training.png (1280x820).

Trains nanoGPT's CPU shakespeare-char preset on the built-in Shakespeare corpus in a private, throw-away app
profile, grabs the main window once the run is past step 600 (three evaluations, their samples), then stops the run.

    xvfb-run -a .venv/bin/python tools/screenshot_training.py [OUTPUT.png]
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "assets" / "screenshots" / "training.png"
SHOT_AT_STEP = 600
TIMEOUT_S = 600


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else OUTPUT
    profile = tempfile.mkdtemp(prefix="llm-playground-shot-")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = os.path.join(profile, var.lower())
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    from app.main_window import MainWindow

    win = MainWindow()
    win.resize(1280, 820)
    win.show()
    pane = win.training
    win.show_pane(pane)
    form = pane.form
    form.choose_preset("shakespeare-char-cpu")
    form.set_values({**form.values(), "corpus": "shakespeare"})
    pane.recheck()
    if not pane.start_button.isEnabled():
        print(f"cannot start: {pane.problems.text()}", file=sys.stderr)
        return 1

    def wait(condition, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not condition():
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)
        return condition()

    pane.start_button.click()
    ok = wait(lambda: pane.history.last_step >= SHOT_AT_STEP or pane.state == "idle", TIMEOUT_S)
    try:
        if not ok or pane.state == "idle":
            print(f"the run did not reach step {SHOT_AT_STEP}: {pane.status.text()}", file=sys.stderr)
            return 1
        pane.redraw()
        wait(lambda: False, 0.5)  # let the plots repaint
        output.parent.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(output))
        print(f"wrote {output} at step {pane.history.last_step}: {pane.progress_text.text()}")
    finally:
        for p in win.panes:
            p.shutdown()
        win.settings.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
