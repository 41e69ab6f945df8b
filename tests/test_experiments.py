"""The engine side of experiments: run summaries (states, a half-written metrics.jsonl), curves with resumes,
TensorBoard's debiased smoothing against a hand-written loop, experiment folders and the extrapolation table."""

import math
import os
import time

import numpy as np
import pytest

from engine.experiments import CurvesReader, ema, find_runs, summarize
from engine.experiments.curves import Smoother, value_at
from engine.experiments.extrapolation import Row, read_csv, table, write_csv
from engine.experiments.plan import arms, plan, read_experiment
from engine.messages import Eval, Failed, Finished, JsonlWriter, Outcome, Started, Step
from engine.runs import RunFolder
from engine.train.config import ConfigError, TrainConfig

CONFIG = {"n_layer": 2, "n_embd": 64, "pos": "rope", "tokenizer": "char", "corpus": "shakespeare", "max_iters": 10,
          "batch_size": 8, "grad_accum": 1, "block_size": 32, "precision": "fp32"}


def loop_ema(values, weight):
    """TensorBoard's smoothing as its JavaScript writes it: one value at a time."""
    last, count, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out.append(last / (1 - weight ** count))
    return out


def write_run(folder, n_steps=10, end=None, start_step=0, mode="w", t0=1_700_000_000.0):
    folder.mkdir(parents=True, exist_ok=True)
    if mode == "w":
        (folder / "metrics.jsonl").unlink(missing_ok=True)
    with JsonlWriter(folder / "metrics.jsonl") as w:
        w.write(Started("r1", config=CONFIG, n_params=100_000, step=start_step))
        for step in range(start_step + 1, start_step + n_steps + 1):
            w.write(Step("r1", step=step, loss=4.0 - 0.1 * step, tokens_per_s=1000.0, tokens_seen=256 * step,
                         time=t0 + step))
            if step % 5 == 0:
                w.write(Eval("r1", step=step, val_loss=4.1 - 0.1 * step, tokens_seen=256 * step))
        if end is not None:
            w.write(end)
    return folder


def test_ema_is_tensorboards_loop():
    """Hand-computed: 1, (0.25+1)/0.75, (0.625+1.5)/0.875."""
    assert ema([1.0, 2.0, 3.0], 0.5).tolist() == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 1.0, 1000)  # crosses several of ema()'s blocks
    values[[3, 300, 511, 512]] = [math.nan, math.inf, math.nan, -math.inf]
    for weight in (0.0, 0.3, 0.9, 0.999):
        got, want = ema(values, weight), np.array(loop_ema(values, weight))
        assert np.isnan(got).tolist() == np.isnan(want).tolist()
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-10)
    assert np.isnan(ema([math.nan, math.nan], 0.6)).all()
    with pytest.raises(ValueError, match="smoothing weight"):
        ema([1.0], 1.0)


@pytest.mark.parametrize("weight", [0.0, 0.01, 0.6, 0.99])
def test_smoother_continues_a_growing_series_and_starts_over_when_it_was_rewritten(weight):
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 1.0, 5000)  # several of ema()'s blocks at every weight
    values[[0, 7, 2600]] = [math.nan, math.inf, math.nan]
    smoother = Smoother(weight)
    for n in (0, 1, 2, 8, 9, 700, 701, 5000, 5000):  # growing, and a read with nothing new
        got = smoother.smooth(values[:n])
        want = np.array(loop_ema(values[:n], weight))
        assert np.isnan(got).tolist() == np.isnan(want).tolist()
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    rewritten = values.copy()
    rewritten[3000:] -= 1.0  # a resume redid the steps after 3000
    for series in (rewritten, rewritten[:4000], values[:100]):  # and shorter, and shorter still
        got, want = smoother.smooth(series), np.array(loop_ema(series, weight))
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    buffer = values[:200].copy()
    smoother.smooth(buffer)
    buffer[50] = 100.0  # the caller's array changed in place: the smoother compares with its own copy
    got, want = smoother.smooth(buffer), np.array(loop_ema(buffer, weight))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    for other in (0.5, weight):  # a new weight smooths the values held, then continues as before
        smoother.set_weight(other)
        got, want = smoother.smooth(buffer), np.array(loop_ema(buffer, other))
        assert np.isnan(got).tolist() == np.isnan(want).tolist()
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
        got, want = smoother.smooth(values[:300]), np.array(loop_ema(values[:300], other))
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
        smoother.smooth(buffer)
    with pytest.raises(ValueError, match="smoothing weight"):
        smoother.set_weight(1.0)


def test_value_at_picks_the_nearest_point():
    x, y = np.array([0.0, 10.0, 20.0]), np.array([1.0, 2.0, 3.0])
    assert value_at(x, y, 4.0) == (0.0, 1.0)
    assert value_at(x, y, 16.0) == (20.0, 3.0)
    assert value_at(x, y, 99.0) == (20.0, 3.0)
    assert value_at(x[:0], y[:0], 1.0) is None


