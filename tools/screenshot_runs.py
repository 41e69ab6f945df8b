"""Screenshot of the Training pane's Runs tab: the overlaid runs of an experiment and its comparison table.

Opens an experiment folder written by ``llm-train --experiment`` (or, without one, runs a small positions one first
on the built-in Shakespeare corpus) in a private, throw-away app profile, hovers the middle of the curves and grabs
the main window.

    xvfb-run -a .venv/bin/python tools/screenshot_runs.py [--experiment DIR] [--size 1280x820] [--dark] [OUTPUT.png]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "assets" / "screenshots" / "runs.png"
DARK = {"Window": "#2b2b2b", "WindowText": "#e6e6e6", "Base": "#1e1e1e", "AlternateBase": "#2d2d2d",
        "Text": "#e6e6e6", "Button": "#3a3a3a", "ButtonText": "#e6e6e6", "Highlight": "#3d6ea8",
        "HighlightedText": "#ffffff", "ToolTipBase": "#3a3a3a", "ToolTipText": "#e6e6e6"}


def run_experiment(folder: Path) -> None:
    subprocess.run([sys.executable, "-m", "engine.train", "--experiment", "positions", "--preset", "tiny",
                    "--threads", "1", "corpus=shakespeare", f"out_dir={folder}", "max_iters=400",
                    "lr_decay_iters=400", "eval_interval=50", "checkpoint_interval=400"],
                   cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(OUTPUT))
    parser.add_argument("--experiment", help="an experiment folder (default: run a small one first)")
    parser.add_argument("--size", default="1280x820")
    parser.add_argument("--dark", action="store_true", help="a dark palette, as a dark desktop theme gives")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    profile = tempfile.mkdtemp(prefix="llm-playground-shot-")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = os.path.join(profile, var.lower())
    experiment = Path(args.experiment) if args.experiment else Path(profile) / "positions"
    if not args.experiment:
        run_experiment(experiment)
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QEventLoop
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    if args.dark:
        app.setStyle("Fusion")
        palette = QPalette()
        for role, colour in DARK.items():
            palette.setColor(getattr(QPalette.ColorRole, role), QColor(colour))
        app.setPalette(palette)
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()
    from app.main_window import MainWindow

    win = MainWindow()
    win.resize(width, height)
    win.show()
    pane = win.training
    win.show_pane(pane)
    pane.tabs.setCurrentWidget(pane.runs)
    view = pane.runs

    def wait(condition, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not condition():
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)
        return condition()

    try:
        if not view.panel.open(str(experiment)):
            print(view.panel.status.text(), file=sys.stderr)
            return 1
        if not wait(lambda: 0 < len(view.overlay.runs) == view.panel.table.rowCount(), 60):  # every arm shown
            print(f"the arms did not show: {view.status.text()}", file=sys.stderr)
            return 1
        wait(lambda: False, 0.5)
        curves = next(iter(view.overlay.runs.values()))
        view.overlay.show_values_at(float(curves.step[len(curves.step) // 2]))
        wait(lambda: False, 0.5)
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(output))
        print(f"wrote {output}")
    finally:
        for p in win.panes:
            p.shutdown()
        win.settings.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
