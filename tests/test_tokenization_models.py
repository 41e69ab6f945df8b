"""The Tokenization pane with the tokenizers of Hugging Face models: listed from a hand-laid HF cache (tiny
tokenizer.json files, offline), in the encoding list and in Compare, opened from a model folder, and shown with their
true bytes (byte-level BPE and SentencePiece with byte fallback), never U+FFFD."""

import json
import os

import pytest

from app.tokenization.encodings import folder_encoding, load_tokenizer, model_encodings
from app.tokenization.pane import COMPARE_TAB, TokenizationPane
from tests import hf_tiny

WAIT_MS = 15_000
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_byte_level():
    """A byte-level BPE as GPT-2 builds it (bytes spelled with the byte -> character table), 256 bytes + 3 merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from engine.tokenizers.hf import bytes_to_unicode

    chars = bytes_to_unicode()
    vocab = {chars[b]: b for b in range(256)}
    merges = [(chars[32], "t"), ("h", "e"), (chars[32] + "t", "he")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def lay_repo(root, name, tokenizer=None, config=True):
    """models--org--name as huggingface_hub leaves it: blobs, a snapshot of links into them, refs/main."""
    repo = os.path.join(root, "models--" + name.replace("/", "--"))
    snap = os.path.join(repo, "snapshots", COMMIT)
    for sub in ("blobs", "refs", snap):
        os.makedirs(os.path.join(repo, sub), exist_ok=True)
    files = {}
    if config:
        files["config.json"] = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()
    if tokenizer is not None:
        files["tokenizer.json"] = tokenizer.to_str().encode()
    for i, (fname, data) in enumerate(files.items()):
        with open(os.path.join(repo, "blobs", f"blob{i}"), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), os.path.join(snap, fname))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(COMMIT)
    return repo


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = str(tmp_path / "hub")
    repos = {"sp": lay_repo(root, "org/tiny-llama-2", hf_tiny.sentencepiece_tokenizer()),
             "bl": lay_repo(root, "org/tiny-gpt", tiny_byte_level()),
             "none": lay_repo(root, "org/no-tokenizer")}
    monkeypatch.setenv("HF_HUB_CACHE", root)
    return repos


@pytest.fixture
def pane(hub, tokenization_pane):  # hub first: the pane lists the cache it points to
    return tokenization_pane


def offered(pane) -> dict:
    return {pane.encoding.itemData(i): pane.encoding.itemText(i) for i in range(pane.encoding.count())}


def wait_listed(pane, qtbot, key):
    qtbot.waitUntil(lambda: key in offered(pane), timeout=WAIT_MS)


def shown(pane, qtbot, text, name):
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.text == text
                    and pane.analysis.encoding == name, timeout=WAIT_MS)
    return pane.analysis


def labels(pane) -> list[str]:
    return [pane.token_view.label(i) for i in range(pane.token_view.count())]


def test_model_encodings_lists_repos_with_a_tokenizer(hub):
    found = {e.key: e for e in model_encodings()}
    assert set(found) == {hub["sp"], hub["bl"]}  # the repository without tokenizer.json offers nothing
    assert found[hub["sp"]].name == "org/tiny-llama-2 (model)"
    assert "cannot be opened" in found[hub["sp"]].tip  # a config without weights: the tokenizer is still usable
    assert model_encodings(os.path.join(str(hub["sp"]), "nowhere")) == []


def test_cache_models_listed_in_the_encoding_list_and_compare(pane, qtbot, hub):
    wait_listed(pane, qtbot, hub["bl"])
    assert offered(pane)[hub["sp"]] == "org/tiny-llama-2 (model)" and hub["none"] not in offered(pane)
    compare_keys = [pane.compare.choices.item(i).data(256) for i in range(pane.compare.choices.count())]
    assert hub["sp"] in compare_keys and hub["bl"] in compare_keys
    assert pane.encoding.currentData() == "gpt2"  # listing the cache does not change the choice

    text = "the 本 🤗"
    pane.set_text(text)
    for key in ("gpt2", hub["sp"], hub["bl"]):
        pane.compare.set_checked(key, True)
    pane.side_tabs.setCurrentIndex(COMPARE_TAB)
    qtbot.waitUntil(lambda: len(pane.compare.row_values()) == 5, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: all(row[1] != "—" for row in pane.compare.row_values()), timeout=WAIT_MS)
    rows = {row[0]: row for row in pane.compare.row_values()}
    sp = load_tokenizer(hub["sp"])
    assert rows["org/tiny-llama-2 (model)"][1] == str(len(sp.encode(text)))


def test_sentencepiece_byte_fallback_shows_true_bytes(pane, qtbot, hub):
    wait_listed(pane, qtbot, hub["sp"])
    assert pane.set_encoding(hub["sp"])
    text = "the 本"
    pane.set_text(text)
    a = shown(pane, qtbot, text, "org/tiny-llama-2")
    assert b"".join(s.bytes for s in a.spans) == text.encode()  # the dummy-prefix "▁" is no byte of the text
    assert labels(pane)[-3:] == ["<E6>", "<9C>", "<AC>"]  # 本 by byte fallback: its real bytes
    assert not any("\ufffd" in label for label in labels(pane))
    assert all(s.partial for s in a.spans[-3:])


def test_byte_level_bpe_shows_true_bytes(pane, qtbot, hub):
    wait_listed(pane, qtbot, hub["bl"])
    assert pane.set_encoding(hub["bl"])
    text = "the 🤗"
    pane.set_text(text)
    a = shown(pane, qtbot, text, "org/tiny-gpt")
    assert [s.bytes for s in a.spans] == [b"t", b"he", b" ", b"\xf0", b"\x9f", b"\xa4", b"\x97"]
    assert labels(pane)[-4:] == ["<F0>", "<9F>", "<A4>", "<97>"]
    assert not any("\ufffd" in label for label in labels(pane))
    pane.select_token(3)
    assert "U+1F917" in pane.inspector.text()


def test_open_model_folder(pane, qtbot, tmp_path, reporter):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(tiny_byte_level().to_str())
    assert pane.open_model_folder(str(folder))
    assert pane.encoding.currentData() == str(folder)
    assert pane.encoding.currentText() == "my-model (folder)"
    a = shown(pane, qtbot, pane.text(), "my-model")
    assert b"".join(s.bytes for s in a.spans) == pane.text().encode()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert not pane.open_model_folder(str(empty))
    assert "no tokenizer.json" in pane.status.text()
    assert pane.encoding.currentData() == str(folder)  # nothing lost: the choice stays
    with pytest.raises(ValueError, match="not a folder"):
        folder_encoding(str(tmp_path / "nowhere"))


def test_opened_folder_and_cache_choice_survive_a_restart(qtbot, reporter, hub, tmp_path):
    from app.settings import app_settings

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(hf_tiny.sentencepiece_tokenizer().to_str())
    first = TokenizationPane(reporter=reporter)
    qtbot.addWidget(first)
    assert first.open_model_folder(str(folder))
    wait_listed(first, qtbot, hub["bl"])
    first.set_encoding(hub["bl"])
    first.compare.set_checked(hub["sp"], True)
    settings = app_settings()
    first.save_settings(settings)
    first.shutdown()

    second = TokenizationPane(reporter=reporter)
    qtbot.addWidget(second)
    second.restore_settings(settings)
    assert second.encoding.currentData() == hub["bl"]  # selected before the cache listing came back
    assert str(folder) in offered(second)
    wait_listed(second, qtbot, hub["sp"])
    assert hub["sp"] in second.compare.checked()  # checked once the listing offered it
    assert list(offered(second).values()).count("org/tiny-gpt (model)") == 1
    second.shutdown()


def test_broken_tokenizer_is_one_clear_message(pane, qtbot, tmp_path, reporter):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{\"model\": {\"type\": \"nothing\"}}")
    assert pane.open_model_folder(str(folder))
    qtbot.waitUntil(lambda: "Could not tokenize" in pane.status.text(), timeout=WAIT_MS)
    assert "not a usable tokenizer.json" in pane.status.text()
    assert pane.analysis is None
