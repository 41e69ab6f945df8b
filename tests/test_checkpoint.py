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


@pytest.mark.parametrize("tie", [True, False])
def test_a_model_laid_out_for_decoding_saves_and_loads(tmp_path, tokenizer, tie):
    """Weights stored as columns (engine.incremental.lay_out_for_decoding) are written as rows, a tied table once: the
    reader's forged-view check would refuse a strided tensor."""
    from engine.incremental import lay_out_for_decoding

    model = lay_out_for_decoding(make_model(tokenizer, tie_weights=tie))
    path = tmp_path / "ckpt.pt"
    save_model(path, model, tokenizer)
    loaded, _, payload = load_model(path)
    x = torch.tensor([tokenizer.encode("not to be")])
    torch.testing.assert_close(loaded(x)[0], model(x)[0], rtol=1e-6, atol=1e-6)
    state = payload["model"]
    assert all(t.is_contiguous() for t in state.values())
    assert (state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()) == tie


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


# -- issue 13: memory bombs, foreign integers, zip damage, checksums, optimizer state


def test_stride0_expanded_views_memory_bomb(tmp_path, tokenizer):
    """A few-KB file whose tensors are expanded views of a one-element storage claims a ~25 GB model: refused
    before anything full-size is allocated (run under an address-space limit: a regression only kills the child)."""
    from tests.limited import run_limited
    cfg = dict(vocab_size=tokenizer.n_vocab, block_size=16, n_layer=8, n_head=8, n_embd=8192)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in GPT(GPTConfig(**cfg)).state_dict().items()}
    one = torch.zeros(1)
    state = {k: one.expand(*s) if len(s) else one[0].clone() for k, s in shapes.items()}
    path = tmp_path / "bomb.pt"
    torch.save({"format": FORMAT, "version": 1, "model_config": GPTConfig(**cfg).to_dict(),
                "tokenizer": tokenizer.to_dict(), "model": state}, path)
    assert os.path.getsize(path) < 100_000
    proc = run_limited(f"""
        from engine.checkpoint import CheckpointError, load_model
        try:
            load_model({str(path)!r})
        except CheckpointError as e:
            print("REFUSED", e)
    """, limit_gib=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REFUSED bomb.pt: the tensor" in proc.stdout and "the file holds" in proc.stdout, proc.stdout


def test_model_larger_than_available_memory(tmp_path, tokenizer, monkeypatch):
    import engine.checkpoint as ck
    save_model(tmp_path / "ckpt.pt", make_model(tokenizer), tokenizer)
    monkeypatch.setattr(ck, "available_memory", lambda: 1000)
    message = error_of(tmp_path / "ckpt.pt")
    assert "needs" in message and "of memory" in message and "available" in message


@pytest.mark.parametrize("key", ["n_embd", "vocab_size", "block_size", "n_layer"])
def test_config_integers_1e18(tmp_path, tokenizer, key):
    path = tmp_path / "ckpt.pt"
    cfg = payload_of(tokenizer)["model_config"]
    value = 10**18 if key != "n_embd" else 2 * 10**18
    torch.save(payload_of(tokenizer, model_config={**cfg, key: value}), path)
    message = error_of(path)
    assert "ckpt.pt" in message


def _central_entries(data: bytes):
    start = 0
    while (i := data.find(b"PK\x01\x02", start)) >= 0:
        yield i
        start = i + 4


@pytest.mark.parametrize("damage", ["utf8_name", "zip_version"])
def test_zip_corruptions_are_checkpoint_errors(tmp_path, tokenizer, damage):
    path = tmp_path / "ckpt.pt"
    save_model(path, make_model(tokenizer), tokenizer)
    data = bytearray(path.read_bytes())
    i = next(_central_entries(bytes(data)))
    if damage == "utf8_name":  # the UTF-8 flag set on a name that is not UTF-8: UnicodeDecodeError in zipfile
        data[i + 8] |= 0x00
        data[i + 9] |= 0x08
        data[i + 46] = 0xFF
    else:  # "needs zip version 25.5": NotImplementedError in zipfile
        data[i + 6] = 0xFF
    path.write_bytes(bytes(data))
    message = error_of(path)
    assert "ckpt.pt" in message and "corrupt" in message


def test_weights_checksum_detects_flipped_bytes(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    model = make_model(tokenizer)
    save_model(path, model, tokenizer)
    assert "weights_sha256" in read_checkpoint(path)
    raw = model.state_dict()["lm_head.weight"].contiguous().view(torch.uint8).numpy().tobytes()[:64]
    data = path.read_bytes()
    at = data.find(raw)
    assert at > 0
    flipped = bytearray(data)
    flipped[at + 5] ^= 0x10  # a different float, the zip stays valid (torch stores its records uncompressed)
    path.write_bytes(bytes(flipped))
    message = error_of(path)
    assert "checksum" in message and "ckpt.pt" in message


def test_weights_checksum_detects_big_endian_mark(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    save_model(path, make_model(tokenizer), tokenizer)
    data = path.read_bytes()
    at = data.find(b"little")
    assert at > 0
    path.write_bytes(data[:at] + b"big\x00\x00\x00" + data[at + 6:])  # same length keeps the zip offsets
    with pytest.raises(CheckpointError):
        load_model(path)


def test_old_checkpoint_without_checksum_still_loads(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    torch.save(payload_of(tokenizer), path)  # written as before checksums: no weights_sha256
    model, _, payload = load_model(path)
    assert "weights_sha256" not in payload


def test_optimizer_state_wrong_shape_exp_avg(tokenizer):
    from engine.checkpoint import check_optimizer_state
    model = make_model(tokenizer)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    model(torch.tensor([[1, 2, 3]]))[0].sum().backward()
    opt.step()
    state = opt.state_dict()
    check_optimizer_state(state, params)  # the real one fits
    state["state"][0]["exp_avg"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="exp_avg for parameter 0 has shape"):
        check_optimizer_state(state, params)
    with pytest.raises(CheckpointError, match="not an optimizer state"):
        check_optimizer_state(None, params)
