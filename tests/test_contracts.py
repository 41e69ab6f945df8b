"""The engine's contracts with the app: one list of choices, one vocabulary size, one parameter estimate, one config
validation, a typed run outcome, one user-error base, one atomic write, one start-token rule."""

import json
import os

import pytest

from engine import choices
from engine.checkpoint import CheckpointError
from engine.chat import ChatTemplateError
from engine.corpora import CorpusError
from engine.data import DataError
from engine.errors import Cancelled, UserError, is_user_error, one_line
from engine.fileio import atomic_write
from engine.hf import HFModelError, LoadCancelled
from engine.messages import Finished, Outcome, from_json, read_jsonl
from engine.model import GPT, GPTConfig
from engine.tokenizers import BPETokenizer, CharTokenizer, TokenizerError, get_tokenizer
from engine.train import ConfigError, TrainConfig, problems
from engine.train.config import model_config


# ---- one list of choices, one vocabulary size, one parameter estimate ------------------------------------------------

def test_the_choices_are_the_ones_the_engine_accepts():
    import engine.model
    import engine.tokenizers
    import engine.train

    assert engine.tokenizers.ENCODINGS is choices.ENCODINGS
    assert engine.model.POSITIONS == choices.POSITIONS
    assert engine.train.PRECISIONS is choices.PRECISIONS
    for pos in choices.POSITIONS:
        TrainConfig(pos=pos)
    for precision in ("fp32", "bf16"):
        TrainConfig(precision=precision)


def test_importing_choices_loads_neither_torch_nor_tiktoken():
    import subprocess
    import sys

    code = "import sys, engine.choices; print('torch' in sys.modules, 'tiktoken' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", choices.ENCODINGS)
def test_vocab_size_of_each_encoding_is_its_real_size(name):
    assert choices.vocab_size(name) == get_tokenizer(name).n_vocab


def test_vocab_size_of_saved_and_hf_tokenizers(tmp_path):
    chars = CharTokenizer.from_text("hello world", unknown="replace")
    chars.save(tmp_path / "c.json")
    assert choices.vocab_size(tmp_path / "c.json") == chars.n_vocab
    bpe = BPETokenizer.train("low lower lowest " * 50, 270)
    bpe.save(tmp_path / "b.json")
    assert choices.vocab_size(str(tmp_path / "b.json")) == bpe.n_vocab
    from tests.hf_tiny import sentencepiece_tokenizer

    (tmp_path / "hf").mkdir()
    sentencepiece_tokenizer().save(str(tmp_path / "hf" / "tokenizer.json"))
    from engine.tokenizers.hf import HFTokenizer

    assert choices.vocab_size(tmp_path / "hf") == HFTokenizer.from_file(tmp_path / "hf" / "tokenizer.json").n_vocab
    assert choices.vocab_size("char") is None
    with pytest.raises(UserError, match="does not exist"):
        choices.vocab_size(tmp_path / "gone.json")
    (tmp_path / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="not a saved character or BPE tokenizer"):
        choices.vocab_size(tmp_path / "x.json")


@pytest.mark.parametrize("fields", [
    dict(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=False),
    dict(n_layer=1, n_head=4, n_embd=32, block_size=16, bias=True, pos="rope", tie_weights=False),
    dict(n_layer=2, n_head=4, n_embd=32, block_size=16, norm="rmsnorm", mlp="swiglu", n_kv_head=2, pos="rope"),
])
def test_estimate_params_equals_the_built_model(fields):
    assert choices.estimate_params(fields, 97) == GPT(GPTConfig(vocab_size=97, **fields)).num_params()


# ---- one validation of a training config -----------------------------------------------------------------------------

def test_problems_lists_every_problem_at_once():
    found = problems({"n_embd": 130, "n_head": 4, "lr": "fast", "btach_size": 3, "pos": "sinusoidal"}, cuda=False)
    assert any("did you mean 'batch_size'" in p for p in found)
    assert "lr must be a number, got 'fast'" in found
    assert any(p.startswith("pos must be one of learned, rope, alibi") for p in found)
    assert problems(TrainConfig(), cuda=False) == []
    assert problems({}, cuda=False) == []


def test_problems_checks_the_machine_and_the_processes():
    assert problems({"precision": "fp16"}, cuda=True) == []
    assert "fp16 needs a CUDA GPU" in problems({"precision": "fp16"}, cuda=False)[0]
    assert "device cuda needs a CUDA GPU" in problems({"device": "cuda"}, cuda=False)[0]
    assert problems({"batch_size": 12}, world_size=4) == []
    assert problems({"batch_size": 12}, world_size=5) == [
        "batch_size 12 cannot be split evenly over 5 processes; use a multiple of 5"]
    big = problems({"n_layer": 48, "n_embd": 4096, "n_head": 32, "tokenizer": "o200k_base"}, memory=2**30)
    assert len(big) == 1 and "more than the 1.0 GiB of memory here" in big[0]


def test_problems_of_the_tokenizer_file(tmp_path):
    found = problems({"tokenizer": str(tmp_path / "gone.json")})
    assert len(found) == 1 and found[0].startswith("tokenizer: ") and "does not exist" in found[0]


