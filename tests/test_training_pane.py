"""The Training pane: the form explains bad settings, a real run draws curves, stops, resumes, survives a killed
worker, follows a folder written by another process, exports, and leaves no process behind."""

import csv
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from app.training.history import History
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # starts training processes (see `make test-fast`)

RUN_TIMEOUT_MS = 90_000  # generous: the machine is shared; nothing here asserts on time


# ---- helpers ---------------------------------------------------------------------------------------------------

def corpus_file(tmp_path, n_lines=400):
    """A small text (about 20 KB) with some structure to learn."""
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "speaks", "of", "love", "and", "war", "to", "his", "her", "court"]
    lines = [" ".join(rng.choice(words, size=6)) + "." for _ in range(n_lines)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_pane(qtbot, reporter, tmp_path, **values):
    from app.training.pane import TrainingPane

    pane = TrainingPane(reporter=reporter)
    qtbot.addWidget(pane, before_close_func=lambda w: w.shutdown())  # no process left, even if the test fails
    form = pane.form
    form.choose_preset("tiny")
    base = {"corpus": str(corpus_file(tmp_path)), "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16,
            "batch_size": 4, "max_iters": 200, "eval_interval": 10, "processes": 1,
            "out_dir": str(tmp_path / "run")}
    form.set_values({**form.values(), **base, **values})
    pane.recheck()
    return pane


def while_running(pane, condition):
    """A waitUntil callback that fails at once, saying why, if the run ends before ``condition`` holds."""
    def check():
        if pane.state == "idle":
            raise RuntimeError(f"the run ended early: {pane.status.text()}\n{pane.failure.toPlainText()}")
        return bool(condition())
    return check


def wait_ended(qtbot, pane):
    qtbot.waitUntil(lambda: pane.state == "idle", timeout=RUN_TIMEOUT_MS)


def steps_of(pane):
    return pane.history.train.column("step").astype(int).tolist()


def no_process_left(procs):
    for p in procs:
        assert not p.is_alive()
        assert p.exitcode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(p.pid, 0)  # joined and reaped: no zombie either


# ---- the form --------------------------------------------------------------------------------------------------

def test_the_form_explains_what_is_wrong_before_start(qtbot, reporter, tmp_path, monkeypatch):
    from app.training import checks

    monkeypatch.setattr(checks, "cuda_available", lambda: False)
    pane = make_pane(qtbot, reporter, tmp_path)
    assert pane.start_button.isEnabled(), pane.problems.text()

    def problems_after(**values):
        pane.form.set_values({**pane.form.values(), **values})
        pane.recheck()
        return pane.problems.text()

    assert "does not split evenly among n_head=4 heads" in problems_after(n_head=4, n_embd=30)
    assert not pane.start_button.isEnabled()
    assert "heads" in pane.start_button.toolTip()
    assert "even size" in problems_after(n_head=4, n_embd=36, pos="rope")
    assert "fp16 needs a CUDA GPU" in problems_after(n_embd=32, n_head=2, pos="learned", precision="fp16")
    for amx, advice in ((True, "bf16 autocast trains faster than fp32 here"), (False, "often slower than fp32 here")):
        monkeypatch.setattr(checks, "cpu_has_bf16_matrix_units", lambda amx=amx: amx)
        assert advice in problems_after(n_embd=32, n_head=2, pos="learned", precision="bf16"), amx
    assert "lr must be a number" in problems_after(precision="fp32", lr="fast")
    assert "cannot be split evenly over 2 processes" in problems_after(lr="1e-3", processes=2, batch_size=5) \
        or os.cpu_count() < 2
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be.\n", encoding="utf-8")
    text = problems_after(processes=1, batch_size=4, corpus=str(short))
    assert "too short for a context of 16 tokens" in text
    assert not pane.start_button.isEnabled()
    # a large vocabulary on a small model is explained but allowed
    text = problems_after(corpus=str(tmp_path / "corpus.txt"), tokenizer="o200k_base")
    assert "200,019 tokens" in text and pane.start_button.isEnabled()
    # a folder that already holds a run: start is refused, resume is offered
    run = tmp_path / "old"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"not really a checkpoint")
    assert "already holds a checkpoint" in problems_after(tokenizer="char", out_dir=str(run))
    assert not pane.start_button.isEnabled() and pane.resume_button.isEnabled()
    problems_after(out_dir=str(tmp_path / "fresh"))
    assert pane.start_button.isEnabled()
    assert "M parameters" in pane.params.text()
    pane.shutdown()


