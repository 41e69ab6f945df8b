"""llm-train --experiment: the positions experiment on a tiny config trains three runs that differ only in their
position encoding, and measures them at 1x, 2x and 4x the context; learned positions refuse past their table."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.experiments import summarize
from engine.experiments.extrapolation import read_csv
from engine.experiments.plan import read_experiment

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"KING:\nLine {i}, my lord; the {i * 3 % 7} crowns.\nQUEEN:\nAye, {i}.\n\n" for i in range(150))
TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "batch_size=4", "warmup_iters=2", "eval_iters=2",
        "eval_interval=3", "sample_len=0", "device=cpu", "lr=3e-3", "max_iters=6", "lr_decay_iters=6"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "engine.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


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
