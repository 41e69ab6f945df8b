"""The Runs view: the library lists, renames, deletes and reopens runs (a crashed one, a half-written metrics.jsonl);
the overlay's smoothing equals a hand-computed EMA; hover, log scale and exports; an experiment folder opens with its
comparison table; the Training pane embeds the view and resumes / uses what it asks for."""

import csv
import os
import time

import numpy as np
import pytest

from app.experiments.view import RunsView
from app.paths import runs_dir
from engine.messages import Eval, Failed, Finished, JsonlWriter, Outcome, Started, Step

CONFIG = {"n_layer": 2, "n_embd": 64, "pos": "rope", "tokenizer": "char", "corpus": "shakespeare", "max_iters": 10,
          "batch_size": 8, "grad_accum": 1, "block_size": 32}


def write_run(folder, losses=(4.0, 3.0, 3.5, 2.0), end=None, half_line=False):
    folder.mkdir(parents=True, exist_ok=True)
    with JsonlWriter(folder / "metrics.jsonl") as w:
        w.write(Started("r", config=CONFIG, n_params=50_000))
        for i, loss in enumerate(losses, 1):
            w.write(Step("r", step=i, loss=loss, tokens_per_s=500.0, tokens_seen=256 * i, time=1_700_000_000.0 + i))
        w.write(Eval("r", step=len(losses), val_loss=losses[-1] + 0.1, tokens_seen=256 * len(losses)))
        if end is not None:
            w.write(end)
    if half_line:
        with open(folder / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write('{"type":"step","v":1,"run_id":"r","step":99,"lo')
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


@pytest.fixture
def view(qtbot):
    v = RunsView()
    qtbot.addWidget(v)
    v.resize(900, 600)
    yield v
    v.shutdown()


def scanned(qtbot, view):
    with qtbot.waitSignal(view.scans.sig_done, timeout=10_000):
        view.refresh()
    return {s.name: s for s in view.model.summaries}


def drawn(qtbot, view):
    qtbot.waitUntil(lambda: not view.reads.busy_with("curves"), timeout=10_000)


def loop_ema(values, weight):
    last, out = 0.0, []
    for k, v in enumerate(values, 1):
        last = weight * last + (1 - weight) * v
        out.append(last / (1 - weight ** k))
    return out


def test_library_lists_renames_deletes_and_reopens_runs(qtbot, view, tmp_path):
    root = runs_dir()
    write_run(root / "done", end=Finished("r", step=4))
    write_run(root / "crashed", end=Failed("r", step=2, error="RuntimeError: out of memory"))
    write_run(root / "half", half_line=True)
    os.utime(root / "half" / "metrics.jsonl", (time.time() - 7200,) * 2)  # killed mid-line two hours ago
    elsewhere = write_run(tmp_path / "elsewhere" / "followed", end=Finished("r", step=4, outcome=Outcome.STOPPED))
    view.remember(str(elsewhere))

    runs = scanned(qtbot, view)
    assert sorted(runs) == ["crashed", "done", "followed", "half"]
    assert runs["done"].state == "finished" and runs["followed"].state == "stopped"
    assert runs["crashed"].state == "crashed" and runs["crashed"].detail == "RuntimeError: out of memory"
    assert runs["half"].state == "crashed" and runs["half"].steps == 4  # the cut line is not a step
    row = view.model.row_of(runs["done"].path)
    assert [view.model.data(view.model.index(row, c)) for c in (0, 6, 7, 8, 9)] == \
        ["done", "4 / 10", "2.1000", "500", "✓ finished"]

    new = view.rename(runs["done"].path, "renamed")
    assert new == str(root / "renamed") and not (root / "done").exists()
    assert view.rename(new, "crashed") is None and "already exists" in view.status.text()
    assert view.rename(new, "a/b") is None and "not a folder name" in view.status.text()
    assert "renamed" in scanned(qtbot, view)

    asked = []
    assert view.delete(str(root / "crashed"), lambda p: asked.append(p) or False) in ("trashed", "kept")
    if asked:  # no trash here: nothing goes without a yes
        assert (root / "crashed").exists()
        assert view.delete(str(root / "crashed"), lambda p: True) == "deleted"
    assert not (root / "crashed").exists()

    reopened = RunsView()  # a new session lists the followed folder again (the settings remember it)
    qtbot.addWidget(reopened)
    try:
        assert sorted(scanned(qtbot, reopened)) == ["followed", "half", "renamed"]
    finally:
        reopened.shutdown()


def test_overlay_smooths_like_tensorboard_and_exports(qtbot, view, tmp_path):
    a = write_run(runs_dir() / "a", losses=(4.0, 3.0, 3.5, 2.0), end=Finished("r", step=4))
    b = write_run(runs_dir() / "b", losses=(5.0, 1.0, 2.0, 1.5), end=Finished("r", step=4))
    scanned(qtbot, view)
    view.model.set_checked(str(a), True)
    view.model.set_checked(str(b), True)
    drawn(qtbot, view)
    overlay = view.overlay
    assert list(overlay.runs) == ["a", "b"]
    assert overlay.legend_names() == ["a", "b"]
    assert overlay.color("a") != overlay.color("b")

    overlay.set_smoothing(0.6)
    x, y = overlay.smoothed_data("b")
    assert x.tolist() == [1, 2, 3, 4]
    # hand-computed: 5; (0.4*5*0.6 + 0.4*1)/(1-0.36) ...: the loop TensorBoard runs
    np.testing.assert_allclose(y, loop_ema([5.0, 1.0, 2.0, 1.5], 0.6))
    assert y[1] == pytest.approx((0.6 * 0.4 * 5.0 + 0.4 * 1.0) / (1 - 0.36))
    overlay.set_smoothing(0.0)
    assert overlay.smoothed_data("b")[1].tolist() == [5.0, 1.0, 2.0, 1.5]

    overlay.set_smoothing(0.6)
    text = overlay.show_values_at(2.2)
    assert "a 3." in text and "b 2." in text and "@ step 2" in text
    overlay.set_x_axis("tokens")
    assert overlay.smoothed_data("a")[0].tolist() == [256, 512, 768, 1024]
    overlay.set_x_axis("time")
    assert overlay.smoothed_data("a")[0].tolist() == [0, 1, 2, 3]
    overlay.set_log_y(True)
    assert overlay.plot.ctrl.logYCheck.isChecked()

    view.export_csv(str(tmp_path / "c.csv"))
    rows = list(csv.DictReader(open(tmp_path / "c.csv", encoding="utf-8")))
    assert len(rows) == 8 and rows[0]["run"] == "a" and rows[3]["val_loss"] == "2.1"
    assert float(rows[5]["loss_smoothed"]) == pytest.approx(loop_ema([5.0, 1.0], 0.6)[1])
    view.export_png(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000

    view.model.set_checked(str(a), False)
    drawn(qtbot, view)
    assert list(overlay.runs) == ["b"]


def test_an_experiment_folder_opens_with_its_comparison_table(qtbot, view, tmp_path):
    exp = tmp_path / "exp"
    for arm in ("learned", "rope", "alibi"):
        write_run(exp / arm, end=Finished("r", step=4))
    (exp / "experiment.json").write_text(
        '{"format": 1, "experiment": "positions", "base": {}, "arms": [{"name": "learned"}, {"name": "rope"}, '
        '{"name": "alibi"}]}', encoding="utf-8")
    (exp / "extrapolation.csv").write_text("arm,context,val_loss\nlearned,32,2.5\nlearned,64,\nrope,32,2.4\n"
                                           "rope,64,2.45\nalibi,32,2.3\nalibi,64,2.31\n", encoding="utf-8")
    with qtbot.waitSignal(view.panel.jobs.sig_done, timeout=10_000):
        assert view.panel.open(str(exp))
    table = view.panel.table_text()
    assert table[0] == ["arm", "best val", "ms/step", "tok/s", "@32", "@64"]
    assert table[1][0] == "learned" and table[1][-2:] == ["2.5000", "refused"]
    assert table[2][-2:] == ["2.4000", "2.4500"]
    qtbot.waitUntil(lambda: len(view.overlay.runs) == 3, timeout=10_000)
    assert sorted(view.overlay.runs) == ["exp/alibi", "exp/learned", "exp/rope"]
    assert not view.panel.open(str(tmp_path))
    assert "not an experiment folder" in view.panel.status.text()


def test_the_training_pane_embeds_the_view_and_resumes_what_it_asks(qtbot, monkeypatch):
    from app.training.pane import TrainingPane

    pane = TrainingPane()
    qtbot.addWidget(pane)
    try:
        assert pane.tabs.count() == 2 and pane.tabs.widget(1) is pane.runs
        resumed = []
        monkeypatch.setattr(pane, "resume", lambda: resumed.append(pane.form.values()["out_dir"]))
        pane.tabs.setCurrentIndex(1)
        pane.runs.sig_resume.emit("/somewhere/run")
        assert resumed == ["/somewhere/run"] and pane.tabs.currentIndex() == 0
        with qtbot.waitSignal(pane.sig_use_checkpoint) as used:
            pane.runs.sig_use_checkpoint.emit("/somewhere/run/ckpt.pt")
        assert used.args == ["/somewhere/run/ckpt.pt"]
    finally:
        pane.shutdown()


@pytest.mark.slow
def test_the_panel_runs_an_experiment_live_and_cancels_it(qtbot, view, tmp_path):
    """The panel runs llm-train --experiment in a background process: progress, the first arm overlaid while it
    trains, then Cancel stops it (the arm keeps a checkpoint, the others are skipped)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"KING:\nLine {i}, my lord.\nQUEEN:\nAye, {i}.\n\n" for i in range(150)),
                      encoding="utf-8")
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4, "eval_iters": 2,
            "eval_interval": 50, "sample_len": 0, "device": "cpu", "warmup_iters": 2, "checkpoint_interval": 0}
    view.show()
    steps = []
    view.panel.process.sig_progress.connect(lambda arm, step: steps.append((arm, step)))
    folder = view.panel.start("positions", 100_000, preset="tiny", corpus=str(corpus), extra=tiny)
    assert not view.panel.start_button.isEnabled() and view.panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=120_000)
    assert steps[0][0] == "learned" and "Training arm 1 of 3 (learned)" in view.panel.status.text()
    qtbot.waitUntil(lambda: list(view.overlay.runs) == [f"{os.path.basename(folder)}/learned"], timeout=30_000)
    with qtbot.waitSignal(view.panel.process.sig_ended, timeout=60_000) as ended:
        view.panel.cancel()
    assert ended.args[0] == 130 and "Cancelled" in view.panel.status.text()
    assert os.path.isfile(os.path.join(folder, "learned", "ckpt.pt"))
    assert not os.path.exists(os.path.join(folder, "rope"))
    assert view.panel.start_button.isEnabled()
