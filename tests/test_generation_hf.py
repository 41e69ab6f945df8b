"""The Generation pane with tiny imported Hugging Face models (random weights, written by save_pretrained): picked
from the hub cache in the model picker, stepped, undone, forced; a chat prompt; a repository that cannot be opened."""

import os
import shutil

import pytest

import hf_tiny
from app.generation.pane import GenerationPane


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hugging Face cache with a tiny Llama (chat template), a tiny GPT-2, and an unfinished download."""
    root = tmp_path_factory.mktemp("hub")
    made = tmp_path_factory.mktemp("made")
    hf_tiny.make_llama(str(made / "llama"), tokenizer="sentencepiece")
    hf_tiny.make_gpt2(str(made / "gpt2"))
    for name, folder in (("tiny/llama-chat", "llama"), ("tiny/gpt2", "gpt2"), ("tiny/partial", "gpt2")):
        shutil.copytree(made / folder, made / name)
        hf_tiny.put_in_hub_cache(str(root), name, str(made / name))
    (root / "models--tiny--partial" / "blobs" / "abc.incomplete").write_bytes(b"")
    return str(root)


@pytest.fixture
def pane(qtbot, reporter, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", hub)
    p = GenerationPane(reporter=reporter)
    qtbot.addWidget(p)
    p.prompt.setPlainText("the")
    yield p
    p.shutdown()


def wait_idle(qtbot, pane):
    qtbot.waitUntil(lambda: not pane.busy, timeout=20000)


def pick(qtbot, pane, name):
    row = next(i for i, (text, _) in enumerate(pane.source_box.entries) if name in text)
    pane.source_box.choose(row)
    wait_idle(qtbot, pane)
    assert pane.loaded is not None and pane.banner.isHidden(), pane.banner.text()


def test_the_picker_lists_the_hub_cache_with_sizes_and_reasons(pane):
    texts = [text for text, _ in pane.source_box.entries]
    llama = next(t for t in texts if "tiny/llama-chat" in t)
    assert " MB · " in llama and " k parameters" in llama and "0.0 MB" not in llama  # 36.8 k at width 32
    partial_row = next(i for i, t in enumerate(texts) if "tiny/partial" in t)
    assert "cannot open" in texts[partial_row] and "incomplete" in texts[partial_row]
    assert not pane.source_box.model().item(partial_row).isEnabled()
    pane.source_box.choose(partial_row)  # a disabled row does nothing
    assert not pane.busy
    assert any("Open model folder" in t for t in texts)


def test_pick_step_undo_force_an_imported_model(qtbot, pane):
    pick(qtbot, pane, "tiny/gpt2")
    assert "GPT2LMHeadModel" in pane.model_info.text()
    assert pane.chart.data.vocab_size == hf_tiny.GPT2_VOCAB
    tok = pane.loaded.tokenizer
    assert pane.snapshot.ids == tok.encode("the")
    for _ in range(3):
        pane.step()
        wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 3
    generated = tok.decode(pane.snapshot.ids[pane.snapshot.prompt_len:])
    assert pane.text.toPlainText() == "the" + generated
    pane.undo()
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 2
    target = tok.encode(" fox")[0]
    pane.force(target)
    wait_idle(qtbot, pane)
    assert pane.snapshot.ids[-1] == target and pane.snapshot.history[-1].forced
    assert pane.text.toPlainText().endswith(" fox")


def test_a_chat_prompt_shows_the_templates_special_tokens(qtbot, pane):
    pick(qtbot, pane, "tiny/llama-chat")
    assert not pane.chat.isHidden()  # this model has a chat template
    pane.prompt.setPlainText("hi")
    pane.chat.setChecked(True)
    qtbot.waitUntil(lambda: not pane.busy and pane.state.prompt.rendered is not None, timeout=10000)
    assert pane.state.prompt.rendered == "<s><|user|>hi</s><|assistant|>"
    assert pane.text.toPlainText() == "<s><|user|>hi</s><|assistant|>"
    tok = pane.loaded.tokenizer
    assert pane.snapshot.ids[0] == tok.special_tokens["<s>"]  # the special tokens are tokens, not text
    pane.step()
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 1


def test_bf16_is_offered_and_used(qtbot, pane):
    import torch

    pane.precision.setCurrentIndex(pane.precision.findData("bfloat16"))
    pick(qtbot, pane, "tiny/gpt2")
    assert next(pane.loaded.model.parameters()).dtype == torch.bfloat16
    assert "bfloat16" in pane.model_info.text()
    pane.step()
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 1


def test_opening_a_model_folder(qtbot, pane, hub):
    snapshots = os.path.join(hub, "models--tiny--gpt2", "snapshots")
    folder = os.path.join(snapshots, os.listdir(snapshots)[0])
    pane.load_checkpoint(folder)
    wait_idle(qtbot, pane)
    assert pane.loaded.source.kind == "hf" and pane.banner.isHidden(), pane.banner.text()
