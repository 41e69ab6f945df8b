"""Qt-free events for the panes' state objects: a state object emits, its widgets listen (napari's model/view split).

    >>> changed = Event()
    >>> seen = []
    >>> _ = changed.connect(seen.append)
    >>> changed.emit("running")
    >>> seen
    ['running']
"""

from collections.abc import Callable


class Event:
    """Callbacks called in the order they were connected, with what :meth:`emit` was given, on the emitting thread."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> Callable:
        """Call ``callback`` on every emit (once, however often it is connected); returns it (usable as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):  # a callback may disconnect itself
            callback(*args)
