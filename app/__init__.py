"""LLM Playground desktop app: PySide6 views and controllers over the Qt-free ``engine`` package."""

__version__ = "0.1.0"
