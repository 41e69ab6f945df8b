"""Issue 13 on the command line: damaged run folders, a full disk, optimizer state that would corrupt the heap, file
modes. Each case is one readable line and a non-zero exit, and the run folder is left as it was."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import read_checkpoint, save_checkpoint
from engine.messages import Failed, read_jsonl
from engine.train import TrainConfig, main, train

pytestmark = pytest.mark.slow  # starts training processes (see `make test-fast`)

ROOT = Path(__file__).resolve().parent.parent
TEXT = "".join(f"{name}:\nWhat say you, {i}? I say {i * 7 % 11} and no more.\n\n"
               for i in range(120) for name in ("ROMEO", "JULIET"))
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=4, lr_decay_iters=4,
            warmup_iters=1, eval_interval=4, eval_iters=1, sample_len=4, checkpoint_interval=0, device="cpu")


def cli(*args, code=None, timeout=120):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "engine.train"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step run folder (copy it before changing it)."""
    base = tmp_path_factory.mktemp("reliability")
    corpus = base / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = TrainConfig(corpus=str(corpus), out_dir=str(base / "run"), **TINY)
    assert train(config).outcome == "completed"
    return base / "run"


def copy_run(finished_run, tmp_path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    return folder


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def damage_checkpoint(folder: Path, change) -> None:
    payload = read_checkpoint(folder / "ckpt.pt")
    change(payload)
    save_checkpoint(folder / "ckpt.pt", payload)


def _optimizer_entry(payload):
    return payload["train"]["optimizer"]["state"][0]


DAMAGES = {
    "missing_keys": (lambda p: p["train"].pop("rng"), "cannot be resumed: it lacks train.rng"),
    "missing_model_config": (lambda p: p.pop("model_config"), "cannot be resumed: it lacks model_config"),
    "unknown_tokenizer_kind": (lambda p: p["tokenizer"].update(kind="sentencepiece", format="spm"),
                               "its tokenizer cannot be rebuilt"),
    "optimizer_state_none": (lambda p: p["train"].update(optimizer=None), "lacks train.optimizer"),
    "optimizer_state_a_list": (lambda p: p["train"].update(optimizer=[1, 2]),
                               "the optimizer state is missing or not an optimizer state"),
    "bad_betas": (lambda p: p["train"]["optimizer"]["param_groups"][0].update(betas=(5.0, "x")),
                  "the optimizer's betas .* are not two numbers in \\[0, 1\\)"),
    "nan_eps": (lambda p: p["train"]["optimizer"]["param_groups"][1].update(eps=float("nan")),
                "the optimizer's eps nan is not a finite number"),
    "short_rng_state": (lambda p: p["train"]["rng"][0].update(torch=p["train"]["rng"][0]["torch"][:100]),
                        "cannot restore the training state"),
    "short_numpy_state": (lambda p: p["train"]["rng"][0]["numpy"].update(keys=torch.zeros(3, dtype=torch.int64)),
                          "cannot restore the training state"),
    "bad_generator_state": (lambda p: p["train"].update(data_generator=torch.zeros(7, dtype=torch.uint8)),
                            "cannot restore the training state"),
    "empty_rng_list": (lambda p: p["train"].update(rng=[]), "its train.rng is not one random state per process"),
    "huge_iter_num": (lambda p: p["train"].update(iter_num=10**30), "its train.iter_num 1000000000000000000000000000000"
                      " is not a step count"),
    "wrong_shaped_exp_avg": (lambda p: _optimizer_entry(p).update(exp_avg=torch.zeros(3)),
                             "the optimizer's exp_avg for parameter 0 has shape \\(3,\\)"),
    "exp_avg_of_ints": (lambda p: _optimizer_entry(p).update(
        exp_avg=torch.zeros_like(_optimizer_entry(p)["exp_avg"], dtype=torch.int64)), "exp_avg for parameter 0"),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_run_folder_is_one_line_and_left_alone(finished_run, tmp_path, capsys, case):
    change, message = DAMAGES[case]
    folder = copy_run(finished_run, tmp_path)
    damage_checkpoint(folder, change)
    before = snapshot(folder)
    code = main(["--resume", str(folder), "max_iters=6"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("llm-train: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert snapshot(folder) == before


def test_resume_with_a_wrong_shaped_exp_avg_never_steps(finished_run, tmp_path):
    """Regression: a wrong-shaped AdamW exp_avg made the fused CPU step write out of bounds (exit 139 or
    "malloc(): corrupted"), sometimes after saving a checkpoint of NaNs. It is refused before the first step."""
    folder = copy_run(finished_run, tmp_path)
    damage_checkpoint(folder, lambda p: [e.update(exp_avg=torch.zeros(1)) for e in p["train"]["optimizer"]
                                         ["state"].values()])
    before = snapshot(folder)
    r = cli("--resume", folder, "max_iters=40")
    assert r.returncode == 1 and "exp_avg for parameter" in r.stderr and r.stderr.count("\n") == 1
    assert snapshot(folder) == before


@pytest.mark.parametrize("content, message", [
    ("[1, 2, 3]", "holds a JSON list, not the run's settings"),
    ("[" * 100000, "cannot read .*config.json: its JSON is nested too deep"),
    (b"\xff\xfe{}", "cannot read .*config.json: it is not UTF-8 text \\(byte 0xff at offset 0\\); it should hold "
                     "the run's settings as a JSON object \\(delete it to resume from ckpt.pt's own copy\\)"),
    ('{"n_layer": 1,', "it is not valid JSON \\(Expecting property name enclosed in double quotes at line 1"),
    ('{"n_layer": "many"}', "n_layer must be an integer"),
])
def test_damaged_config_json_is_one_line(finished_run, tmp_path, capsys, content, message):
    folder = copy_run(finished_run, tmp_path)
    (folder / "config.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(folder)
    code = main(["--resume", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err
    assert "codec" not in err
    assert snapshot(folder) == before


DISK_FULL = """
import sys, torch
import engine.checkpoint as ck
real = torch.save
def full(obj, f, *a, **k):
    f.write(b"PK" + b"x" * 4000)
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4032")
ck.torch.save = full
import engine.train.cli as cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_disk_full_while_saving_is_one_line(tmp_path):
    """Regression: a full disk gave a 21-39 line traceback ending in "unexpected pos ..." that never said why."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    args = [f"{k}={v}" for k, v in {**TINY, "corpus": corpus, "out_dir": tmp_path / "run"}.items()]
    r = cli(*args, code=DISK_FULL)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("llm-train: error: disk full while saving ckpt.pt (")
    failed = [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")[0] if isinstance(m, Failed)]
    assert failed and failed[-1].error.startswith("disk full while saving ckpt.pt") and failed[-1].traceback == ""
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")] == []


def test_disk_full_while_writing_metrics_is_one_line(tmp_path, monkeypatch):
    from engine.messages import JsonlWriter

    def full(self, msg):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JsonlWriter, "write", full)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    msgs = []
    with pytest.raises(OSError, match="disk full while writing metrics.jsonl"):
        train(TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run"), **TINY), msgs.append)
    assert isinstance(msgs[-1], Failed) and msgs[-1].traceback == ""
    assert msgs[-1].error.startswith("disk full while writing metrics.jsonl")


def test_checkpoints_and_token_caches_are_created_0644(tmp_path):
    """Regression: ckpt.pt and token caches were 0600 (mkstemp) while the rest of a run folder was 0644."""
    old = os.umask(0o022)
    try:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text(TEXT, encoding="utf-8")
        train(TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                          **TINY))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    modes.update({"cache:" + p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "cache").iterdir()})
    assert set(modes.values()) == {0o644}, modes
    assert json.loads((tmp_path / "run" / "config.json").read_text())["n_layer"] == 1


@pytest.mark.parametrize("setting, message", [
    ("seed=100000000000000000000000", "seed must be between 0 and 2\\*\\*63 - 1"),
    ("sample_temperature=1e-40", "sample_temperature must be 0 \\(greedy\\) or at least 1e-06"),
])
def test_settings_that_failed_after_files_were_written_are_refused_first(tmp_path, capsys, setting, message):
    """Regression: seed beyond 64 bits gave a torch traceback; sample_temperature=1e-40 failed at the first sample,
    after config.json and metrics.jsonl were written."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    args = [f"{k}={v}" for k, v in {**TINY, "corpus": corpus, "out_dir": tmp_path / "run"}.items()]
    assert main([*args, setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_a_small_temperature_samples_without_nan(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    assert train(TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run"),
                             **{**TINY, "sample_temperature": 1e-5})).outcome == "completed"


@pytest.mark.parametrize("setting", ["n_layer=100000 n_embd=128 n_head=4", "batch_size=1000000000"])
def test_absurd_sizes_are_refused_before_allocating(tmp_path, setting):
    """Regression: n_layer=100000 or batch_size=1e9 started building (swapping, or killed by the OS). The memory a
    run needs is estimated first; run under an address-space limit, so a regression cannot take the runner down."""
    from tests.limited import run_limited

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    args = [f"{k}={v}" for k, v in {**TINY, "corpus": corpus, "out_dir": tmp_path / "run"}.items()]
    args += setting.split()
    r = run_limited(f"import sys\nfrom engine.train import main\nsys.exit(main({args!r}))", limit_gib=2.0)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert re.search(r"needs at least [\d.,]+ (GiB|TiB) \(weights, gradients, optimizer state and activations\), "
                     r"more than the [\d.,]+ GiB of memory here; choose a smaller width, fewer layers, a smaller "
                     r"batch or a smaller vocabulary", lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_cache_dir_that_is_a_file_is_one_line(tmp_path, capsys, where):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    cache = corpus if where == "file" else corpus / "sub"
    args = [f"{k}={v}" for k, v in {**TINY, "corpus": corpus, "out_dir": tmp_path / "run", "cache_dir": cache}.items()]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cache_dir {cache}" in err and "choose another cache_dir" in err, err
    assert not (tmp_path / "run").exists()


def test_resume_after_the_corpus_gained_a_character_is_one_line(finished_run, tmp_path, capsys):
    """Regression: a char-tokenizer run resumed on a corpus that gained 'é' died with a traceback."""
    folder = copy_run(finished_run, tmp_path)
    corpus = Path(json.loads((folder / "config.json").read_text())["corpus"])
    grown = tmp_path / "grown.txt"
    grown.write_text(corpus.read_text(encoding="utf-8") + "é\n", encoding="utf-8")
    before = snapshot(folder)
    assert main(["--resume", str(folder), f"corpus={grown}", "max_iters=6"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be encoded with the run's tokenizer" in err and "'é'" in err, err
    assert "resume with that corpus, or start a new run" in err
    assert snapshot(folder) == before
