"""One QSettings file for the whole app (INI, under the XDG config dir, so tests can redirect it)."""

from PySide6.QtCore import QSettings

from app.paths import config_dir


def app_settings() -> QSettings:
    path = config_dir() / "settings.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def read(settings: QSettings, key: str, default, kind=None):
    """QSettings returns strings from INI files; coerce to the default's type (bool needs care: "false" is truthy)."""
    value = settings.value(key, default)
    kind = kind or type(default)
    if value is None:
        return default
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        return kind(value)
    except (TypeError, ValueError):
        return default
