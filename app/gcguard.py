"""Python's cycle collector runs in whatever thread happens to allocate when a threshold is crossed — often a worker
thread loading a model. If it then frees a Qt object, Qt is touched from the wrong thread and the process crashes
(seen: "QBasicTimer::start: Timers cannot be started from another thread", then a segfault in the Generation
pane's benchmark). So the automatic collector is switched off and a UI-thread timer collects instead, with
pyqtgraph's GarbageCollector, which does exactly that.

Once the panes are built, everything alive (torch, Qt, pyqtgraph and the panes: about 500 000 objects) is frozen out
of the collector's sight: a full collection scanned them all, 0.33-0.37 s on the UI thread every minute or two, the
longest stall of a training run.
"""

import gc

_guard = None


def collect_on_ui_thread(interval_s: float = 1.0):
    """Start (once) collecting garbage from a timer on the calling thread, which must be the UI thread."""
    global _guard
    if _guard is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _guard = GarbageCollector(interval=interval_s)
    return _guard


def freeze_long_lived() -> None:
    """Leave the objects alive now out of every later collection (``gc.freeze``). They are modules, classes and
    widgets that live as long as the app; reference counting still frees what they let go, only a cycle among them
    would stay. Later full collections scan what was made since, in a few milliseconds."""
    gc.freeze()