def test_summaries_of_finished_stopped_crashed_and_running_runs(tmp_path):
    now = time.time()
    finished = summarize(write_run(tmp_path / "done", end=Finished("r1", step=10)))
    assert (finished.state, finished.steps, finished.name) == ("finished", 10, "done")
    assert finished.best_val == pytest.approx(3.1)
    assert finished.tokens_per_s == pytest.approx(1000.0)
    assert finished.ms_per_step == pytest.approx(256.0)
    assert (finished.positions, finished.tokenizer, finished.corpus) == ("rope", "char", "shakespeare")
    assert finished.model == "2 layers × 64, 0.10 M params"
    assert finished.date == 1_700_000_001.0

    stopped = summarize(write_run(tmp_path / "stopped", end=Finished("r1", step=10, outcome=Outcome.STOPPED)))
    assert stopped.state == "stopped"
    failed = summarize(write_run(tmp_path / "failed", end=Failed("r1", step=3, error="RuntimeError: boom")))
    assert (failed.state, failed.detail) == ("crashed", "RuntimeError: boom")
    end = Finished("r1", step=10, outcome=Outcome.DIVERGED, detail="nan")
    diverged = summarize(write_run(tmp_path / "div", end=end))
    assert diverged.state == "crashed"

    killed = write_run(tmp_path / "killed")  # no end message, quiet for an hour: killed without a word
    os.utime(killed / "metrics.jsonl", (now - 3600, now - 3600))
    assert summarize(killed, now=now).state == "crashed"
    assert "quiet for 60 min" in summarize(killed, now=now).detail
    assert summarize(write_run(tmp_path / "running")).state == "running"


def test_the_run_lock_tells_running_from_killed_at_once(tmp_path):
    from engine.runlock import RunLock

    folder = write_run(tmp_path / "locked")  # fresh metrics, no end message
    with RunLock(folder):
        s = summarize(folder)
        assert s.state == "running" and s.detail.startswith("held by pid")
    assert summarize(folder).state == "crashed"  # the lock is free: its process is gone, though the file is fresh


def test_a_resumed_run_is_running_again_and_then_finished(tmp_path):
    folder = write_run(tmp_path / "r", end=Finished("r1", step=10, outcome=Outcome.STOPPED))
    write_run(folder, n_steps=5, start_step=10, mode="a")
    assert summarize(folder).state == "running"
    with JsonlWriter(folder / "metrics.jsonl") as w:
        w.write(Finished("r1", step=15))
    s = summarize(folder)
    assert (s.state, s.steps) == ("finished", 15)


