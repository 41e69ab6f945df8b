"""llm-train beyond our GPT: fine-tuning a Hugging Face model or one of our checkpoints (init_from), a Llama-style
model from scratch, and the samples during training going through engine.decoding."""

import pytest
import torch

from engine.checkpoint import load_model, read_checkpoint
from engine.decoding import DecodeSettings
from engine.messages import Outcome, Sample
from engine.presets import preset
from engine.session import GenerationSession
from engine.train import ConfigError, TrainConfig, Trainer, train
from engine.train.cli import main

pytestmark = pytest.mark.slow  # starts training processes (see `make test-fast`)

TEXT = "".join(f"the cat sat on the mat {i} times, and the hat was on the cat.\n" for i in range(300))


def settings(tmp_path, name, **overrides) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(TEXT, encoding="utf-8")
    values = dict(corpus=str(corpus), out_dir=str(tmp_path / name), block_size=16, batch_size=4, max_iters=4,
                  lr_decay_iters=4, warmup_iters=1, eval_interval=4, eval_iters=1, sample_len=6,
                  checkpoint_interval=0, device="cpu", lr=1e-3)
    values.update(overrides)
    return TrainConfig(**values)


def test_fine_tune_a_hugging_face_llama_then_our_checkpoint_of_it(tmp_path):
    from app.generation.model_source import ModelSource, load_source
    from tests.hf_tiny import make_llama

    folder, _ = make_llama(str(tmp_path / "llama"), tokenizer="sentencepiece")
    msgs = []
    finished = train(settings(tmp_path, "ft", init_from=folder), msgs.append)
    assert finished.outcome is Outcome.COMPLETED and finished.step == 4
    ckpt = tmp_path / "ft" / "ckpt.pt"
    payload = read_checkpoint(ckpt)
    assert payload["origin"]["format"] == "huggingface" and payload["origin"]["init_from"] == folder
    assert payload["origin"]["architecture"] == "LlamaForCausalLM"
    assert payload["model_config"]["norm"] == "rmsnorm" and payload["model_config"]["n_kv_head"] == 2
    assert payload["tokenizer"]["kind"] == "hf" and payload["tokenizer"]["bos_token"] == "<s>"

    # "Use in Generation": the app opens it like any checkpoint, with the model's own tokenizer and bos token
    loaded = load_source(ModelSource("latest", path=str(ckpt)))
    assert "trained 4 steps" in loaded.description and loaded.tokenizer.kind == "SentencePiece-style"
    session = GenerationSession(loaded.model, loaded.tokenizer)
    session.set_prompt("")
    assert session.ids == [1]
    session.step(DecodeSettings(), torch.Generator().manual_seed(0))

    # a checkpoint (here: the run folder) as the start of another fine-tune
    second = train(settings(tmp_path, "ft2", init_from=str(tmp_path / "ft"), max_iters=2, lr_decay_iters=2))
    assert second.outcome is Outcome.COMPLETED
    origin = read_checkpoint(tmp_path / "ft2" / "ckpt.pt")["origin"]
    assert origin["format"] == "llm-playground-checkpoint" and origin["step"] == 4
    # the fine-tune started from the first run's weights, not from scratch
    first_model, _, _ = load_model(ckpt)
    second_model, _, _ = load_model(tmp_path / "ft2" / "ckpt.pt")
    w1, w2 = first_model.transformer.wte.weight, second_model.transformer.wte.weight
    assert (w1 - w2).abs().max() < 0.05


def test_a_fine_tune_resumes_with_its_source_shape(tmp_path):
    from tests.hf_tiny import make_gpt2

    folder, _ = make_gpt2(str(tmp_path / "gpt2"), n_layer=1)
    cfg = settings(tmp_path, "ft", init_from=folder, max_iters=4, lr_decay_iters=4, checkpoint_interval=2)
    msgs = []
    stopped = train(cfg, msgs.append, lambda: any(getattr(m, "step", 0) >= 2 for m in msgs if m.type == "step"))
    assert stopped.outcome is Outcome.STOPPED
    resumed = train(cfg.with_overrides({"resume": True}))
    assert resumed.outcome is Outcome.COMPLETED and resumed.step == 4
    assert read_checkpoint(tmp_path / "ft" / "ckpt.pt")["origin"]["format"] == "huggingface"


def test_init_from_errors_are_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        train(settings(tmp_path, "a", init_from="nobody/no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a checkpoint"):
        train(settings(tmp_path, "b", init_from=str(tmp_path / "empty")))
    from tests.hf_tiny import make_gpt2

    folder, _ = make_gpt2(str(tmp_path / "gpt2"), n_layer=1)
    with pytest.raises(ConfigError, match="longer than the context of the model in init_from"):
        train(settings(tmp_path, "c", init_from=folder, block_size=128))
    capsys.readouterr()
    assert main([f"corpus={tmp_path / 'corpus.txt'}", f"out_dir={tmp_path / 'd'}", "device=cpu",
                 "init_from=nobody/no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "init_from" in err


def test_llama_preset_trains_a_llama_style_model_from_scratch(tmp_path, capsys):
    values = {**preset("llama-char-cpu"), "corpus": str(tmp_path / "corpus.txt"), "out_dir": str(tmp_path / "l"),
              "n_layer": 1, "n_embd": 32, "block_size": 16, "max_iters": 3, "lr_decay_iters": 3, "warmup_iters": 1,
              "eval_interval": 3, "eval_iters": 1, "sample_len": 4}
    (tmp_path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    finished = train(TrainConfig.from_dict(values))
    assert finished.outcome is Outcome.COMPLETED
    config = read_checkpoint(tmp_path / "l" / "ckpt.pt")["model_config"]
    assert (config["norm"], config["mlp"], config["pos"], config["n_kv_head"]) == ("rmsnorm", "swiglu", "rope", 2)
    assert main(["--preset", "llama-char-cpu", f"corpus={tmp_path / 'corpus.txt'}", f"out_dir={tmp_path / 'm'}",
                 "n_layer=1", "n_embd=32", "max_iters=1", "eval_interval=1", "eval_iters=1", "sample_len=0",
                 "warmup_iters=0", "lr_decay_iters=1", "device=cpu"]) == 0


def test_training_samples_are_decoded_by_engine_decoding(tmp_path):
    """A greedy sample during training equals greedy stepping of the same model in a GenerationSession."""
    cfg = settings(tmp_path, "s", n_layer=1, n_head=2, n_embd=16, sample_temperature=0.0, sample_len=12)
    trainer = Trainer(cfg)
    try:
        text = trainer.sample(12)
        session = GenerationSession(trainer.raw, trainer.tokenizer)
        session.set_prompt("")
        assert session.ids == [trainer.tokenizer.start_id]
        for _ in range(12):
            session.step(DecodeSettings(temperature=0), torch.Generator())
        assert text == trainer.tokenizer.decode(session.generated_ids)
    finally:
        trainer.close()
    msgs = []
    train(settings(tmp_path, "t", n_layer=1, n_head=2, n_embd=16), msgs.append)
    assert [m for m in msgs if isinstance(m, Sample)]
