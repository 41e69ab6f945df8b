"""The Training pane's state without Qt: phases, what it says at each ending, progress before the first step,
reopening a run folder, and that it imports no Qt."""

import subprocess
import sys

import pytest

from app.training.state import RunState, duration, last_checkpoint_step
from engine.messages import CheckpointSaved, Eval, Finished, Sample, Started, Step, append_jsonl
from tests.conftest import ROOT


def recorder(state):
    seen = []
    for name in ("phase", "status", "failure", "samples", "checkpoint", "curves"):
        getattr(state.events, name).connect(lambda *a, name=name: seen.append((name, *a)))
    return seen


def step(n, t=None, loss=2.0):
    return Step("r", step=n, loss=loss, lr=1e-3, grad_norm=1.0, tokens_per_s=1000.0, tokens_seen=64 * n,
                time=float(n) if t is None else t)


def test_phases_and_what_each_ending_says(tmp_path):
    state = RunState()
    seen = recorder(state)
    state.begin(str(tmp_path / "run"), 100, now=0.0)
    assert state.phase == "running" and ("phase", "running") in seen
    state.dispatch(Started("r", config={"max_iters": 100}, n_params=2_000_000, world_size=2))
    assert state.status == "Training 2.00 M parameters on 2 processes."  # a run from before Started said how
    state.dispatch(Started("r", config={"max_iters": 100}, n_params=2_000_000, world_size=2, exchange="shared memory"))
    assert state.status == "Training 2.00 M parameters on 2 processes (gradients averaged through shared memory)."
    for n in range(1, 6):
        state.dispatch(step(n))
    state.stopping()
    assert state.phase == "stopping" and state.status.startswith("Stopping")
    assert state.end("stopped", "stopped") is False
    assert state.phase == "idle" and state.status.startswith("Stopped at step 5;")
    assert state.eta(now=6.0) is None

    state.begin(str(tmp_path / "run"), 100)
    assert state.history.last_step == 0 and state.failure == ""
    assert state.end("failed", "no such file: corpus.txt", "Traceback ...") is True
    assert "<b>Training failed:</b> no such file: corpus.txt." in state.status and state.status_rich
    assert state.failure == "no such file: corpus.txt\n\nTraceback ..."
    assert ("failure", "no such file: corpus.txt\n\nTraceback ...") in seen
    state.clear_outcome()
    assert state.failure == "" and state.status == "Ready." and ("failure", "") in seen


@pytest.mark.parametrize("summary", [
    # the summary as RunController passes it: the Finished message's reason, or its detail alone
    "diverged: the loss became non-finite at step 13 in float32; lower the learning rate; the last checkpoint is "
    "step 10",
    "the loss became non-finite at step 13 in float32; lower the learning rate; the last checkpoint is step 10",
])
def test_the_divergence_message_names_one_step(tmp_path, summary):
    """It said "The run diverged at step 12: ... non-finite at step 13" (the last logged step beside the bad one)."""
    state = RunState()
    state.begin(str(tmp_path), 100)
    for n in range(1, 13):
        state.dispatch(step(n))
    state.end("diverged", summary)
    assert state.status == ("The run diverged: the loss became non-finite at step 13 in float32; lower the "
                            "learning rate; the last checkpoint is step 10.")
    assert "step 12" not in state.status


def test_progress_says_what_a_run_does_before_its_first_step():
    """A 10.75 M model sat 25 s in its first evaluation with an empty progress line."""
    state = RunState()
    state.begin("runs/x", 1000, now=100.0)
    p = state.progress(now=103.0)
    assert p.busy and p.text == "starting: reading the corpus and building the model… 0:03"
    state.dispatch(Started("r", config={"max_iters": 1000, "eval_iters": 200, "eval_interval": 250}, n_params=10))
    assert state.progress(now=125.0).text == "first evaluation (200 batches per split)… 0:25"
    state.dispatch(Eval("r", step=0, val_loss=4.0, train_loss=4.0))
    assert state.progress(now=126.0).text == "first steps… 0:26"
    state.dispatch(step(1, t=130.0))
    p = state.progress(now=130.5)
    assert not p.busy and p.text.startswith("step 1 / 1,000") and "evaluating" not in p.text
    # a later evaluation: quiet after the step at which it evaluates
    for n in range(2, 251):
        state.dispatch(step(n, t=130.0 + 0.1 * (n - 1)))
    assert "evaluating" not in state.progress(now=155.0).text  # 0.1 s after the step: not yet
    assert state.progress(now=160.0).text.endswith("evaluating… 0:05")
    state.dispatch(Eval("r", step=250, val_loss=3.0, train_loss=3.0))
    assert "evaluating" not in state.progress(now=160.0).text
    # a resumed run does not evaluate before its first step
    state.begin("runs/x", 1000, now=0.0)
    state.dispatch(Started("r", config={"max_iters": 1000, "resume": True}, n_params=10, step=500))
    assert state.progress(now=2.0).text == "first steps… 0:02"


