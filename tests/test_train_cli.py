"""llm-train: overrides, presets, config files, one-line errors, and exact resume after SIGKILL of a real process."""

import json
import re
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import read_checkpoint
from engine.messages import Finished, Started, Step, read_jsonl
from engine.train import ConfigError, build_config, main

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"KING:\nLine {i}, my lord; the {i * 3 % 7} crowns.\nQUEEN:\nAye, {i}.\n\n" for i in range(150))
TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "batch_size=4", "warmup_iters=2", "eval_iters=2",
        "eval_interval=5", "sample_len=8", "device=cpu", "lr=3e-3"]

# Runs the real CLI, but SIGKILLs its own process right after printing the Step message of step KILL_AT_STEP.
KILLER = """
import os, signal, sys
import engine.train.cli as cli
class Deadly(cli.ConsolePrinter):
    def __call__(self, msg):
        super().__call__(msg)
        if isinstance(msg, cli.Step) and msg.step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
cli.ConsolePrinter = Deadly
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def cli(*args, env=None, code=None):
    """Run llm-train in a fresh Python -> CompletedProcess."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "engine.train"]
    return subprocess.run(cmd + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def losses(out_dir):
    return [(m.step, m.loss) for m in read_jsonl(Path(out_dir) / "metrics.jsonl", 0)[0] if isinstance(m, Step)]


@pytest.mark.slow
def test_kill_and_resume_is_bit_for_bit(tmp_path, corpus):
    """SIGKILL mid-run, resume: steps since the last checkpoint are redone identically, and the run ends exactly
    like one that was never interrupted."""
    settings = [f"corpus={corpus}", *TINY, "max_iters=20", "lr_decay_iters=20", "checkpoint_interval=6",
                "dropout=0.1", "grad_accum=2"]
    ref = cli("--preset", "tiny", *settings, f"out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr
    assert "finished at step 20: completed" in ref.stdout

    killed = cli("--preset", "tiny", *settings, f"out_dir={tmp_path / 'run'}", code=KILLER,
                 env={"KILL_AT_STEP": "15"})
    assert killed.returncode == -signal.SIGKILL
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["train"]["iter_num"] == 12

    resumed = cli("--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 12" in resumed.stdout

    expected = dict(losses(tmp_path / "ref"))
    got = losses(tmp_path / "run")
    assert [s for s, _ in got] == list(range(1, 16)) + list(range(13, 21))  # 13..15 redone after the kill
    assert all(loss == expected[s] for s, loss in got)  # exactly, including the redone steps
    a, b = read_checkpoint(tmp_path / "ref" / "ckpt.pt"), read_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["train"]["iter_num"] == b["train"]["iter_num"] == 20
    # the new Started tells a follower where the redone part begins
    started = [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl", 0)[0] if isinstance(m, Started)]
    assert [m.step for m in started] == [0, 12]

    # --resume DIR max_iters=M continues the same run further (in-process this time)
    assert main(["--resume", str(tmp_path / "run"), "max_iters=23"]) == 0
    msgs = read_jsonl(tmp_path / "run" / "metrics.jsonl", 0)[0]
    assert isinstance(msgs[-1], Finished) and msgs[-1].step == 23
    assert json.loads((tmp_path / "run" / "config.json").read_text())["max_iters"] == 23


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(tmp_path):
    r = cli("batch_size=lots", f"out_dir={tmp_path / 'x'}")
    assert r.returncode == 2 and r.stderr == "llm-train: error: batch_size must be an integer, got 'lots'\n"
    r = cli(f"corpus={tmp_path / 'missing.txt'}", f"out_dir={tmp_path / 'x'}")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("llm-train: error: ") and "missing.txt: no such file" in r.stderr


@pytest.mark.parametrize("argv, code, message", [
    (["btach_size=3"], 2, "unknown training setting 'btach_size'; did you mean 'batch_size'?"),
    (["lr=-1"], 2, "lr must be a positive number"),
    (["precision=fp16", "device=cpu"], 2, "fp16 needs a CUDA GPU"),
    (["--preset", "nope"], 2, "invalid choice: 'nope'"),
    (["nope.json"], 2, "config file 'nope.json' not found"),
    (["--resume", "/nonexistent/run"], 2, "is not a run folder"),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
    (["=3"], 2, "expected key=value"),
])
def test_bad_command_lines(capsys, argv, code, message):
    try:
        result = main(argv)
    except SystemExit as e:  # argparse's own errors
        result = e.code
    err = capsys.readouterr().err
    assert result == code
    assert message in err and err.count("\n") == 1 and err.startswith("llm-train: error: ")


def test_data_errors_exit_1(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("hello there", encoding="utf-8")
    assert main([f"corpus={short}", f"out_dir={tmp_path / 'r'}", "device=cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too short" in err and "block_size 64" in err
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"abc\x00def" * 100)
    assert main([f"corpus={binary}", f"out_dir={tmp_path / 'r2'}", "device=cpu"]) == 1
    assert "binary" in capsys.readouterr().err


def test_settings_precedence(tmp_path):
    """defaults < --preset < CONFIG.json < key=value; nanoGPT-style --key=value also works."""
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"batch_size": 20, "lr": 5e-4, "n_layer": 3}), encoding="utf-8")
    c = build_config([str(conf), "lr=2e-4", "--max_iters=7"], preset_name="shakespeare-char-cpu")
    assert (c.batch_size, c.lr, c.n_layer, c.max_iters, c.n_embd, c.bias) == (20, 2e-4, 3, 7, 128, False)
    assert build_config([]).batch_size == 12  # defaults
    with pytest.raises(ConfigError, match="unexpected argument"):
        build_config([str(conf), str(conf)])
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON object"):
        build_config([str(bad)])


def test_a_cli_run_writes_the_run_folder(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["--preset", "tiny", f"corpus={corpus}", f"out_dir={out}", *TINY, "max_iters=6",
                 "checkpoint_interval=0"]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "ckpt.pt", ".lock"}
    printed = capsys.readouterr().out
    assert "step 6: loss" in printed and "--- sample at step 5 ---" in printed
    assert re.search(r"; fp32 matmul peak [0-9.]+ [GMT]FLOP/s", printed)  # what MFU is measured against
    assert re.search(r"step 6: .* tokens/s, MFU [0-9.]+%", printed)
    assert "finished at step 6: completed" in printed
    with pytest.raises(ConfigError, match="out_dir cannot change"):
        build_config([f"out_dir={tmp_path}"], resume=str(out))
    with pytest.raises(ConfigError, match="--preset cannot be combined with --resume"):
        build_config([], preset_name="tiny", resume=str(out))
