"""Following a run folder (issue 13): engine.metricstail reads metrics.jsonl incrementally and never raises or blocks
for what is there; app.training.follower reads it off the UI thread; the pane survives what a followed file says."""

import json
import os

import pytest

from engine.messages import JsonlWriter, Sample, Started, Step
from engine.metricstail import MetricsTail

STEP = Step("r", step=1, loss=2.0, lr=1e-3, grad_norm=1.0, tokens_per_s=1e3, tokens_seen=64, amp_scale=1.0,
            skipped_steps=0, time=1.0)


def step_line(n: int, **changes) -> str:
    d = {**STEP.to_dict(), "step": n, **changes}
    return json.dumps(d) + "\n"


def write(path, text: str, mode="a"):
    with open(path, mode, encoding="utf-8") as f:
        f.write(text)


# --- engine: MetricsTail ------------------------------------------------------------------------------------------

def test_deeply_nested_json_is_skipped_and_the_position_advances(tmp_path):
    """Regression: a deeply nested line raised RecursionError, which the reader did not catch: the position never
    advanced and the same error came back every 500 ms for ever."""
    path = tmp_path / "metrics.jsonl"
    write(path, step_line(1) + "[" * 100_000 + "\n" + '{"a":' * 50_000 + "\n" + step_line(2))
    tail = MetricsTail(path)
    batch = tail.read()
    assert [m.step for m in batch.messages] == [1, 2]
    assert batch.skipped == 2 and batch.skip_reason == "a line of JSON nested too deep"
    assert tail.offset == path.stat().st_size
    assert tail.read().messages == [] and tail.read().skipped == 0


def test_wrongly_typed_fields_are_counted_not_reported_one_by_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write(path, "".join(step_line(i, step=str(i)) for i in range(500)) + step_line(7, loss=[1]) + step_line(8)
          + step_line(9, step=True) + step_line(10, step=2**70))
    batch = MetricsTail(path).read()
    assert [m.step for m in batch.messages] == [8]
    assert batch.skipped == 503 and batch.skip_reason == "bad step message: step is str, not int"


@pytest.mark.parametrize("what", ["folder", "fifo"])
def test_a_folder_or_fifo_is_a_problem_never_a_hang(tmp_path, what):
    """Regression: metrics.jsonl as a folder left the pane "following" with no timer; a FIFO hung the UI."""
    path = tmp_path / "metrics.jsonl"
    path.mkdir() if what == "folder" else os.mkfifo(path)
    batch = MetricsTail(path).read()
    assert batch.messages == [] and ("is a folder, not a file" if what == "folder" else "named pipe (FIFO)") \
        in batch.problem


def test_big_files_are_read_in_bounded_pieces(tmp_path):
    path = tmp_path / "metrics.jsonl"
    line = step_line(1)
    n = (3 * 2**20) // len(line) + 1000
    write(path, "".join(step_line(i) for i in range(n)), "w")
    tail = MetricsTail(path, max_bytes=2**20)
    got, reads = [], 0
    while True:
        batch = tail.read()
        reads += 1
        got += batch.messages
        assert sum(len(m.to_json()) for m in batch.messages) <= 2**20
        if not batch.more:
            break
    assert [m.step for m in got] == list(range(n)) and reads >= 3


