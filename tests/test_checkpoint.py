"""Checkpoints: round trip, atomic save, and refusal of corrupt, foreign and malicious files."""

import os
import pickle

import pytest
import torch

from engine.checkpoint import (FORMAT, CheckpointError, load_model, read_checkpoint, save_checkpoint,
                               save_model)
from engine.model import GPT, GPTConfig

TEXT = "To be, or not to be, that is the question.\n"


@pytest.fixture
def tokenizer():
    from engine.tokenizers import CharTokenizer
    return CharTokenizer.from_text(TEXT)


def make_model(tokenizer, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=tokenizer.n_vocab, block_size=16, n_layer=1, n_head=2, n_embd=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def error_of(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


class Evil:
    """Unpickling this creates a folder: the proof that code from a file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("pos, tie", [("learned", True), ("alibi", False), ("rope", True)])
def test_round_trip_gives_same_logits(tmp_path, tokenizer, pos, tie):
    model = make_model(tokenizer, pos=pos, tie_weights=tie)
    path = tmp_path / "ckpt.pt"
    save_model(path, model, tokenizer, extra={"train": {"step": 7, "moments": torch.ones(3)}})
    loaded, tok, payload = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert tok == tokenizer and tok.encode(TEXT) == tokenizer.encode(TEXT)
    x = torch.tensor([tokenizer.encode("not to be")])
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert payload["format"] == FORMAT and payload["version"] == 1
    assert payload["train"]["step"] == 7 and torch.equal(payload["train"]["moments"], torch.ones(3))
    if tie:
        assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_extra_cannot_replace_own_keys(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="'model'"):
        save_model(tmp_path / "c.pt", make_model(tokenizer), tokenizer, extra={"model": {}})


def test_save_is_atomic(tmp_path, tokenizer, monkeypatch):
    path = tmp_path / "ckpt.pt"
    first = make_model(tokenizer, seed=1)
    save_model(path, first, tokenizer)
    before = path.read_bytes()

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half-written file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, make_model(tokenizer, seed=2), tokenizer)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]  # no temporary file left behind
    loaded, _, _ = load_model(path)
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded(x)[0], first(x)[0])


def test_save_checkpoint_fills_format_and_creates_folder(tmp_path):
    path = tmp_path / "run" / "sub" / "state.pt"
    save_checkpoint(path, {"train": {"step": 3}})
    payload = read_checkpoint(path)
    assert payload == {"format": FORMAT, "version": 1, "train": {"step": 3}}
    with pytest.raises(ValueError, match="must be a dict"):
        save_checkpoint(path, [1, 2])


def test_malicious_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Evil(probe)))  # sanity: a plain unpickle does run it
    assert probe.exists()

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil(marker)))
    message = error_of(path)
    assert not marker.exists()
    assert "refused" in message

    # the same object inside a genuine torch zip file, next to a valid-looking payload
    torch.save({"format": FORMAT, "version": 1, "model_config": {}, "tokenizer": {}, "model": {},
                "train": Evil(marker)}, path)
    message = error_of(path)
    assert not marker.exists()
    assert "refused" in message and "mkdir" in message


def test_truncated_file(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    save_model(path, make_model(tokenizer), tokenizer)
    data = path.read_bytes()
    for cut in (len(data) // 2, 50):
        path.write_bytes(data[:cut])
        assert "truncated or corrupt" in error_of(path)


@pytest.mark.parametrize("content, expected", [
    (b"", "empty"),
    (b"hello, this is just text\n" * 10, "not a PyTorch checkpoint"),
    (bytes(range(256)) * 4, "not a PyTorch checkpoint"),
    (b"PK\x03\x04" + b"\x00" * 300, "truncated or corrupt"),
    (b"\x80\x02" + b"\xff" * 300, "ckpt.pt"),
])
def test_garbage_files(tmp_path, content, expected):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(content)
    assert expected in error_of(path)


def test_missing_and_folder(tmp_path):
    assert "no checkpoint file" in error_of(tmp_path / "nope.pt")
    assert "is a folder" in error_of(tmp_path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    assert "not an LLM Playground checkpoint" in error_of(path)
    torch.save(torch.zeros(3), path)
    assert "not an LLM Playground checkpoint" in error_of(path)
    torch.save({"format": FORMAT, "version": 99}, path)
    assert "newer" in error_of(path)


def payload_of(tok, **changes):
    model = make_model(tok)
    payload = {"format": FORMAT, "version": 1, "model_config": model.config.to_dict(),
               "tokenizer": tok.to_dict(), "model": model.state_dict()}
    payload.update(changes)
    return payload


def test_missing_keys(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    payload = payload_of(tokenizer)
    del payload["model"]
    torch.save(payload, path)
    assert "missing model" in error_of(path)


def test_invalid_config(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    cfg = payload_of(tokenizer)["model_config"]
    torch.save(payload_of(tokenizer, model_config={**cfg, "n_head": 3}), path)
    assert "invalid model config" in error_of(path) and "divisible" in error_of(path)
    torch.save(payload_of(tokenizer, model_config={**cfg, "flash": True}), path)
    assert "unknown model config key" in error_of(path)
    torch.save(payload_of(tokenizer, model_config="gpt2"), path)
    assert "invalid model config" in error_of(path)


def test_weights_do_not_fit(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    other = make_model(tokenizer, n_embd=32)
    torch.save(payload_of(tokenizer, model=other.state_dict()), path)
    assert "do not fit" in error_of(path)
    torch.save(payload_of(tokenizer, model={"w": "not a tensor"}), path)
    assert "tensors" in error_of(path)


def test_bad_tokenizer(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    torch.save(payload_of(tokenizer, tokenizer={"kind": "martian"}), path)
    assert "tokenizer" in error_of(path)
    small = make_model(tokenizer).config.to_dict()
    torch.save(payload_of(tokenizer, model_config={**small, "vocab_size": 3},
                          model=make_model(tokenizer, vocab_size=3).state_dict()), path)
    assert "tokenizer has" in error_of(path)


def test_round_trip_with_an_openai_tokenizer(tmp_path):
    from engine.tokenizers import get_tokenizer
    gpt2 = get_tokenizer("gpt2")
    model = make_model(gpt2, vocab_size=50304)
    save_model(tmp_path / "gpt2.pt", model, gpt2)
    loaded, tok, payload = load_model(tmp_path / "gpt2.pt")
    assert payload["tokenizer"] == gpt2.to_dict() and tok.name == "gpt2"
    x = torch.tensor([tok.encode("Hello world")])
    assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("changes, expected", [
    ({"vocab_size": 2**34, "n_embd": 1024, "n_head": 8}, "lm_head.weight"),  # terabytes if built
    ({"n_layer": 10**9}, "n_layer=1000000000"),  # a billion blocks if built
])
def test_small_file_with_huge_config_is_refused_before_allocating(tmp_path, tokenizer, changes, expected):
    path = tmp_path / "ckpt.pt"
    cfg = payload_of(tokenizer)["model_config"]
    torch.save(payload_of(tokenizer, model_config={**cfg, **changes}), path)
    message = error_of(path)
    assert "do not fit" in message and expected in message
