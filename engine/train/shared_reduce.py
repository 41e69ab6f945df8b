"""Gradient all-reduce through shared memory, for DDP ranks that all run on this machine's CPU.

gloo sends every bucket of gradients through the loopback network, and every collective is a rendezvous of the
processes: each costs a wake-up of the other rank, and nothing hides them when both cores compute. The CPU preset's
0.80 M gradients took 3.5 ms to all-reduce between two processes, 0.14 of a one-process step, and the step's two
buckets and the loss's own all-reduce made three such rendezvous. Ranks on one machine instead map one file (in
/dev/shm where there is one), and once a step, after the backward pass, exchange everything in one go: each rank
copies its gradients and its step statistics, divided by the number of ranks as DDP's own hook divides them, into
its slot, waits for the others (a barrier: :meth:`SharedReducer.barrier`), and adds the slots up in rank order, so
every rank holds the same mean, bit for bit what gloo gives two ranks; a second barrier keeps a slot from being
overwritten before every rank has read it. What does not fit the slots goes in several rounds.

DDP still decides what is reduced (its buckets; nothing under no_sync): its communication hook here only keeps each
bucket for :meth:`SharedReducer.finish`, which the step calls once its backward passes are done.

``LLM_PLAYGROUND_GLOO_ALLREDUCE=1`` keeps gloo's all-reduce (to compare, or where shared memory misbehaves); ranks
on more than one machine (a rank that does not find rank 0's file with its random mark in it), or a mapping that
fails on any rank, fall back to it on every rank.
"""

import os
import platform
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist

CHUNK_BYTES = 4 << 20  # each rank's slot: a round exchanges at most this much per rank
CONTROL_BYTES = 4096  # before the slots: the barrier's counters, 64 bytes apart (up to 64 ranks)
SPINS = 2000  # a barrier checks this often before it yields the core at each check
BARRIER_TIMEOUT_S = 1800.0  # gloo's own default timeout
OPT_OUT = "LLM_PLAYGROUND_GLOO_ALLREDUCE"
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))  # let another thread or process have the core


