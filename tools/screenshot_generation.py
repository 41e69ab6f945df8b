"""Take the README screenshots of the Generation pane, mid-generation.

    xvfb-run -a .venv/bin/python tools/screenshot_generation.py [--hf] [--size 1280x820] [--dark] [--error] [output.png]

Opens the real main window with private settings folders. By default it loads the bundled Shakespeare model (a random
character model if it is missing), types the prompt, steps ``STEPS`` tokens with a fixed seed and top-p 0.9, and
saves the window to assets/screenshots/generation.png. With --hf it first writes a tiny Llama-style model with
random weights by transformers' save_pretrained (tests/hf_tiny.py: width 32, GPT-2's tokenizer, a chat template)
into a private Hugging Face cache, picks it in the model list as a user would, and steps it with a chat prompt:
assets/screenshots/generation-hf.png. --dark uses a dark Fusion palette; QT_SCALE_FACTOR is honoured. --error then
opens a corrupt checkpoint, so the shot shows the pane's error banner (the model stays).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "screenshots" / "generation.png"
OUT_HF = ROOT / "assets" / "screenshots" / "generation-hf.png"
PROMPT = "ROMEO:\n"
STEPS = 42  # with this seed the text ends after a space, where the next-token distribution is wide
SEED = 27
TOP_N = 20  # enough rows to show the top-p cutoff and the tokens it cuts
HF_PROMPT = "Tell me a story."
HF_STEPS = 12


def _wait(app, until, timeout: float = 300.0):
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("the Generation pane did not finish its work in time")
        app.processEvents()
        time.sleep(0.01)


def _dark(app):
    from app.theme import dark_palette

    app.setStyle("Fusion")
    app.setPalette(dark_palette())


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", action="store_true", help="step a tiny random imported Hugging Face model")
    parser.add_argument("--size", default="1280x820", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--dark", action="store_true", help="a dark palette")
    parser.add_argument("--error", action="store_true", help="open a corrupt checkpoint last: the error banner")
    parser.add_argument("out", nargs="?", help="where to save the PNG")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else (OUT_HF if args.hf else OUT)
    width, height = (int(v) for v in args.size.lower().split("x"))

    home = tempfile.mkdtemp(prefix="llm-playground-shot-")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, "config")  # never touch the user's own settings
    os.environ["XDG_DATA_HOME"] = os.path.join(home, "data")
    sys.path.insert(0, str(ROOT))
    if args.hf:
        sys.path.insert(0, str(ROOT / "tests"))
        import hf_tiny

        hub = os.path.join(home, "hub")
        made = os.path.join(home, "made")
        hf_tiny.make_llama(made)
        hf_tiny.put_in_hub_cache(hub, "tiny-random/llama-chat", made)
        os.environ["HF_HUB_CACHE"] = hub

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    if args.dark:
        _dark(app)
    from app.gcguard import collect_on_ui_thread
    collect_on_ui_thread()  # no garbage collection in worker threads (see app/gcguard.py)
    from app.main_window import MainWindow
    from engine.decoding import DecodeSettings

    win = MainWindow()
    win.resize(width, height)
    pane = win.generation
    win.show_pane(pane)
    win.show()
    pane.prompt.setPlainText(HF_PROMPT if args.hf else PROMPT)
    _wait(app, lambda: pane.loaded is not None and pane.snapshot is not None and not pane.busy)
    if args.hf:
        row = next(i for i, (text, _) in enumerate(pane.source_box.entries) if "tiny-random/llama-chat" in text)
        pane.source_box.choose(row)
        _wait(app, lambda: pane.loaded is not None and pane.loaded.source.kind == "hf" and not pane.busy)
        pane.chat.setChecked(True)
        _wait(app, lambda: not pane.busy and pane.state.prompt is not None and pane.state.prompt.rendered)
    pane.controls.set_settings(DecodeSettings(top_p=0.9), seed=SEED)
    pane.top_n.setValue(TOP_N)
    for _ in range(HF_STEPS if args.hf else STEPS):
        pane.step()
        _wait(app, lambda: not pane.busy)
    if args.error:
        broken = Path(home) / "broken.pt"
        broken.write_bytes(b"PK\x03\x04 not a checkpoint")
        pane.load_checkpoint(str(broken))
        _wait(app, lambda: not pane.busy and not pane.banner.isHidden())
    settle = time.monotonic() + 0.3  # let the last layout and repaint happen
    _wait(app, lambda: time.monotonic() > settle)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    win.close()
    return out


if __name__ == "__main__":
    print(main())
