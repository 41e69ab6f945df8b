"""Local training processes for the app: launch() spawns them (gloo on the CPU), LocalRun watches and stops them."""

import os
import time

from engine.train.config import ConfigError, TrainConfig, problems
from engine.train.distributed import _free_port
from engine.worker import run_worker


class LocalRun:
    """The processes of one launch(): poll(), join(timeout), stop through the stop_event, kill() as a last resort."""

    def __init__(self, processes, emit_queue=None, stop_event=None):
        self.processes = processes
        # held so they outlive the children's start-up even if the caller drops its own references
        self.emit_queue, self.stop_event = emit_queue, stop_event

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    @property
    def exitcodes(self) -> list[int | None]:
        return [p.exitcode for p in self.processes]

    def is_alive(self) -> bool:
        return any(p.is_alive() for p in self.processes)

    def poll(self) -> bool:
        """True once every process has exited. If one failed, the others are killed (they would wait for it)."""
        if any(code not in (None, 0) for code in self.exitcodes):
            self.kill()
        return not self.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to timeout seconds (None: forever) for all processes -> whether all have exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for p in self.processes:
                if p.is_alive():
                    p.join(0.05 if left is None else min(0.05, left))
                    break
        for p in self.processes:
            p.join()
        return True

    def kill(self) -> None:
        for p in self.processes:
            if p.is_alive():
                p.kill()

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exitcodes)


def launch(config: TrainConfig, world_size: int = 1, emit_queue=None, stop_event=None, *, threads: int = 1,
           nice: int = 5) -> LocalRun:
    """Start world_size training processes on this machine (spawn; gloo on the CPU) -> LocalRun. Returns at once.

    emit_queue and stop_event come from multiprocessing.get_context("spawn") (Queue(), Event()): rank 0 puts
    every message on the queue; set the event to stop the run (a checkpoint is saved first). A process whose
    launcher dies stops the same way within a second (engine.worker.ParentWatch). Each process uses
    `threads` torch threads and lowers its priority by `nice`, which keeps a UI in the parent responsive.
    """
    import multiprocessing

    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
    found = problems(config, world_size=world_size)
    if found:
        raise ConfigError(found[0])
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    # the target lives in a module that does not import torch: a child checks its parent before that import
    processes = [ctx.Process(target=run_worker, name=f"llm-train-rank{rank}", daemon=True,
                             args=(os.getpid(), rank, world_size, port, config.to_dict(), emit_queue, stop_event,
                                   threads, nice))
                 for rank in range(world_size)]
    for p in processes:
        p.start()
    return LocalRun(processes, emit_queue, stop_event)