def test_an_overlong_line_is_skipped_whole(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write(path, step_line(1) + "x" * (3 * 2**20) + "\n" + step_line(2))
    tail = MetricsTail(path, max_bytes=2**20, max_line=2**20)
    got, skipped = [], 0
    for _ in range(10):
        batch = tail.read()
        got += batch.messages
        skipped += batch.skipped
    assert [m.step for m in got] == [1, 2] and skipped == 1


def test_partial_lines_wait_and_unknown_types_are_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write(path, json.dumps({"type": "from-the-future", "v": 9, "run_id": "r"}) + "\n" + step_line(1)[:20])
    tail = MetricsTail(path)
    batch = tail.read()
    assert batch.messages == [] and batch.skipped == 0
    write(path, step_line(1)[20:])
    assert [m.step for m in tail.read().messages] == [1]


def test_a_replaced_file_is_read_from_its_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as w:
        w.write(Started("old"))
        w.write(Step("old", step=1))
    tail = MetricsTail(path)
    assert [m.run_id for m in tail.read().messages] == ["old", "old"]
    path.unlink()
    with JsonlWriter(path) as w:  # a new run, already longer than what was read of the old one
        w.write(Started("new", config={"max_iters": 9}))
        for step in range(1, 10):
            w.write(Step("new", step=step))
    batch = tail.read()
    assert batch.restarted and [m.step for m in batch.messages] == [0] + list(range(1, 10))


# --- app: the follower thread and the pane ------------------------------------------------------------------------

@pytest.fixture
def follower(qtbot):
    from app.training.follower import RunFollower

    f = RunFollower()
    yield f
    f.stop()


def test_follower_rereads_a_replaced_metrics_file_that_grew_past_its_offset(qtbot, follower, tmp_path):
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as w:
        w.write(Started("old"))
        w.write(Step("old", step=1))
    got = []
    follower.sig_message.connect(got.append)
    follower.follow(str(tmp_path))
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    path.unlink()
    with JsonlWriter(path) as w:
        w.write(Started("new", config={"max_iters": 9}))
        for step in range(1, 10):
            w.write(Step("new", step=step))
    qtbot.waitUntil(lambda: len([m for m in got if m.run_id == "new"]) == 10, timeout=10_000)
    new = [m for m in got if m.run_id == "new"]
    assert [m.step for m in new] == [0] + list(range(1, 10))


def test_a_big_file_is_read_off_the_ui_thread(qtbot, follower, tmp_path):
    """Regression: a 100 MB metrics.jsonl froze the UI for 10-11 s. follow() returns before reading anything; the
    messages arrive in pieces, a few milliseconds' worth per tick."""
    path = tmp_path / "metrics.jsonl"
    n = 60_000
    write(path, "".join(step_line(i) for i in range(n)), "w")
    got = []
    follower.sig_message.connect(got.append)
    follower.follow(str(tmp_path))
    assert got == []  # nothing was read on this thread
    qtbot.waitUntil(lambda: len(got) == n, timeout=120_000)
    assert [m.step for m in got[:3]] == [0, 1, 2] and got[-1].step == n - 1


@pytest.mark.parametrize("what", ["folder", "fifo"])
def test_the_pane_follows_a_folder_or_fifo_metrics_saying_so_once(qtbot, tmp_path, what):
    from app.training.pane import TrainingPane

    pane = TrainingPane()
    qtbot.addWidget(pane)
    path = tmp_path / "metrics.jsonl"
    path.mkdir() if what == "folder" else os.mkfifo(path)
    problems = []
    pane.follower.sig_problem.connect(problems.append)
    pane.follow(str(tmp_path))
    assert pane.state == "following"
    qtbot.waitUntil(lambda: "not a file" in pane.status.text(), timeout=10_000)
    qtbot.wait(1500)  # three more looks at the file: still one report
    assert len(problems) == 1
    pane.stop()
    assert pane.state == "idle" and not pane.follower.following
    pane.shutdown()


def test_the_pane_survives_what_a_followed_file_says(qtbot, tmp_path):
    """Regression: max_iters >= 2^31 overflowed the progress bar on every redraw; a wrongly typed field gave one
    dialog per line; 3 000 samples took 23 s to show (each re-rendered the whole panel)."""
    from app.training.pane import TrainingPane

    path = tmp_path / "metrics.jsonl"
    text = json.dumps(Started("r", config={"max_iters": 2**40}, n_params=10).to_dict()) + "\n"
    text += "".join(step_line(i, step="x") for i in range(300))
    text += "".join(json.dumps(Sample("r", step=i, text=f"sample {i}").to_dict()) + "\n" for i in range(3000))
    text += step_line(2**35)
    write(path, text, "w")
    pane = TrainingPane()
    qtbot.addWidget(pane)
    renders = []
    real = pane.samples.setHtml
    pane.samples.setHtml = lambda html: (renders.append(1), real(html))
    problems = []
    pane.follower.sig_problem.connect(problems.append)
    pane.follow(str(tmp_path))
    qtbot.waitUntil(lambda: pane.history.last_step == 2**35, timeout=60_000)
    pane.redraw()
    assert "step 34,359,738,368 / 1,099,511,627,776" in pane.progress_text.text()
    assert 0 < pane.progress.value() <= pane.progress.maximum() < 2**31
    assert len(problems) == 1 and "300 lines" in problems[0] and "step is str" in problems[0]
    assert "sample 2999" in pane.samples.toPlainText() and len(renders) < 100
    pane.stop()
    pane.shutdown()
