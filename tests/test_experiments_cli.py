"""llm-train --experiment: the positions experiment on a tiny config trains three runs that differ only in their
position encoding, and measures them at 1x, 2x and 4x the context; learned positions refuse past their table. The
precision experiment trains fp32 and bf16 autocast on the CPU, the processes experiment 1 and 2 gloo processes to
the same curve; bad input is one error line, before any folder is made."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.experiments import summarize
from engine.experiments.curves import read_curves
from engine.experiments.extrapolation import read_csv
from engine.experiments.plan import read_experiment

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"KING:\nLine {i}, my lord; the {i * 3 % 7} crowns.\nQUEEN:\nAye, {i}.\n\n" for i in range(150))
TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "batch_size=4", "warmup_iters=2", "eval_iters=2",
        "eval_interval=3", "sample_len=0", "device=cpu", "lr=3e-3", "max_iters=6", "lr_decay_iters=6"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "engine.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def trained_arms(out, names, done):
    """Each arm of the experiment in out: a finished run of TINY's 6 steps with a checkpoint, listed in the summary
    table the command printed; -> {arm: (summary, curves, config)}."""
    arms = {}
    for arm in names:
        s = summarize(out / arm)
        assert (s.state, s.steps, s.skipped_steps) == ("finished", 6, 0), (arm, s.detail)
        assert s.has_checkpoint and math.isfinite(s.best_val) and s.ms_per_step > 0 and s.tokens_per_s > 0
        assert f"[{arm}] finished at step 6: completed" in done.stdout
        arms[arm] = (s, read_curves(out / arm), json.loads((out / arm / "config.json").read_text()))
    table = done.stdout[done.stdout.index("\narm ") + 1:].splitlines()
    assert [line.split()[:2] for line in table[1:]] == [[arm, "6"] for arm in names]
    assert not (out / "extrapolation.csv").exists()  # only the positions experiment measures contexts
    return arms


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


@pytest.mark.slow
def test_positions_experiment_writes_three_runs_and_the_extrapolation_table(tmp_path, corpus):
    out = tmp_path / "exp"
    done = cli("--experiment", "positions", "--threads", "1", f"corpus={corpus}", f"out_dir={out}", *TINY)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = read_experiment(out)
    assert experiment.kind == "positions" and [a.name for a in experiment.arms] == ["learned", "rope", "alibi"]
    configs = {}
    for arm in ("learned", "rope", "alibi"):
        s = summarize(out / arm)
        assert (s.state, s.steps, s.positions) == ("finished", 6, arm)
        assert s.has_checkpoint and math.isfinite(s.best_val)
        configs[arm] = json.loads((out / arm / "config.json").read_text())
    # identical but for the positions (and their own folder)
    strip = [{k: v for k, v in c.items() if k not in ("pos", "out_dir")} for c in configs.values()]
    assert strip[0] == strip[1] == strip[2]

    rows = read_csv(out / "extrapolation.csv")
    assert [(r.arm, r.context) for r in rows] == [(arm, ctx) for arm in ("learned", "rope", "alibi")
                                                  for ctx in (16, 32, 64)]
    lines = (out / "extrapolation.csv").read_text().splitlines()
    assert lines[0] == "arm,context,val_loss"
    assert lines[2:4] == ["learned,32,", "learned,64,"]  # refused: empty
    loss = {(r.arm, r.context): r.val_loss for r in rows}
    assert math.isfinite(loss[("learned", 16)])
    assert all(math.isfinite(loss[(arm, ctx)]) for arm in ("rope", "alibi") for ctx in (16, 32, 64))
    assert "refused (this model uses learned positions" in done.stdout
    assert "[rope] finished at step 6: completed" in done.stdout


@pytest.mark.slow
def test_precision_experiment_trains_fp32_and_bf16_autocast_on_the_cpu(tmp_path, corpus):
    out = tmp_path / "exp"
    done = cli("--experiment", "precision", "--threads", "1", f"corpus={corpus}", f"out_dir={out}", *TINY)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = read_experiment(out)
    assert experiment.kind == "precision"
    assert [(a.name, a.overrides) for a in experiment.arms] == [("fp32", {"precision": "fp32"}),
                                                                ("bf16", {"precision": "bf16"})]  # fp16: CUDA only
    arms = trained_arms(out, ["fp32", "bf16"], done)
    assert [arms[a][0].precision for a in arms] == ["fp32", "bf16"]
    assert arms["fp32"][2] | {"precision": "", "out_dir": ""} == arms["bf16"][2] | {"precision": "", "out_dir": ""}
    fp32, bf16 = arms["fp32"][1], arms["bf16"][1]
    assert fp32.step.tolist() == bf16.step.tolist() == [1, 2, 3, 4, 5, 6]
    # the same run to bf16's precision, and not bit for bit: the autocast really ran
    np.testing.assert_allclose(bf16.loss, fp32.loss, rtol=1e-2)
    np.testing.assert_allclose(bf16.val_loss, fp32.val_loss, rtol=1e-2)
    assert not np.array_equal(bf16.loss, fp32.loss)


@pytest.mark.slow
def test_processes_experiment_trains_one_and_two_gloo_processes_to_the_same_curve(tmp_path, corpus):
    out = tmp_path / "exp"
    done = cli("--experiment", "processes", "--threads", "1", f"corpus={corpus}", f"out_dir={out}", *TINY)
    assert done.returncode == 0, done.stderr + done.stdout
    experiment = read_experiment(out)
    assert experiment.kind == "processes"
    assert [(a.name, a.world_size) for a in experiment.arms] == [("1-process", 1), ("2-processes", 2)]
    arms = trained_arms(out, ["1-process", "2-processes"], done)
    assert [arms[a][0].world_size for a in arms] == [1, 2]
    one, two = arms["1-process"][2], arms["2-processes"][2]
    assert one | {"out_dir": ""} == two | {"out_dir": ""} and one["batch_size"] == 4  # the same global batch
    one, two = arms["1-process"][1], arms["2-processes"][1]
    assert one.step.tolist() == two.step.tolist() == [1, 2, 3, 4, 5, 6]
    # the same curve to the numerics: rank 1 takes the second half of the batch rank 0 would have taken alone
    np.testing.assert_allclose(two.loss, one.loss, rtol=1e-5)
    np.testing.assert_allclose(two.val_loss, one.val_loss, rtol=1e-5)
    assert "[2-processes] run " in done.stdout and "2 processes" in done.stdout


@pytest.mark.slow
def test_experiment_command_line_errors_are_one_line(tmp_path, corpus):
    no_dir = cli("--experiment", "positions", f"corpus={corpus}")
    assert no_dir.returncode == 2 and no_dir.stderr.count("\n") == 1 and "needs out_dir=DIR" in no_dir.stderr
    odd = cli("--experiment", "processes", f"corpus={corpus}", f"out_dir={tmp_path / 'p'}", "batch_size=3")
    assert odd.returncode == 2 and "batch_size 3 is odd" in odd.stderr and odd.stderr.count("\n") == 1
    bad = cli("--experiment", "colours", f"out_dir={tmp_path}")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    typo = cli("--experiment", "precision", f"out_dir={tmp_path / 'q'}", "n_layr=2")
    assert typo.returncode == 2 and "did you mean 'n_layer'" in typo.stderr
    assert not (tmp_path / "q").exists() and not (tmp_path / "p").exists()


@pytest.mark.slow
def test_under_torchrun_every_arm_trains_in_the_torchrun_processes(tmp_path, corpus):
    """Two torchrun processes train the three arms one after another in one process group (the regression: a group
    made again for each arm lost its connection on the third), then rank 0 measures the extrapolation."""
    out = tmp_path / "exp"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "engine.train",
                           "--experiment", "positions", f"corpus={corpus}", f"out_dir={out}", *TINY],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"})
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    for arm in ("learned", "rope", "alibi"):
        s = summarize(out / arm)
        assert (s.state, s.steps, s.world_size) == ("finished", 6, 2)
    assert len(read_csv(out / "extrapolation.csv")) == 9
    assert done.stdout.count("experiment positions in") == 1  # rank 0 speaks, the others do not


def test_bad_precision_and_processes_input_is_one_line_before_any_folder(tmp_path, corpus, capsys, monkeypatch):
    """In this process (llm-train's main), so the refusals cost no torch start-up each."""
    from engine.train.cli import main

    def refused(kind, *args) -> str:
        assert main(["--experiment", kind, f"corpus={corpus}", *TINY, *args]) == 2  # args last: they win
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("llm-train: error: ")
        return err[len("llm-train: error: "):-1]

    q, p = f"out_dir={tmp_path / 'q'}", f"out_dir={tmp_path / 'p'}"
    assert refused("precision", q, "precision=fp8") == "precision must be one of fp32, bf16, fp16; got 'fp8'"
    assert refused("processes", p, "batch_size=5") == ("the processes experiment splits batch_size over 2 "
                                                       "processes; batch_size 5 is odd: use an even one")
    assert refused("processes", "--threads", "-1", p) == "--threads must be at least 1 (or 0 for automatic), got -1"
    assert refused("precision", "--resume", str(tmp_path), q).startswith("--experiment cannot be combined with")
    if not torch_cuda():  # refused up front, not once per arm after each started
        assert refused("precision", q, "device=cuda") == "device cuda needs a CUDA GPU, and this machine has none"
    held = tmp_path / "held"
    (held / "bf16").mkdir(parents=True)
    (held / "bf16" / "ckpt.pt").write_bytes(b"")  # an arm's folder holds a run: no arm starts (nor is overwritten)
    assert refused("precision", f"out_dir={held}") == (f"{held / 'bf16'} already holds a run; choose another out_dir "
                                                       f"for the experiment")
    assert sorted(p.name for p in held.iterdir()) == ["bf16"]
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts it
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert refused("processes", p) == "--experiment processes starts its own processes; run it without torchrun"
    assert not (tmp_path / "q").exists() and not (tmp_path / "p").exists()
