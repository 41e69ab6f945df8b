"""Start-up: from process start to the first exposed window, and to the panes being ready.

    xvfb-run -a python bench/bench_startup.py        (or QT_QPA_PLATFORM=offscreen)

The baseline, measured in the same run, is the old start order: a process that imports PySide6 and torch before it
could show anything (``python -c "import PySide6.QtWidgets, torch"``). Each figure is the median of a few runs.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = 5


def _launch() -> tuple[float, float]:
    env = dict(os.environ, LLM_PLAYGROUND_STARTUP_PROBE="1", PYTHONPATH=ROOT)
    home = tempfile.mkdtemp(prefix="llmp-bench-")
    env.update(XDG_CONFIG_HOME=os.path.join(home, "c"), XDG_DATA_HOME=os.path.join(home, "d"))
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    marks = dict(line.split() for line in out.stdout.splitlines() if line.startswith(("first-window", "panes-ready")))
    if len(marks) != 2:
        raise SystemExit(f"the app did not report its start-up:\n{out.stdout}\n{out.stderr}")
    return float(marks["first-window"]) - t0, float(marks["panes-ready"]) - t0


def _baseline() -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import PySide6.QtWidgets, torch"], check=True, timeout=120)
    return time.time() - t0


def main() -> None:
    _launch()  # warm the file cache
    firsts, readies, bases = [], [], []
    for _ in range(RUNS):
        first, ready = _launch()
        firsts.append(first)
        readies.append(ready)
        bases.append(_baseline())
    first, ready, base = (statistics.median(v) for v in (firsts, readies, bases))
    print(f"first window   {first:6.2f} s  (median of {RUNS}; target < 1.5 s)")
    print(f"panes ready    {ready:6.2f} s")
    print(f"import PySide6+torch (baseline, before anything could show) {base:6.2f} s")
    print(f"first window / baseline = {first / base:.2f}")


if __name__ == "__main__":
    main()