def test_the_form_opens_text_files_persists_its_values_and_offers_saved_tokenizers(qtbot, reporter, tmp_path,
                                                                                   monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.paths import tokenizers_dir
    from app.training.form import OPEN_FILE
    from app.training.pane import TrainingPane

    pane = make_pane(qtbot, reporter, tmp_path, n_layer=3, block_size=48, lr="3e-4", pos="alibi")
    form = pane.form
    other = tmp_path / "other.txt"
    other.write_text("some text\n" * 500, encoding="utf-8")
    before = form.corpus.currentData()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    form.corpus.setCurrentIndex(form.corpus.findData(OPEN_FILE))
    form.corpus.activated.emit(form.corpus.currentIndex())
    assert form.corpus.currentData() == before  # cancelled: the previous corpus stays
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    form.corpus.setCurrentIndex(form.corpus.findData(OPEN_FILE))
    form.corpus.activated.emit(form.corpus.currentIndex())
    assert form.corpus.currentData() == str(other) and form.corpus.currentText() == "other.txt"
    pane.curves.set_x_axis("tokens")
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    pane.save_settings(settings)
    settings.sync()
    before = pane.form.values()
    pane.shutdown()

    again = TrainingPane(reporter=reporter)
    qtbot.addWidget(again)
    again.restore_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again.form.values() == before
    assert again.curves.x_axis == "tokens"
    assert again.form.extra == pane.form.extra  # the preset's other settings (eval_iters, sample_len, ...)

    assert again.form.tokenizer.findData(str(tokenizers_dir() / "mine.json")) < 0
    (tokenizers_dir() / "mine.json").write_text("{}", encoding="utf-8")
    again.refresh_tokenizers()
    assert again.form.tokenizer.findData(str(tokenizers_dir() / "mine.json")) >= 0
    assert again.form.values()["tokenizer"] == "char"  # the choice is kept
    again.shutdown()


# ---- the curves' data (no Qt) ------------------------------------------------------------------------------------

def test_history_smooths_rewinds_and_writes_csv(tmp_path):
    h = History(smoothing=0.5)
    for step, loss in enumerate([4.0, 2.0, math.nan, 1.0], start=1):
        h.add_step(step, step * 10, loss, 1e-3, 1.0, skipped_steps=1 if step >= 3 else 0)
    assert h.train.column("smooth")[0] == 4.0  # debiased: the first value is the loss itself
    assert h.train.column("smooth")[1] == pytest.approx((0.25 * 4 + 0.5 * 2) / 0.75)
    assert h.skipped.column("step").tolist() == [3]  # the count went up at step 3
    h.add_eval(2, 20, 2.5, 2.4)
    # a resumed run redoes step 3 and 4: the old ones are forgotten, the smoothing continues from step 2
    smooth2 = h.train.column("smooth")[1]
    h.add_step(3, 30, 3.0, 1e-3, 1.0, skipped_steps=0)
    assert h.train.column("step").tolist() == [1, 2, 3]
    assert h.train.column("smooth")[2] == pytest.approx((0.125 * 4 + 0.25 * 2 + 0.5 * 3) / 0.875)
    assert h.train.column("smooth")[1] == smooth2
    assert len(h.skipped) == 0
    for i in range(5000):  # buffers grow past their first capacity
        h.add_step(4 + i, 40 + 10 * i, 1.0, 1e-3, 0.5)
    assert len(h.train) == 5003 and h.train.column("step")[-1] == 5003
    path = tmp_path / "c.csv"
    h.write_csv(path)
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert len(rows) == 5003
    assert rows[1]["val_loss"] == "2.5" and rows[1]["loss"] == "2.0" and rows[0]["val_loss"] == ""
    with pytest.raises(ValueError, match="smoothing"):
        History(smoothing=1.0)


def test_curves_set_the_evaluations_and_marks_again_only_when_they_change(qtbot):
    from app.training.curves import CurvesWidget

    h = History()
    curves = CurvesWidget(h)
    qtbot.addWidget(curves)
    given = []
    real = curves.val_curve.setData
    curves.val_curve.setData = lambda *a, **k: (given.append(len(a[0])), real(*a, **k))[1]
    for step in range(1, 4):
        h.add_step(step, step * 10, 3.0 - step / 10, 1e-3, 1.0)
        if step == 2:
            h.add_eval(2, 20, 2.7)  # its train loss unknown: a NaN in the row must not count as a change
        curves.refresh()
    assert given == [1]  # the evaluation once (the empty table was shown when the widget was made), not again
    assert curves.val_curve.getData()[1].tolist() == [2.7]
    curves.set_x_axis("tokens")  # another x axis: set again, at the tokens seen
    curves.refresh()
    assert given == [1, 1] and curves.val_curve.getData()[0].tolist() == [20]
    h.rewind(2)  # a resume from step 2 drops the evaluation there
    curves.refresh()
    assert given == [1, 1, 0]


# ---- real runs -------------------------------------------------------------------------------------------------

def test_a_run_draws_curves_stops_with_a_checkpoint_and_resumes(qtbot, reporter, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path)
    saved = []
    pane.sig_checkpoint_saved.connect(saved.append)
    assert pane.start_button.isEnabled(), pane.problems.text()
    pane.start_button.click()
    assert pane.state == "running" and not pane.start_button.isEnabled() and pane.stop_button.isEnabled()
    assert not pane.form.isEnabled()
    qtbot.waitUntil(while_running(pane, lambda: len(pane.history.train) >= 12 and len(pane.history.evals) >= 1
                                  and saved and len(pane.run_state.samples) >= 2), timeout=RUN_TIMEOUT_MS)
    pane.redraw()
    x, y = pane.curves.raw_curve.getOriginalDataset()
    assert len(x) >= 12 and np.isfinite(y).all()
    assert len(pane.curves.val_curve.getOriginalDataset()[0]) >= 1
    for curve in (pane.curves.lr_curve, pane.curves.grad_curve, pane.curves.smooth_curve):
        assert len(curve.getOriginalDataset()[0]) >= 12
    assert "step" in pane.progress_text.text() and "tok/s" in pane.progress_text.text()
    assert "step 10" in pane.samples.toPlainText()

    with qtbot.waitSignal(pane.controller.sig_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pane.stop_button.click()
    assert ended.args[0] == "stopped"
    stopped_at = pane.history.last_step
    ckpt = tmp_path / "run" / "ckpt.pt"
    assert ckpt.is_file() and saved[-1] == str(ckpt)
    assert f"Stopped at step {stopped_at}" in pane.status.text()
    assert pane.resume_button.isEnabled() and not pane.start_button.isEnabled()

    # resume: the curves so far come back from metrics.jsonl, training continues right after the checkpoint
    live_steps = []
    pane.controller.sig_message.connect(lambda m: live_steps.append(m.step) if m.type == "step" else None)
    pane.form.set_values({**pane.form.values(), "max_iters": stopped_at + 6})
    pane.resume_button.click()
    assert pane.state == "running"
    wait_ended(qtbot, pane)
    assert live_steps[0] == stopped_at + 1, pane.status.text()
    steps = steps_of(pane)
    assert steps[-1] == stopped_at + 6 and steps == sorted(set(steps))
    assert "Done" in pane.status.text()

    # x axis in tokens seen
    pane.curves.set_x_axis("tokens")
    x, _ = pane.curves.raw_curve.getOriginalDataset()
    assert np.array_equal(x, pane.history.train.column("tokens"))
    # exports
    pane.export_csv(str(tmp_path / "curves.csv"))
    rows = list(csv.DictReader(open(tmp_path / "curves.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows if r["loss"]] == steps
    assert any(r["val_loss"] for r in rows)
    pane.export_png(str(tmp_path / "curves.png"))
    image = QImage(str(tmp_path / "curves.png"))
    assert not image.isNull() and image.width() >= 800
    # one click hands the checkpoint to the Generation pane
    with qtbot.waitSignal(pane.sig_use_checkpoint, timeout=1000) as used:
        pane.use_button.click()
    assert used.args == [str(ckpt)]
    pane.shutdown()


def test_a_killed_worker_is_reported_and_resume_is_offered(qtbot, reporter, expect_reported, tmp_path, monkeypatch):
    pane = make_pane(qtbot, reporter, tmp_path, max_iters=100_000, eval_interval=5)
    pane.start()
    qtbot.waitUntil(while_running(pane, lambda: pane.run_state.checkpoint_step is not None
                                  and pane.history.last_step > pane.run_state.checkpoint_step), timeout=RUN_TIMEOUT_MS)
    procs = pane.controller.processes()
    with expect_reported("worker died (exit code -9)"):
        os.kill(procs[0].pid, signal.SIGKILL)
        wait_ended(qtbot, pane)
    assert "worker died (exit code -9)" in pane.status.text()
    assert pane.failure.isVisibleTo(pane) and "SIGKILL" in pane.failure.toPlainText()
    assert pane.resume_button.isEnabled()
    no_process_left(procs)

    # resume after the crash, then close the window during the run: it asks, then stops cleanly
    pane.resume()
    qtbot.waitUntil(while_running(pane, lambda: len(pane.history.train) > 0), timeout=RUN_TIMEOUT_MS)
    procs = pane.controller.processes()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert pane.confirm_close() is False
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert pane.confirm_close() is True
    pane.shutdown()
    no_process_left(procs)
    assert pane.state == "idle" and not pane.controller.running
    assert "Stopped at step" in pane.status.text()  # the run saved its checkpoint on the way out


def test_a_failing_worker_is_reported_with_its_error(qtbot, reporter, expect_reported, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path)
    os.remove(tmp_path / "corpus.txt")  # gone between the form's check and the worker reading it
    with expect_reported("no such file"):
        pane.start()
        wait_ended(qtbot, pane)
    assert "Training failed" in pane.status.text() and "no such file" in pane.status.text()
    assert "no such file" in pane.failure.toPlainText()
    pane.shutdown()


def test_following_a_run_folder_written_by_another_process(qtbot, reporter, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    cmd = [sys.executable, "-m", "engine.train", "--preset", "tiny", f"corpus={tmp_path / 'corpus.txt'}",
           f"out_dir={folder}", "n_layer=1", "n_head=2", "n_embd=32", "block_size=16", "batch_size=4",
           "max_iters=20", "eval_interval=10", "warmup_iters=2", "lr_decay_iters=20"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        pane.follow(str(folder))
        assert pane.state == "following" and pane.stop_button.text() == "Stop following"
        qtbot.waitUntil(lambda: pane.history.last_step == 20 and len(pane.history.evals) >= 3,
                        timeout=RUN_TIMEOUT_MS)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert steps_of(pane) == list(range(steps_of(pane)[0], 21))
    pane.redraw()
    assert len(pane.curves.smooth_curve.getOriginalDataset()[0]) == len(pane.history.train)
    assert pane.max_iters == 20  # from the run's Started message
    qtbot.waitUntil(lambda: "finished" in pane.status.text(), timeout=5000)
    assert pane.use_button.isEnabled()
    pane.stop_button.click()
    assert pane.state == "idle" and not pane.follower.following
    pane.shutdown()


def test_curves_mark_skipped_and_nonfinite_steps_and_hold_100k_points(qtbot, reporter, tmp_path):
    from engine.messages import Eval, NonFinite, Sample, Started, Step

    pane = make_pane(qtbot, reporter, tmp_path)
    pane.dispatch(Started("r", config={"max_iters": 100_000}, n_params=1000, world_size=1, step=0))
    for step in range(1, 100_001):
        skipped = 1 if step >= 500 else 0  # step 500 was skipped by the fp16 GradScaler
        loss = math.inf if step == 700 else 3.0 - step * 1e-5
        pane.dispatch(Step("r", step=step, loss=loss, lr=1e-3, grad_norm=1.0, tokens_per_s=1e4,
                           tokens_seen=step * 64, amp_scale=1.0, skipped_steps=skipped, time=step * 0.01))
        if step == 700:
            pane.dispatch(NonFinite("r", step=700, what="loss is inf: step skipped"))
        if step % 25_000 == 0:
            pane.dispatch(Eval("r", step=step, train_loss=2.0, val_loss=2.1, tokens_seen=step * 64))
            pane.dispatch(Sample("r", step=step, text=f"text <b>{step}</b>"))
    pane.redraw()
    curves = pane.curves
    assert len(curves.raw_curve.getOriginalDataset()[0]) == 100_000
    assert curves.skipped_marks.getData()[0].tolist() == [500]
    assert curves.nonfinite_marks.getData()[0].tolist() == [700]
    legend = [label.text for _, label in curves.legend.items]
    assert "skipped AMP step" in legend and "non-finite" in legend
    assert "Step 700: loss is inf" in pane.status.text()
    assert pane.progress.value() == 100_000 and "step 100,000 / 100,000" in pane.progress_text.text()
    # latest sample on top, shown as text (not markup)
    text = pane.samples.toPlainText()
    assert text.index("step 100,000") < text.index("step 25,000") and "<b>100000</b>" in text
    curves.set_x_axis("tokens")
    assert curves.skipped_marks.getData()[0].tolist() == [500 * 64]
    pane.shutdown()


def test_stop_pressed_twice_ends_the_processes_at_once(qtbot, reporter, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path, max_iters=100_000)
    pane.start()
    qtbot.waitUntil(while_running(pane, lambda: len(pane.history.train) > 0), timeout=RUN_TIMEOUT_MS)
    procs = pane.controller.processes()
    pane.stop_button.click()
    assert pane.state == "stopping" and pane.stop_button.text() == "Kill" and pane.stop_button.isEnabled()
    with qtbot.waitSignal(pane.controller.sig_ended, timeout=RUN_TIMEOUT_MS) as ended:
        pane.stop_button.click()
    # almost always "killed"; "stopped" only if the checkpoint was already written when Kill came
    assert ended.args[0] in ("killed", "stopped")
    no_process_left(procs)
    assert pane.state == "idle" and pane.stop_button.text() == "Stop" and not pane.stop_button.isEnabled()
    pane.shutdown()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPU cores for 2 processes")
def test_one_of_two_ddp_processes_killed_ends_the_other_too(qtbot, reporter, expect_reported, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path, max_iters=100_000, processes=2)
    pane.start()
    qtbot.waitUntil(while_running(pane, lambda: len(pane.history.train) > 2), timeout=RUN_TIMEOUT_MS)
    procs = pane.controller.processes()
    assert len(procs) == 2
    with expect_reported("worker died (exit code -9)"):
        os.kill(procs[1].pid, signal.SIGKILL)  # rank 0 now waits for rank 1 inside a collective, forever
        wait_ended(qtbot, pane)
    assert "worker died (exit code -9)" in pane.status.text()
    no_process_left(procs)
    pane.shutdown()


# ---- regression tests from using the pane ------------------------------------------------------------------------

def test_progress_text_is_not_drawn_over_by_the_bar_and_shows_averaged_tokens_per_s_and_eta(qtbot, reporter,
                                                                                             tmp_path):
    """The bar's own text was split and clipped by its chunk; tokens/s jumped with every step's timing."""
    from engine.messages import Finished, Outcome, Started, Step

    pane = make_pane(qtbot, reporter, tmp_path)
    pane.run_state.begin(str(tmp_path / "run"), 1000)
    pane.dispatch(Started("r", config={"max_iters": 1000}, n_params=1000, world_size=1, step=0))
    assert not pane.progress.isTextVisible()
    # 100 steps of 768 tokens, alternately 0.1 s and 0.3 s of compute (3 s per 10 steps of wall time with evals)
    for step in range(1, 101):
        pane.dispatch(Step("r", step=step, loss=2.0, lr=1e-3, grad_norm=1.0,
                           tokens_per_s=768 / (0.1 if step % 2 else 0.3), tokens_seen=768 * step, amp_scale=1.0,
                           skipped_steps=0, time=1000.0 + 0.3 * step))
    pane.redraw()
    text = pane.progress_text.text()
    # 20 steps of 768 tokens in 10 x 0.1 s + 10 x 0.3 s = 4 s -> 3,840 tokens/s (the last step alone says 2,560)
    assert "step 100 / 1,000" in text and "3,840 tok/s" in text, text
    # 0.3 s per step since the first step, 900 steps left -> 270 s
    assert "ETA 4:30" in text, text
    assert pane.progress.value() == 100
    pane.dispatch(Finished("r", step=100, outcome=Outcome.STOPPED))
    pane.redraw()
    assert "ETA" not in pane.progress_text.text()
    pane.shutdown()


def test_eta_is_gone_once_a_run_ends_even_without_a_new_message(qtbot, reporter, tmp_path):
    """After Done the text still said "ETA 0:00" (or the ETA of the last redraw)."""
    from engine.messages import Started, Step

    pane = make_pane(qtbot, reporter, tmp_path)
    pane.run_state.begin(str(tmp_path / "run"), 1000)
    pane.dispatch(Started("r", config={"max_iters": 1000}, n_params=1000, world_size=1, step=0))
    for step in (1, 2, 3):
        pane.dispatch(Step("r", step=step, loss=2.0, lr=1e-3, grad_norm=1.0, tokens_per_s=1000.0,
                           tokens_seen=64 * step, amp_scale=1.0, skipped_steps=0, time=float(step)))
    pane.redraw()
    assert "ETA" in pane.progress_text.text()
    pane.controller.sig_ended.emit("stopped", "stopped", "")
    assert "ETA" not in pane.progress_text.text() and "step 3 / 1,000" in pane.progress_text.text()
    pane.shutdown()


def test_a_followed_run_that_went_quiet_long_ago_gets_no_eta(qtbot, reporter, tmp_path):
    """A folder of a run killed yesterday showed an ETA as if it were still going."""
    import time

    from engine.messages import Started, Step, append_jsonl

    folder = tmp_path / "old-run"
    folder.mkdir()
    t0 = time.time() - 86_400
    append_jsonl(folder / "metrics.jsonl", Started("r", config={"max_iters": 500}, n_params=10, world_size=1))
    for step in range(1, 51):
        append_jsonl(folder / "metrics.jsonl", Step("r", step=step, loss=2.0, lr=1e-3, grad_norm=1.0,
                                                    tokens_per_s=1000.0, tokens_seen=64 * step, amp_scale=1.0,
                                                    skipped_steps=0, time=t0 + step))
    pane = make_pane(qtbot, reporter, tmp_path)
    pane.follow(str(folder))
    qtbot.waitUntil(lambda: pane.history.last_step == 50, timeout=10_000)  # read in the follower's thread
    pane.redraw()
    text = pane.progress_text.text()
    assert "step 50 / 500" in text and "1,000 tok/s" in text and "ETA" not in text, text
    pane.stop()
    pane.shutdown()


def test_the_parameter_estimate_uses_a_trained_tokenizers_vocabulary(qtbot, reporter, tmp_path):
    """A 512-token BPE tokenizer was estimated "with a 65-character vocabulary"; a broken file passed the check."""
    from app.paths import tokenizers_dir
    from app.training.checks import estimate_params
    from engine.tokenizers import BPETokenizer

    pane = make_pane(qtbot, reporter, tmp_path)
    text = (tmp_path / "corpus.txt").read_text(encoding="utf-8")  # make_pane's corpus
    tok = BPETokenizer.train(text, 300, name="small300")
    path = tokenizers_dir() / "small300.json"
    tok.save(path)
    pane.refresh_tokenizers()
    pane.form.tokenizer.setCurrentIndex(pane.form.tokenizer.findData(str(path)))
    pane.recheck()
    n = estimate_params(pane.form.values(), tok.n_vocab)
    assert f"≈ {n / 1e6:.2f} M parameters (vocabulary {tok.n_vocab:,})" == pane.params.text()
    assert pane.start_button.isEnabled(), pane.problems.text()
    path.write_text("this is not a tokenizer", encoding="utf-8")
    pane.recheck()
    assert "not a saved tokenizer" in pane.problems.text() and not pane.start_button.isEnabled()
    pane.shutdown()


def test_a_launch_that_raises_leaves_the_pane_idle_and_reports_it(qtbot, reporter, expect_reported, tmp_path,
                                                                  monkeypatch):
    """A RuntimeError from starting the processes left the pane "running" for ever at step 0."""
    pane = make_pane(qtbot, reporter, tmp_path)

    def refuse(config, world_size=1):
        raise RuntimeError("cannot spawn here")

    monkeypatch.setattr(pane.controller, "start", refuse)
    with expect_reported("Cannot start the training processes: cannot spawn here"):
        pane.start_button.click()
    assert pane.state == "idle" and pane.start_button.isEnabled() and not pane.stop_button.isEnabled()
    assert "cannot spawn here" in pane.status.text()
    assert pane.form.isEnabled()
    pane.shutdown()


# ---- fit and finish (issue 10) -----------------------------------------------------------------------------------

def test_the_run_folder_is_checked_before_start(qtbot, reporter, tmp_path):
    """Start was enabled for a file, /proc/... or an unwritable folder, and a traceback came 10 s later."""
    pane = make_pane(qtbot, reporter, tmp_path)

    def problems_for(folder):
        pane.form.set_values({**pane.form.values(), "out_dir": str(folder)})
        pane.recheck()
        return pane.problems.text()

    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert "is a file, not a folder" in problems_for(a_file) and not pane.start_button.isEnabled()
    assert "is a file, so" in problems_for(a_file / "run")
    assert "inside /proc" in problems_for("/proc/self/run") and not pane.start_button.isEnabled()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "cannot write in" in problems_for(locked / "run") and not pane.start_button.isEnabled()
    problems_for(tmp_path / "fine" / "run")
    assert pane.start_button.isEnabled(), pane.problems.text()
    pane.shutdown()


def test_resume_is_not_offered_for_a_run_trained_to_its_steps(qtbot, reporter, tmp_path):
    """Resume on a finished run started processes for 11 s, then said "Done"."""
    from engine.messages import CheckpointSaved, Started, append_jsonl

    folder = tmp_path / "done"
    folder.mkdir()
    append_jsonl(folder / "metrics.jsonl", Started("r", config={"max_iters": 200}))
    append_jsonl(folder / "metrics.jsonl", CheckpointSaved("r", step=200, path=str(folder / "ckpt.pt")))
    (folder / "ckpt.pt").write_bytes(b"ckpt")
    pane = make_pane(qtbot, reporter, tmp_path, out_dir=str(folder), max_iters=200)
    assert not pane.resume_button.isEnabled() and "raise Steps above it" in pane.resume_button.toolTip()
    assert "trained to step 200: raise Steps above 200" in pane.problems.text()
    pane.form.set_values({**pane.form.values(), "max_iters": 300})
    pane.recheck()
    assert pane.resume_button.isEnabled() and "already holds a checkpoint" in pane.problems.text()
    pane.shutdown()


def test_old_messages_go(qtbot, reporter, expect_reported, tmp_path):
    """The form's problems stayed up during a run, an old failure box stayed after New, the preset's name after
    its values were changed."""
    pane = make_pane(qtbot, reporter, tmp_path)
    assert pane.form.preset.currentText() == "tiny (edited)"  # make_pane shrank the model
    pane.form.choose_preset("tiny")
    assert pane.form.preset.currentText() == "tiny"
    pane.form.size.setCurrentIndex(pane.form.size.findData("small"))
    pane.form.size.activated.emit(pane.form.size.currentIndex())
    assert pane.form.preset.currentText() == "tiny (edited)"
    pane.form.set_values({**pane.form.values(), **pane.form.preset_values("tiny")})
    assert pane.form.preset.currentText() == "tiny"  # back to what the preset sets

    pane.run_state.begin(pane.form.values()["out_dir"], 200)
    assert not pane.problems.isVisibleTo(pane)
    with expect_reported("Training failed: the corpus vanished"):
        pane.controller.sig_ended.emit("failed", "the corpus vanished", "Traceback ...")
    assert pane.failure.isVisibleTo(pane) and pane.state == "idle"
    pane.form.new_button.click()
    assert not pane.failure.isVisibleTo(pane) and pane.status.text() == "Ready."
    pane.shutdown()


def test_a_learning_rate_that_will_diverge_is_warned_of(qtbot, reporter, tmp_path):
    pane = make_pane(qtbot, reporter, tmp_path, lr="1e9")
    assert "⚠ A learning rate of 1e+09 will almost surely make the loss diverge" in pane.problems.text()
    assert pane.start_button.isEnabled()  # a warning: the user may want to see it happen
    pane.form.set_values({**pane.form.values(), "lr": "3e-3"})
    pane.recheck()
    assert "diverge" not in pane.problems.text()
    pane.shutdown()


def test_plots_keep_legend_off_the_data_whole_steps_and_sane_ranges(qtbot, reporter, tmp_path):
    """The legend covered lines; ticks said 2.5 steps; one point gave an axis from -150 to 150; a failed start
    left the last run's range."""
    from engine.messages import Eval

    pane = started_pane(qtbot, reporter, tmp_path, 100)
    curves = pane.curves
    pane.dispatch(Eval("r", step=0, val_loss=4.2, train_loss=4.2))
    pane.redraw()
    (x0, x1), (y0, y1) = curves.loss_plot.viewRange()
    assert -0.5 <= x0 < x1 <= 6 and 3.5 < y0 < 4.2 < y1 < 5, curves.loss_plot.viewRange()
    for n in range(1, 4):
        pane.dispatch(make_step(n))
    pane.redraw()
    ticks = [v for _, values in curves.loss_plot.getAxis("bottom").tickValues(0, 3, 400) for v in values]
    assert ticks and all(float(v).is_integer() for v in ticks)
    legend = curves.legend.sceneBoundingRect()
    assert not legend.intersects(curves.loss_plot.vb.sceneBoundingRect())
    assert not legend.intersects(curves.grad_plot.vb.sceneBoundingRect())
    # the export is the plots as on screen, every part scaled alike (the legend stayed at screen size before)
    pane.export_png(str(tmp_path / "curves.png"))
    image = QImage(str(tmp_path / "curves.png"))
    view = curves.graphics.viewport()
    assert image.width() == 1600 and abs(image.height() - 1600 * view.height() / view.width()) <= 1
    pane.run_state.launch_failed("cannot spawn")
    pane.redraw()
    (x0, x1), (y0, y1) = curves.loss_plot.viewRange()
    assert -0.5 < x0 < 0 and 10 < x1 < 10.5 and -0.1 < y0 < 0 and 1 < y1 < 1.1
    pane.shutdown()


def test_the_plots_range_holds_while_new_steps_stay_inside_it(qtbot, reporter, tmp_path):
    """Every new step used to change the auto range, which rebuilt every axis: most of a redraw's cost. The range now
    moves only when the data leaves the span it holds, and still covers every point."""
    pane = started_pane(qtbot, reporter, tmp_path, 1000)
    curves = pane.curves
    for n in range(1, 41):
        pane.dispatch(make_step(n))
    pane.redraw()
    qtbot.wait(20)  # pyqtgraph applies auto range when it next paints
    held = curves.loss_plot.viewRange()
    (x0, x1), (y0, y1) = held
    assert x0 <= 1 and x1 >= 40 and y0 <= 4.0 - 0.1 * 40 and y1 >= 3.9
    for n in range(41, 46):  # inside the headroom on the right, lower losses inside the room below
        pane.dispatch(make_step(n))
    pane.redraw()
    qtbot.wait(20)  # pyqtgraph applies auto range when it next paints
    assert curves.loss_plot.viewRange() == held
    for n in range(46, 200):
        pane.dispatch(make_step(n))
    pane.redraw()
    qtbot.wait(20)  # pyqtgraph applies auto range when it next paints
    (x0, x1), (y0, y1) = curves.loss_plot.viewRange()
    assert x1 >= 199 and y0 <= 4.0 - 0.1 * 199
    pane.shutdown()


def started_pane(qtbot, reporter, tmp_path, max_iters: int):
    """A shown 900x600 pane whose state has just heard a run start (no process behind it)."""
    from engine.messages import Started

    pane = make_pane(qtbot, reporter, tmp_path)
    pane.resize(900, 600)
    pane.show()
    qtbot.waitExposed(pane)
    pane.run_state.begin(str(tmp_path / "run"), max_iters)
    pane.dispatch(Started("r", config={"max_iters": max_iters}, n_params=10))
    return pane


def make_step(n):
    from engine.messages import Step

    return Step("r", step=n, loss=4.0 - 0.1 * n, lr=1e-3, grad_norm=1.0, tokens_per_s=1000.0, tokens_seen=64 * n,
                time=float(n))


def test_quitting_during_a_run_hides_the_window_before_waiting_for_the_checkpoint(qtbot, reporter, tmp_path,
                                                                                 monkeypatch):
    """After "Yes" the window froze ~2 s while the run saved its checkpoint."""
    from PySide6.QtWidgets import QMainWindow

    window = QMainWindow()
    qtbot.addWidget(window)
    pane = make_pane(qtbot, reporter, tmp_path, max_iters=100_000)
    window.setCentralWidget(pane)
    window.show()
    pane.start()
    qtbot.waitUntil(while_running(pane, lambda: len(pane.history.train) > 0), timeout=RUN_TIMEOUT_MS)
    visible_while_waiting = []
    real = pane.controller.shutdown
    monkeypatch.setattr(pane.controller, "shutdown",
                        lambda *a, **k: (visible_while_waiting.append(window.isVisible()), real(*a, **k)))
    pane.shutdown()
    assert visible_while_waiting == [False]
    assert pane.state == "idle" and "Stopped at step" in pane.status.text()


def test_the_last_run_comes_back_at_start_with_its_curves_settings_and_checkpoint(qtbot, reporter, tmp_path):
    """After a restart the chart was empty and the form stale, though the run folder had everything (issue 9)."""
    from app.training.pane import TrainingPane
    from engine.messages import CheckpointSaved, Eval, Sample, Started, Step, append_jsonl

    folder = tmp_path / "last-run"
    folder.mkdir()
    metrics = folder / "metrics.jsonl"
    config = {"corpus": "shakespeare", "tokenizer": "char", "n_layer": 3, "n_head": 2, "n_embd": 48,
              "block_size": 24, "batch_size": 6, "lr": 2e-3, "max_iters": 40, "eval_interval": 10, "pos": "rope",
              "precision": "fp32", "out_dir": str(folder), "dropout": 0.05}
    append_jsonl(metrics, Started("r", config=config, n_params=1000, world_size=1))
    for n in range(1, 21):
        append_jsonl(metrics, Step("r", step=n, loss=3 - n / 10, lr=1e-3, grad_norm=1.0, tokens_per_s=500.0,
                                   tokens_seen=144 * n, time=float(n)))
        if n % 10 == 0:
            append_jsonl(metrics, Eval("r", step=n, val_loss=3 - n / 12, train_loss=3 - n / 11))
            append_jsonl(metrics, Sample("r", step=n, text=f"sample at {n}"))
            append_jsonl(metrics, CheckpointSaved("r", step=n, path=str(folder / "ckpt.pt")))
    (folder / "ckpt.pt").write_bytes(b"a checkpoint")

    pane = make_pane(qtbot, reporter, tmp_path)
    assert pane.reopen(str(folder))
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    pane.save_settings(settings)
    settings.sync()
    pane.shutdown()

    again = TrainingPane(reporter=reporter)
    qtbot.addWidget(again)
    saved = []
    again.sig_checkpoint_saved.connect(saved.append)
    again.restore_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again.state == "idle" and again.run_dir == str(folder)
    assert steps_of(again) == list(range(1, 21)) and len(again.history.evals) == 2
    x, _ = again.curves.raw_curve.getOriginalDataset()
    assert len(x) == 20
    assert "sample at 20" in again.samples.toPlainText()
    values = again.form.values()
    assert (values["n_layer"], values["n_embd"], values["pos"], values["out_dir"]) == (3, 48, "rope", str(folder))
    assert again.form.extra.get("dropout") == 0.05
    assert "step 20 of 40" in again.status.text()
    assert again.resume_button.isEnabled() and again.use_button.isEnabled()
    assert not again.start_button.isEnabled()  # the folder holds this run
    with qtbot.waitSignal(again.sig_use_checkpoint, timeout=1000) as used:
        again.use_button.click()
    assert used.args == [str(folder / "ckpt.pt")]
    assert saved == [str(folder / "ckpt.pt")]  # the Generation pane hears of it once
    again.shutdown()


# ---- fine-tuning an imported model (issue 7) ----------------------------------------------------------------------

def _hub_layout(root, name, folder):
    """``folder`` as the Hugging Face cache holds a download: models--org--name/{refs/main, snapshots/REV/...}."""
    import shutil

    repo = os.path.join(root, "models--" + name.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", "0" * 40)
    shutil.copytree(folder, snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write("0" * 40)


def test_start_from_an_imported_model_fine_tunes_it_and_generation_can_use_it(qtbot, reporter, tmp_path,
                                                                             monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.training.start_from import OPEN_FOLDER
    from engine.checkpoint import load_model
    from tests.hf_tiny import make_llama

    folder, _ = make_llama(str(tmp_path / "tiny-llama"), tokenizer="sentencepiece")
    hub = tmp_path / "hub"
    _hub_layout(str(hub), "org/tiny-llama", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    pane = make_pane(qtbot, reporter, tmp_path, max_iters=4, eval_interval=2)
    start_from = pane.form.start_from
    start_from.refresh()
    i = start_from.findData("org/tiny-llama")
    assert i >= 0 and "org/tiny-llama" in start_from.itemText(i)  # the cache's models are offered by name

    # "Hugging Face model folder…": cancelled keeps the choice, a folder is chosen
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    start_from.setCurrentIndex(start_from.findData(OPEN_FOLDER))
    start_from.activated.emit(start_from.currentIndex())
    assert pane.form.values()["init_from"] == ""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: folder)
    start_from.setCurrentIndex(start_from.findData(OPEN_FOLDER))
    start_from.activated.emit(start_from.currentIndex())
    assert pane.form.values()["init_from"] == folder
    assert not pane.form.tokenizer.isEnabled() and not pane.form.n_layer.isEnabled()  # the model's own
    pane.recheck()
    assert "its own shape and tokenizer" in pane.params.text()
    assert pane.start_button.isEnabled(), pane.problems.text()

    pane.start_button.click()
    wait_ended(qtbot, pane)
    assert "Done: 4 steps" in pane.status.text(), pane.status.text() + pane.failure.toPlainText()
    with qtbot.waitSignal(pane.sig_use_checkpoint, timeout=1000) as used:
        pane.use_button.click()
    model, tokenizer, _ = load_model(used.args[0])  # what the Generation pane opens
    assert tokenizer.n_vocab == model.config.vocab_size  # the Llama's own tokenizer, not the form's "char"
    ids = tokenizer.encode("the king")
    import torch

    with torch.no_grad():
        logits, _ = model(torch.tensor([ids]))
    assert logits.shape[-1] == tokenizer.n_vocab and torch.isfinite(logits).all()

    # a new model again: the shape fields come back
    start_from.setCurrentIndex(start_from.findData(""))
    start_from.activated.emit(start_from.currentIndex())
    assert pane.form.values()["init_from"] == "" and pane.form.tokenizer.isEnabled()
    pane.shutdown()