def test_the_cli_and_construction_refuse_with_the_first_problem():
    with pytest.raises(ConfigError, match="width n_embd=130 does not split evenly among n_head=4 heads"):
        TrainConfig(n_embd=130, n_head=4)
    from engine.train.cli import main

    assert main(["precision=fp16", "device=cpu"]) == 2


def test_llama_style_settings_build_a_llama_shaped_model():
    cfg = TrainConfig(norm="rmsnorm", mlp="swiglu", pos="rope", n_kv_head=2, n_head=4, n_embd=64)
    config = model_config(cfg, 65)
    assert (config.norm, config.mlp, config.n_kv_head, config.intermediate_size) == ("rmsnorm", "swiglu", 2, 176)
    assert model_config(TrainConfig(), 65).intermediate_size == 4 * 128
    assert "n_head (4) must be a multiple of n_kv_head (3)" in problems({"n_kv_head": 3})
    assert problems({"norm": "batchnorm"})[0].startswith("norm must be one of layernorm, rmsnorm")


# ---- a typed outcome -------------------------------------------------------------------------------------------------

def test_finished_carries_a_typed_outcome_through_json():
    msg = Finished("r", step=5, outcome=Outcome.DIVERGED, detail="the loss became non-finite at step 5")
    back = from_json(msg.to_json())
    assert back == msg and back.outcome is Outcome.DIVERGED
    assert json.loads(msg.to_json())["outcome"] == "diverged"
    assert back.reason == "diverged: the loss became non-finite at step 5"
    assert Finished("r").reason == "completed"
    with pytest.raises(ValueError, match="unknown run outcome"):
        Finished("r", outcome="exploded")


def test_finished_lines_written_before_outcome_existed_still_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type":"finished","v":1,"run_id":"r","step":3,"reason":"diverged: too hot"}\n'
                    '{"type":"finished","v":1,"run_id":"r","step":4,"reason":"stopped"}\n'
                    '{"type":"finished","v":1,"run_id":"r","step":4,"outcome":"exploded"}\n', encoding="utf-8")
    msgs, _ = read_jsonl(path)
    assert [(m.outcome, m.detail) for m in msgs] == [(Outcome.DIVERGED, "too hot"), (Outcome.STOPPED, "")]


# ---- one user-error base, one Cancelled ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [CheckpointError, HFModelError, ConfigError, DataError, CorpusError, TokenizerError,
                                 ChatTemplateError])
def test_every_user_error_derives_from_user_error(cls):
    assert issubclass(cls, UserError) and issubclass(cls, ValueError)


def test_tokenizer_input_errors_are_user_errors_and_a_plain_value_error_is_not():
    with pytest.raises(TokenizerError):
        CharTokenizer.from_text("ab").encode("abc")
    with pytest.raises(TokenizerError):
        get_tokenizer("gpt2").decode([10**9])
    assert not is_user_error(ValueError("raised by torch"))


def test_one_cancelled():
    from engine import data
    from engine.tokenizers import Cancelled as TokenizerCancelled

    assert data.Cancelled is Cancelled and TokenizerCancelled is Cancelled and issubclass(LoadCancelled, Cancelled)


def test_one_line_keeps_the_first_line_and_can_shorten():
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(ValueError("x" * 300)).endswith("...") and len(one_line(ValueError("x" * 300))) == 200
    assert one_line(ValueError("x" * 300), None) == "x" * 300


# ---- one atomic write ------------------------------------------------------------------------------------------------

def test_atomic_write_leaves_the_old_file_when_the_body_fails(tmp_path):
    path = tmp_path / "state.txt"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert path.read_text(encoding="utf-8") == "old" and os.listdir(tmp_path) == ["state.txt"]


def test_two_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "a.json"
    with atomic_write(path, "w") as first, atomic_write(path, "w") as second:
        assert first.name != second.name
        first.write("1")
        second.write("2")
    assert path.read_text() == "1"  # the writer that finished last wins


def test_the_app_saved_text_is_written_atomically(tmp_path):
    from app.paths import read_state, state_dir, write_state

    write_state("x.txt", "typed\r\ntext")
    assert read_state("x.txt") == "typed\r\ntext"
    assert [p.name for p in state_dir().iterdir()] == ["x.txt"]


# ---- one start-token rule --------------------------------------------------------------------------------------------

def test_one_start_token_rule():
    assert get_tokenizer("gpt2").start_id == 50256  # <|endoftext|>
    chars = CharTokenizer.from_text("ab\ncd")
    assert chars.start_id == chars.encode("\n")[0]
    assert CharTokenizer.from_text("abc").start_id == 0


def test_an_empty_prompt_starts_from_a_llama_models_bos_token(tmp_path):
    from engine.hf import load_hf_model
    from engine.session import GenerationSession
    from tests.hf_tiny import make_llama

    folder, _ = make_llama(str(tmp_path / "llama"), tokenizer="sentencepiece")
    model, tokenizer, info = load_hf_model(folder)
    assert info["bos_token"] == "<s>" and tokenizer.start_id == tokenizer.special_tokens["<s>"] == 1
    session = GenerationSession(model, tokenizer)
    session.set_prompt("")
    assert session.ids == [1] and session.prompt_len == 1
    from engine.tokenizers import tokenizer_from_dict

    assert tokenizer_from_dict(tokenizer.to_dict()).start_id == 1  # kept in checkpoints