class SharedReducer:
    """Averages tensors over the ranks in place, through ``world_size`` slots of ``chunk_bytes`` in a shared file.

    The ranks meet at a barrier before and after reading the slots. On x86-64 (Linux, macOS) it is a counter per
    rank in the file (each rank raises its own and waits, spinning, then yielding, then sleeping, until every counter
    is as high): x86 keeps stores in order, and loads in order, so a rank that sees another's counter raised sees the
    slot written before it; the wait is microseconds, where gloo's barrier is a round trip through the network stack
    and a wake-up of the other process. Elsewhere (weaker memory orders; Windows) gloo's barrier.
    """

    def __init__(self, path: str, rank: int, world_size: int, chunk_bytes: int = CHUNK_BYTES):
        self.rank, self.world_size, self.chunk_bytes = rank, world_size, chunk_bytes
        memory = torch.from_file(path, shared=True, size=CONTROL_BYTES + world_size * chunk_bytes, dtype=torch.uint8)
        self.memory = memory[CONTROL_BYTES:]
        # one counter per rank, a cache line apart
        self.counters = memory[:CONTROL_BYTES].numpy().view(np.int64)[:world_size * 8:8]
        self.generation = 0
        # x86-64 orders stores and loads as the barrier needs; POSIX: _alive() signals 0 (on Windows 0 is Ctrl+C)
        self.spin_barrier = os.name == "posix" and platform.machine().lower() in ("x86_64", "amd64")
        # with fewer cores than ranks, a spinning rank would hold the core the one it waits for needs
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.spins = SPINS if cores >= world_size else 0
        self.pending: list[torch.Tensor] = []  # DDP's buckets of this step, averaged by finish()
        self.pids: list[int] = []  # every rank's process, to notice one that died while the others wait

    def barrier(self) -> None:
        """Wait until every rank has called this as often as this rank has. Spins a little, then yields the core
        at each look, then sleeps between looks; fails at once if a rank it waits for has ended (as gloo does when
        a peer's connection closes)."""
        if not self.spin_barrier:
            dist.barrier()
            return
        self.generation += 1
        self.counters[self.rank] = self.generation
        looks, start, checked = 0, 0.0, 0.0
        while self.counters.min() < self.generation:
            looks += 1
            if looks < self.spins:
                continue
            now = time.monotonic()
            if looks == max(self.spins, 1):
                start = checked = now
            elif now - checked > 0.1:
                checked = now
                self._check_peers()
                if now - start > BARRIER_TIMEOUT_S:
                    raise RuntimeError(f"rank {self.rank}: another rank did not reach the gradient exchange in "
                                       f"{BARRIER_TIMEOUT_S:.0f} s")
            if now - start < 0.05:
                _yield()
            else:
                time.sleep(0.0005)

    def _check_peers(self) -> None:
        for rank, pid in enumerate(self.pids):
            if self.counters[rank] < self.generation and not _alive(pid):
                raise RuntimeError(f"rank {rank} (process {pid}) ended during the gradient exchange")

    def hook(self, state, bucket) -> torch.futures.Future[torch.Tensor]:
        """DDP's communication hook: the bucket is kept, as it is, for :meth:`finish`."""
        self.pending.append(bucket.buffer())
        future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        future.set_result(bucket.buffer())
        return future

    def finish(self, *more: torch.Tensor) -> None:
        """Average the buckets DDP handed over in this backward pass, and ``more`` (e.g. the step's statistics)."""
        tensors, self.pending = [*self.pending, *more], []
        self.average_(tensors)

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Each tensor (contiguous, on the CPU) := its mean over the ranks, the same bits on every rank; the ranks
        pass the same shapes and dtypes in the same order."""
        pieces: list[tuple[torch.Tensor, int]] = []  # (a part of a tensor, where it is in the slot)
        used = 0
        for tensor in tensors:
            flat, start = tensor.view(-1), 0
            if pieces and pieces[0][0].dtype != flat.dtype:
                self._exchange(pieces)
                pieces, used = [], 0
            per = self.chunk_bytes // flat.element_size()
            while start < flat.numel():
                n = min(flat.numel() - start, per - used)
                pieces.append((flat[start:start + n], used))
                start, used = start + n, used + n
                if used == per:
                    self._exchange(pieces)
                    pieces, used = [], 0
        if pieces:
            self._exchange(pieces)

    def _exchange(self, pieces: list[tuple[torch.Tensor, int]]) -> None:
        dtype = pieces[0][0].dtype
        per = self.chunk_bytes // pieces[0][0].element_size()
        slots = self.memory[:self.world_size * per * pieces[0][0].element_size()].view(dtype).view(self.world_size, per)
        for piece, at in pieces:
            torch.div(piece, self.world_size, out=slots[self.rank, at:at + piece.numel()])
        self.barrier()  # every slot written
        for piece, at in pieces:
            end = at + piece.numel()
            piece.copy_(slots[0, at:end])
            for r in range(1, self.world_size):
                piece.add_(slots[r, at:end])
        self.barrier()  # every slot read


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. not ours to signal: it exists
        return True
    return True


def _folder() -> str:
    """Memory-backed where the system has it (Linux), else the temporary folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def shared_reducer(rank: int, world_size: int) -> SharedReducer | None:
    """A SharedReducer on every rank, or None on every rank (gloo stays): ranks on other machines, the opt-out set,
    or a mapping that failed anywhere. Collective: every rank of the process group calls it."""
    wanted = os.environ.get(OPT_OUT, "") in ("", "0") and world_size * 64 <= CONTROL_BYTES
    made, reducer, token = "", None, os.urandom(16)
    if rank == 0 and wanted:
        try:
            fd, made = tempfile.mkstemp(prefix="llm-playground-grads-", dir=_folder())
            try:  # the space itself, now: a full /dev/shm would otherwise kill a rank (SIGBUS) at its first write
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, CONTROL_BYTES + world_size * CHUNK_BYTES)
            finally:
                os.close(fd)
            reducer = SharedReducer(made, rank, world_size)
            reducer.memory[:16] = torch.frombuffer(bytearray(token), dtype=torch.uint8)  # in rank 0's slot
        except (OSError, RuntimeError):
            reducer = None
    shared: list = [made if reducer is not None else "", token]
    dist.broadcast_object_list(shared, src=0)
    path, token = str(shared[0]), bytes(shared[1])
    if rank and wanted and path and os.path.exists(path):
        try:
            reducer = SharedReducer(path, rank, world_size)
        except (OSError, RuntimeError):
            reducer = None
        # the same file, not one of the same name on another machine
        if reducer is not None and bytes(reducer.memory[:16].tolist()) != token:
            reducer = None
    pids: list = [None] * world_size
    dist.all_gather_object(pids, os.getpid())
    if reducer is not None:
        reducer.pids = [int(pid) for pid in pids]
    ok = torch.tensor([int(reducer is not None)])
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)  # also: every rank has mapped the file before it is removed
    if made:
        os.unlink(made)  # the mappings stay; nothing is left behind, whatever happens to the processes later
    return reducer if ok.item() else None