def write_run(folder, steps=30, ckpt_every=10, finished=True):
    folder.mkdir(parents=True, exist_ok=True)
    metrics = folder / "metrics.jsonl"
    append_jsonl(metrics, Started("r", config={"max_iters": steps, "eval_interval": ckpt_every}, n_params=10))
    for n in range(1, steps + 1):
        append_jsonl(metrics, step(n))
        if n % ckpt_every == 0:
            append_jsonl(metrics, Eval("r", step=n, val_loss=2.5, train_loss=2.4))
            append_jsonl(metrics, Sample("r", step=n, text=f"sample {n}"))
            append_jsonl(metrics, CheckpointSaved("r", step=n, path=str(folder / "ckpt.pt")))
    if finished:
        append_jsonl(metrics, Finished("r", step=steps))
    (folder / "ckpt.pt").write_bytes(b"a checkpoint")
    return folder


def test_reopening_a_run_folder_shows_its_curves_samples_and_checkpoint(tmp_path):
    folder = write_run(tmp_path / "run")
    from engine.messages import read_jsonl

    msgs, _ = read_jsonl(folder / "metrics.jsonl")
    state = RunState()
    seen = recorder(state)
    state.reopen(str(folder), msgs)
    assert state.phase == "idle" and state.history.last_step == 30 and len(state.history.evals) == 3
    assert [s for s, _ in state.samples] == [10, 20, 30]
    assert state.checkpoint_to_use() == str(folder / "ckpt.pt") and state.checkpoint_step == 30
    assert state.status == "run: step 30 of 30, checkpoint at step 30. “Use in Generation” opens it."
    assert [e for e in seen if e[0] == "checkpoint"] == [("checkpoint", str(folder / "ckpt.pt"))]  # once, not 3x
    assert len([e for e in seen if e[0] == "samples"]) <= 2  # the reset and the replay, not one per sample
    assert state.progress(now=1e9).text == "step 30 / 30 · 1,000 tok/s"  # no ETA, no "evaluating"

    stopped = write_run(tmp_path / "stopped", steps=20, finished=False)
    msgs, _ = read_jsonl(stopped / "metrics.jsonl")
    msgs[0] = Started("r", config={"max_iters": 50}, n_params=10)
    state.reopen(str(stopped), msgs)
    assert state.status.endswith("Resume continues it.")


def test_last_checkpoint_step_reads_the_end_of_metrics(tmp_path):
    assert last_checkpoint_step(str(tmp_path)) is None
    folder = write_run(tmp_path / "run", steps=5000, ckpt_every=1000)  # far more than the tail it reads
    assert last_checkpoint_step(str(folder)) == 5000
    with open(folder / "metrics.jsonl", "ab") as f:
        f.write(b'{"type": "checkpoint", cut short')
    assert last_checkpoint_step(str(folder)) == 5000


def test_a_failed_launch_leaves_nothing_of_the_attempt():
    state = RunState()
    state.begin("runs/a", 100)
    state.dispatch(step(1))
    state.launch_failed("cannot spawn")
    assert state.phase == "idle" and len(state.history.train) == 0 and state.curves_dirty
    assert state.status == "Cannot start the training processes: cannot spawn"
    assert not state.progress().busy


def test_duration():
    assert duration(0) == "0:00" and duration(59.6) == "1:00" and duration(3600) == "1:00:00"


def test_the_state_imports_no_qt():
    code = ("import sys; import app.training.state, app.training.checks, app.training.history, app.events; "
            "bad = sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
