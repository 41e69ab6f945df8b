"""Where the app keeps its files: settings, the user's text, trained tokenizers, run folders and the log.

Follows the XDG base-directory variables, so tests (and users) can move everything by setting them.
"""

import os
from pathlib import Path

APP_DIR = "llm-playground"


def _xdg(var: str, default: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / default) / APP_DIR


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def _sub(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def tokenizers_dir() -> Path:
    """Tokenizers trained in the app; the Training pane offers every file here."""
    return _sub("tokenizers")


def runs_dir() -> Path:
    """Default parent of the training run folders the app starts."""
    return _sub("runs")


def state_dir() -> Path:
    """Text the user typed (prompt, tokenizer input), saved so that closing the app loses nothing."""
    return _sub("state")


def log_file() -> Path:
    return _sub("logs") / "llm-playground.log"


def read_state(name: str, default: str = "") -> str:
    path = state_dir() / name
    try:
        with open(path, encoding="utf-8", errors="surrogatepass", newline="") as f:  # keep \r\n as typed
            return f.read()
    except (FileNotFoundError, UnicodeDecodeError):
        return default


def write_state(name: str, text: str) -> None:
    """Atomic write, so a crash mid-save keeps the previous text."""
    from engine.fileio import atomic_write

    with atomic_write(state_dir() / name, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
        f.write(text)


def assets_dir() -> Path:
    """The repository's assets/ (icons, presets, the bundled checkpoint)."""
    return Path(__file__).resolve().parent.parent / "assets"


def bundled_checkpoint() -> Path:
    """The small Shakespeare model the project trains itself (see README) — what Generation shows on first launch."""
    return assets_dir() / "models" / "shakespeare-char.pt"
