"""Orphan workers (issue 13): a training process whose app died stops, in every phase, within a second or two of
noticing; one that finds its app gone before importing torch never starts."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.checkpoint import read_checkpoint
from engine.train import TrainConfig
from engine.worker import ParentWatch

pytestmark = pytest.mark.slow  # starts training processes (see `make test-fast`)

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"{name}:\nWhat say you, {i}? I say {i * 7 % 11} and no more.\n\n"
               for i in range(120) for name in ("ROMEO", "JULIET"))

# An "app": launches the run, waits for `until` (a message type, or "now"), prints the worker pids, then blocks
# until it is killed, never reading the queue again.
DYING_APP = """
import multiprocessing, sys, time
sys.path.insert(0, sys.argv[4])
from engine.train import TrainConfig, launch
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    handle = launch(TrainConfig.from_dict(eval(sys.argv[1])), int(sys.argv[2]), q, stop, nice=0)
    until = sys.argv[3]
    while until != "now" and q.get(timeout=300).type != until:
        pass
    print(" ".join(map(str, handle.pids)), flush=True)
    sys.stdin.read()
"""


def tiny(tmp_path, **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    settings = dict(corpus=str(corpus), out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                    n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=10**6,
                    lr_decay_iters=10**6, warmup_iters=2, eval_interval=10**6, eval_iters=2, sample_len=0,
                    checkpoint_interval=0, device="cpu", lr=3e-3)
    settings.update(overrides)
    return TrainConfig(**settings)


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:  # exited but not yet reaped by its new parent: gone too
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_app_and_wait(config, processes: int, until: str, limit: float = 60.0) -> list[int]:
    """Start the dying app, kill it once `until` arrived, and wait for its workers to end -> their pids.

    Fails if a worker outlives `limit` seconds after the app's death (before the fix, workers trained on for
    thousands of steps, or sat in an evaluation for minutes)."""
    app = subprocess.Popen([sys.executable, "-c", DYING_APP, repr(config.to_dict()), str(processes), until,
                            str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        pids = [int(p) for p in app.stdout.readline().split()]
        if until == "now":
            time.sleep(0.5)
    finally:
        app.kill()
        app.wait()
    assert pids, "the app printed no worker pids"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if not gone(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived the app that started them"
    return pids


def test_a_worker_checks_its_parent_before_importing_torch(tmp_path):
    """Regression: the worker recorded its parent only after importing torch; an app that died before that left
    a worker whose parent was already pid 1, so the check never fired and it trained on."""
    from engine.worker import run_worker

    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from engine.worker import run_worker\n"
            f"try:\n    run_worker(1, 0, 1, 0, {tiny(tmp_path).to_dict()!r}, None, None, 1, 0)\n"
            f"finally:\n    print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and r.stdout.strip() == "False", r
    assert not (tmp_path / "run").exists()
    assert run_worker.__module__ == "engine.worker"


def test_the_watch_notices_a_dead_parent():
    watch = ParentWatch(os.getppid(), interval=0.01, exit_after=None).start()
    try:
        assert not watch.orphaned.wait(0.1)
    finally:
        watch.stop()
    watch = ParentWatch(-1, interval=0.01, exit_after=None).start()  # "a parent" we do not have
    assert watch.orphaned.wait(30) and watch.noticed_at is not None


@pytest.mark.parametrize("processes", [1, 2])
def test_app_killed_right_after_start_leaves_no_worker(tmp_path, processes):
    """Regression: killed 0.5 s after Start (1 process) or 1.5 s (2 processes), the workers trained on into the
    folder for thousands of steps. Now they stop while importing torch or encoding, before writing anything, or
    stop as a Stop does if they got further."""
    config = tiny(tmp_path, corpus=str(tmp_path / "big.txt"))
    (tmp_path / "big.txt").write_text(TEXT * 40, encoding="utf-8")
    kill_app_and_wait(config, processes, "now")
    run = tmp_path / "run"
    if (run / "metrics.jsonl").exists():  # it had started training: it stopped as a Stop does, with a checkpoint
        assert read_checkpoint(run / "ckpt.pt")["train"]["iter_num"] >= 0


@pytest.mark.parametrize("processes", [1, 2])
def test_app_killed_during_an_evaluation(tmp_path, processes):
    """Regression: the stop check ran only between steps, so a kill during an evaluation went unnoticed for over
    60 s. This evaluation would never end (10^6 batches per split); the workers leave it and save step 0."""
    config = tiny(tmp_path, eval_iters=10**6, eval_interval=1)
    kill_app_and_wait(config, processes, "started")
    state = read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]
    assert state["iter_num"] == 0 and len(state["rng"]) == processes


def test_app_killed_while_training_saves_and_exits(tmp_path):
    config = tiny(tmp_path)
    kill_app_and_wait(config, 2, "step")
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]["iter_num"] > 0


def test_an_orphan_noticed_while_importing_torch_exits_at_once():
    # before the first step there is nothing to save, so the worker does not wait for its (seconds-long) torch import
    code = ("import os, time\nfrom engine.worker import ParentWatch\n"
            "ParentWatch(os.getppid() + 100000, interval=0.05, exit_after=0.0).start()\ntime.sleep(30)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 3 and time.monotonic() - started < 25
