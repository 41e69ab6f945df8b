"""The body of a training process that ``engine.train.launch`` starts, and its watch on the process that started it.

This module imports neither torch nor the rest of the engine at import time: a spawned child unpickles its target
(this module's :func:`run_worker`) before anything else, and the first thing the worker does is check that its
parent is still the launcher. An app killed 0.5 s after Start used to leave a worker that only looked at its parent
after importing torch, by which time it was already re-parented (to pid 1 or a subreaper), so the check never fired.

After that, a :class:`ParentWatch` thread looks at the parent every ``WATCH_S`` seconds in every phase (importing
torch, encoding the corpus, evaluating, DDP collectives). Once the parent is gone, ``should_stop()`` is true: the
trainer stops as a Stop does (between steps, in an evaluation, while encoding), saving a checkpoint where it can. If
the process is still alive ``ORPHAN_EXIT_S`` later (stuck in a phase that cannot be interrupted), it exits anyway;
the last checkpoint stays, and a save cut short leaves only a temporary file the next run removes.
"""

import os
import signal
import sys
import threading
import time

WATCH_S = 0.25  # how often the parent is looked at: an orphan notices within about this long
ORPHAN_EXIT_S = 20.0  # an orphan still alive this long after noticing exits without waiting any longer


class ParentWatch:
    """A daemon thread that sets ``orphaned`` once the process's parent is no longer ``parent``."""

    def __init__(self, parent: int, interval: float = WATCH_S, exit_after: float | None = ORPHAN_EXIT_S,
                 on_exit=None):
        self.parent = parent
        self.interval = interval
        self.exit_after = exit_after
        self.on_exit = on_exit  # called (e.g. to stop flushing a queue nobody reads) just before a forced exit
        self.orphaned = threading.Event()
        self.noticed_at: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="parent-watch", daemon=True)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent

    def start(self) -> "ParentWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if not self.parent_alive():
                self.noticed_at = time.monotonic()
                self.orphaned.set()
                break
        if self.exit_after is None or not self.orphaned.is_set():
            return
        if self._done.wait(self.exit_after):
            return  # the process ended by itself
        if self.on_exit is not None:
            try:
                self.on_exit()
            except Exception:  # noqa: BLE001 - nothing must keep an orphan alive
                pass
        os._exit(3)


def run_worker(parent: int, rank: int, world_size: int, port: int, config: dict, emit_queue, stop_event,
               threads: int, nice: int) -> None:
    """Entry point of a process started by launch(): train config as one rank of world_size; exit 1 on failure."""
    if os.getppid() != parent:  # the launcher died before we even started: do nothing at all
        sys.exit(3)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the app's terminal: the app stops us via stop_event
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass

    def forget_queue():
        if emit_queue is not None:
            emit_queue.cancel_join_thread()  # nobody reads the queue any more: do not wait at exit to flush it

    # Before torch: its import takes seconds (8 s on a loaded machine), and an orphan noticed then has nothing to save,
    # so it exits at once rather than after the import; from the first step on it stops as a Stop does.
    watch = ParentWatch(parent, exit_after=0.0, on_exit=forget_queue).start()

    def should_stop() -> bool:  # asked to, or the app died without asking: save and end
        return (stop_event is not None and stop_event.is_set()) or watch.orphaned.is_set()

    import torch

    from engine.train import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    watch.exit_after = ORPHAN_EXIT_S
    try:
        train(TrainConfig.from_dict(config), emit_queue.put if emit_queue is not None else None, should_stop)
    except Exception:  # noqa: BLE001 - already reported as a Failed message
        sys.exit(1)
    finally:
        watch.stop()
        if watch.orphaned.is_set() or not watch.parent_alive():
            forget_queue()