def test_a_half_written_metrics_line_is_left_for_later(tmp_path):
    folder = write_run(tmp_path / "half")
    line = Step("r1", step=11, loss=2.0, tokens_seen=2816, time=1_700_000_011.0).to_json()
    with open(folder / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(line[:25])  # the writer was killed mid-line
    assert summarize(folder).steps == 10
    reader = CurvesReader(folder)
    assert reader.update()
    assert reader.curves().step.tolist() == list(range(1, 11))
    with open(folder / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(line[25:] + "\n")
    assert reader.update()
    curves = reader.curves()
    assert curves.step[-1] == 11 and curves.loss[-1] == 2.0
    assert not reader.update()  # nothing new


def test_curves_drop_the_steps_a_resume_redoes(tmp_path):
    folder = write_run(tmp_path / "r", n_steps=10)  # killed after step 10, last checkpoint at step 6
    with JsonlWriter(folder / "metrics.jsonl") as w:
        w.write(Started("r1", config=CONFIG, step=6))
        w.write(Step("r1", step=7, loss=9.0, tokens_seen=7 * 256, time=1_700_000_100.0))
    reader = CurvesReader(folder)
    reader.update()
    c = reader.curves()
    assert c.step.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert c.loss[-1] == 9.0
    assert c.eval_step.tolist() == [5]  # the evaluation at step 10 was superseded
    assert c.x("time")[0] == 0.0 and c.x("time")[-1] == 99.0
    assert c.x("tokens", evals=True).tolist() == [5 * 256]
    with pytest.raises(ValueError, match="x axis"):
        c.x("furlongs")


def test_a_live_reader_keeps_its_points_across_reads_resumes_and_growth(tmp_path):
    """Reads of a growing run, with a resume inside a read and one between reads, give what one read of the whole
    file gives (hundreds of points: the reader's arrays grow several times), and curves handed out earlier stay as
    they were."""
    folder = write_run(tmp_path / "r", n_steps=300)  # evaluations every 5 steps
    reader = CurvesReader(folder)
    reader.update()
    early = reader.curves()
    with JsonlWriter(folder / "metrics.jsonl") as w:
        for step in range(301, 700):
            w.write(Step("r1", step=step, loss=float(step), tokens_seen=256 * step, time=1_700_000_000.0 + step))
        w.write(Started("r1", config=CONFIG, step=650))  # resumed from step 650, in the middle of this read
        for step in range(651, 801):
            w.write(Step("r1", step=step, loss=-float(step), tokens_seen=256 * step, time=1_700_000_000.0 + step))
        w.write(Eval("r1", step=800, val_loss=1.0, tokens_seen=256 * 800))
    assert reader.update()
    with JsonlWriter(folder / "metrics.jsonl") as w:  # a step that is not past the last: rewinds to before it
        w.write(Step("r1", step=799, loss=7.0, tokens_seen=256 * 799, time=1_700_000_999.0))
    assert reader.update() and not reader.update()
    live, whole = reader.curves(), CurvesReader(folder)
    whole.update()
    for name in ("step", "tokens", "seconds", "loss", "eval_step", "eval_tokens", "eval_seconds", "val_loss"):
        assert getattr(live, name).tolist() == getattr(whole.curves(), name).tolist(), name
    assert live.step.tolist() == list(range(1, 800)) and live.loss[[649, 650, 797, 798]].tolist() == [650, -651,
                                                                                                        -798, 7]
    assert live.eval_step.tolist() == list(range(5, 301, 5))  # the one at 800 was undone by the rewind to 798
    assert early.step.tolist() == list(range(1, 301)) and early.loss[-1] == pytest.approx(4.0 - 30.0)


def test_a_folder_with_only_a_checkpoint_and_garbage(tmp_path):
    empty = tmp_path / "config-only"
    empty.mkdir()
    (empty / "config.json").write_text("{not json", encoding="utf-8")
    s = summarize(empty)
    assert s.state == "crashed" and "config.json unreadable" in s.problem
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metrics.jsonl").write_bytes(os.urandom(3000) + b"\n")
    assert summarize(garbage).steps == 0
    broken = tmp_path / "broken-ckpt"
    broken.mkdir()
    (broken / "ckpt.pt").write_bytes(b"not a checkpoint")
    s = summarize(broken)
    assert "ckpt.pt unreadable" in s.problem and s.has_checkpoint


def test_find_runs_finds_experiment_arms_and_skips_other_folders(tmp_path):
    write_run(tmp_path / "runs" / "a")
    write_run(tmp_path / "runs" / "exp" / "learned")
    write_run(tmp_path / "runs" / "exp" / "rope")
    (tmp_path / "runs" / "not-a-run").mkdir()
    (tmp_path / "runs" / ".hidden").mkdir()
    write_run(tmp_path / "runs" / ".hidden" / "x")
    found = [p.relative_to(tmp_path / "runs").as_posix() for p in find_runs(tmp_path / "runs")]
    assert found == ["a", "exp/learned", "exp/rope"]
    assert RunFolder(tmp_path / "runs" / "a").has_metrics()


def test_extrapolation_csv_round_trip_and_table(tmp_path):
    rows = [Row("learned", 32, 2.5), Row("learned", 64, math.nan, "refused"), Row("rope", 32, 2.4),
            Row("rope", 64, 2.45)]
    path = tmp_path / "extrapolation.csv"
    write_csv(path, rows)
    assert path.read_text().splitlines() == ["arm,context,val_loss", "learned,32,2.500000", "learned,64,",
                                             "rope,32,2.400000", "rope,64,2.450000"]
    back = read_csv(path)
    assert [(r.arm, r.context) for r in back] == [("learned", 32), ("learned", 64), ("rope", 32), ("rope", 64)]
    assert math.isnan(back[1].val_loss)
    arm_names, contexts, cells = table(back)
    assert arm_names == ["learned", "rope"] and contexts == [32, 64] and cells[("rope", 64)] == 2.45
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="extrapolation.csv"):
        read_csv(path)


def test_experiment_arms_and_bad_experiment_folders(tmp_path):
    assert [a.name for a in arms("precision", cuda=True)] == ["fp32", "bf16", "fp16"]
    base = TrainConfig(out_dir=str(tmp_path / "exp"), device="cpu")
    assert [a.name for a in plan("precision", base, cuda=True, gpus=1).arms] == ["fp32", "bf16"]  # fp16 needs CUDA
    for kind in ("precision", "processes"):
        with pytest.raises(ConfigError, match="device cuda needs a CUDA GPU, and this machine has none"):
            plan(kind, TrainConfig(out_dir=str(tmp_path / "exp"), device="cuda"), cuda=False)
    assert plan("processes", TrainConfig(out_dir=str(tmp_path / "exp"), device="cuda"), cuda=True, gpus=1).base[
        "device"] == "cpu"  # two ranks cannot share one GPU
    assert not (tmp_path / "exp").exists()  # planning writes nothing
    with pytest.raises(ConfigError, match="unknown experiment"):
        arms("colours")
    with pytest.raises(ConfigError, match="not an experiment folder"):
        read_experiment(tmp_path)
    (tmp_path / "experiment.json").write_text('{"experiment": "positions", "arms": [{"name": "../x"}], "base": {}}')
    with pytest.raises(ConfigError, match="not a valid experiment"):
        read_experiment(tmp_path)
