"""One run per folder (issue 13): the flock, who holds it, what a refused writer is told, stale temporary files."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.messages import Failed
from engine.runlock import LOCK_NAME, RunFolderBusy, RunFolderError, RunLock, remove_stale_temporaries
from engine.runs import RunFolder
from engine.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"{name}:\nWhat say you, {i}? I say {i * 7 % 11} and no more.\n\n"
               for i in range(120) for name in ("ROMEO", "JULIET"))
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=4, lr_decay_iters=4,
            warmup_iters=1, eval_interval=4, eval_iters=1, sample_len=0, checkpoint_interval=0, device="cpu")

# holds the lock of argv[1] until its stdin closes (or it is killed)
HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from engine.runlock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


def tiny(tmp_path, name="run", **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT, encoding="utf-8")
    return TrainConfig(**{"corpus": str(corpus), "out_dir": str(tmp_path / name), **TINY, **overrides})


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock of tmp_path/run -> (Popen, folder)."""
    procs = []

    def start(folder):
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(ROOT)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, holder):
    folder = tmp_path / "run"
    p = holder(folder)
    who = RunFolder(folder).holder()
    assert who is not None and who.pid == p.pid and who.host and who.started > 0
    msgs = []
    with pytest.raises(RunFolderBusy, match=rf"in use by another run \(pid {p.pid} on host .+, since 20\d\d-"):
        train(tiny(tmp_path), msgs.append)
    assert isinstance(msgs[-1], Failed) and f"pid {p.pid}" in msgs[-1].error and msgs[-1].traceback == ""
    assert sorted(os.listdir(folder)) == [LOCK_NAME]  # nothing of the refused run was written


def test_the_lock_dies_with_its_process(tmp_path, holder):
    folder = tmp_path / "run"
    p = holder(folder)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert RunFolder(folder).holder() is None
    with RunLock(folder) as lock:
        assert lock.held and RunFolder(folder).holder().pid == os.getpid()
    assert RunFolder(folder).holder() is None


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()


@pytest.mark.slow
def test_two_runs_in_one_folder_the_cli_refuses_the_second(tmp_path, holder):
    """Regression: two runs on one out_dir both exited 0 and the folder ended with a mix of both."""
    tiny(tmp_path)  # writes the corpus
    holder(tmp_path / "run")
    args = [f"{k}={v}" for k, v in tiny(tmp_path).to_dict().items() if k != "resume"]
    r = subprocess.run([sys.executable, "-m", "engine.train", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"llm-train: error: {tmp_path / 'run'} is in use by another run "
                                             f"({RunFolder(tmp_path / 'run').holder().describe()}); stop that run "
                                             f"first or choose another out_dir"]
    assert sorted(os.listdir(tmp_path / "run")) == [LOCK_NAME]


@pytest.mark.slow
def test_two_resumes_of_one_folder_the_second_is_refused(tmp_path, holder):
    """Regression: two --resume of one folder both ran; steps went backwards and the shorter run's checkpoint won."""
    assert train(tiny(tmp_path)).outcome == "completed"
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("ckpt.pt", "metrics.jsonl", "config.json")}
    p = holder(tmp_path / "run")
    r = subprocess.run([sys.executable, "-m", "engine.train", "--resume", str(tmp_path / "run"), "max_iters=8"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert f"in use by another run (pid {p.pid}" in r.stderr
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before


def test_the_lock_is_held_for_the_whole_run(tmp_path):
    seen = []

    def emit(msg):
        who = RunFolder(tmp_path / "run").holder()
        seen.append(who.pid if who else None)

    assert train(tiny(tmp_path), emit).outcome == "completed"
    assert seen and set(seen) == {os.getpid()}
    assert RunFolder(tmp_path / "run").holder() is None  # released at the end


def test_a_failed_start_in_a_new_folder_leaves_nothing(tmp_path):
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    with pytest.raises(ValueError, match="too short"):
        train(tiny(tmp_path, corpus=str(tmp_path / "short.txt")))
    assert not (tmp_path / "run").exists()


def test_out_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(RunFolderError, match="is a file, not a folder; choose another out_dir"):
        train(tiny(tmp_path))
    with pytest.raises(RunFolderError, match="cannot create the run folder"):
        train(tiny(tmp_path, "run/inside"))


def test_stale_temporary_files_are_cleaned_by_the_next_run(tmp_path):
    """Regression: a save killed midway left .ckpt.pt.XXXX.tmp (up to a checkpoint's size) that nothing removed."""
    assert train(tiny(tmp_path)).outcome == "completed"
    folder = tmp_path / "run"
    stale = [".ckpt.pt.k2j3h4ab.tmp", ".config.json.tmp", ".ckpt.pt.x_y.tmp"]
    kept = ["notes.tmp", ".ckpt.pt", "ckpt.pt.tmp", ".other.json.tmp"]
    for name in stale + kept:
        (folder / name).write_bytes(b"x" * 100)
    assert train(tiny(tmp_path, max_iters=6, resume=True)).outcome == "completed"
    names = set(os.listdir(folder))
    assert not names & set(stale) and set(kept) <= names


def test_remove_stale_temporaries_leaves_folders_and_links(tmp_path):
    (tmp_path / ".ckpt.pt.abc.tmp").mkdir()
    (tmp_path / "target").write_text("keep")
    (tmp_path / ".ckpt.pt.def.tmp").symlink_to(tmp_path / "target")
    (tmp_path / ".ckpt.pt.ghi.tmp").write_text("stale")
    assert remove_stale_temporaries(tmp_path) == [".ckpt.pt.ghi.tmp"]
    assert (tmp_path / "target").read_text() == "keep"


def test_a_holder_record_that_is_garbage_still_gives_a_line(tmp_path):
    with RunLock(tmp_path):
        (tmp_path / LOCK_NAME).write_bytes(b"[" * 100000)  # deep nesting, longer than the record is read
        with pytest.raises(RunFolderBusy, match=r"in use by another run \(pid 0 on host \?"):
            RunLock(tmp_path).acquire()


def test_holder_of_a_folder_without_lock_is_none(tmp_path):
    assert RunFolder(tmp_path).holder() is None
    assert RunFolder(tmp_path / "missing").holder() is None
