"""Hugging Face model folders: each family equals transformers, the tokenizer equals `tokenizers`, the cache is
listed without crashing on partial downloads, and every bad folder gets one clear line."""

import json
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hf_tiny
from engine import load_model
from engine.chat import ChatTemplateError, render_chat
from engine.hf import HFModelError, LoadCancelled, load_hf_model, resolve_model
from engine.hub import hub_models
from engine.model import GPT, GPTConfig
from engine.tokenizers import tokenizer_from_dict
from engine.tokenizers.hf import HFTokenizer

FAMILIES = {
    "gpt2": hf_tiny.make_gpt2,
    "llama": hf_tiny.make_llama,  # GQA (4 query / 2 kv heads), untied head, rope theta 500000
    "llama3-scaled": lambda d: hf_tiny.make_llama(d, rope_scaling=True, tie=True),
    "qwen2": hf_tiny.make_qwen2,  # q/k/v biases, tied head
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: make(str(root / name)) for name, make in FAMILIES.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_transformers(folders, family):
    folder, ref = folders[family]
    model, tok, info = load_model(folder)
    assert info["format"] == "huggingface" and info["dtype"] == "float32"
    torch.manual_seed(1)
    ids = torch.randint(0, tok.n_vocab, (2, 40))  # past original_max_position_embeddings=16 for the scaled rope
    with torch.no_grad():
        expected = ref(ids).logits
        got, _ = model(ids)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("family", FAMILIES)
def test_kv_cache_steps_equal_full_pass(folders, family):
    model, tok, _ = load_model(folders[family][0])
    ids = torch.randint(0, tok.n_vocab, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, _ = model(ids)
        cache = model.new_cache()
        first, _ = model(ids[:, :7], cache=cache)
        steps = [first] + [model(ids[:, i:i + 1], cache=cache)[0] for i in range(7, 20)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_attention_per_query_head_with_gqa(folders):
    model, _, _ = load_model(folders["llama"][0])
    with torch.no_grad():
        logits, _, attn = model(torch.tensor([[1, 2, 3, 4, 5]]), return_attention=True)
        plain, _ = model(torch.tensor([[1, 2, 3, 4, 5]]))
    assert len(attn) == 2 and attn[0].shape == (1, 4, 5)  # 4 query heads, not the 2 kv heads
    assert torch.allclose(attn[0].sum(-1), torch.ones(1, 4))
    assert torch.allclose(logits, plain, atol=1e-5)
    assert model.config.n_kv_head == 2 and model.lm_head.weight is not model.transformer.wte.weight


def test_bfloat16_and_progress_and_cancel(folders):
    seen = []
    model, _, info = load_hf_model(folders["qwen2"][0], dtype="bfloat16", progress=lambda d, t: seen.append((d, t)))
    assert info["dtype"] == "bfloat16" and model.transformer.wte.weight.dtype == torch.bfloat16
    assert model.rope_inv_freq.dtype == torch.float32
    assert seen and seen[-1][0] == seen[-1][1] and all(a[0] < b[0] for a, b in zip(seen, seen[1:]))
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))
    calls = []
    with pytest.raises(LoadCancelled):
        load_hf_model(folders["qwen2"][0], cancel=lambda: calls.append(1) or len(calls) > 3)
    assert len(calls) == 4


def test_old_config_dicts_default_to_our_gpt():
    old = {"vocab_size": 65, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0,
           "bias": True, "pos": "rope", "tie_weights": True}
    cfg = GPTConfig.from_dict(old)
    assert (cfg.norm, cfg.mlp, cfg.n_kv_head, cfg.intermediate_size, cfg.qkv_bias) == ("layernorm", "gelu", 2, 64,
                                                                                        True)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=3)


def test_llama_style_model_trains_from_scratch():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, bias=False,
                    norm="rmsnorm", mlp="swiglu", intermediate_size=48, pos="rope", tie_weights=False)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-2)
    x = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- tokenizers

TEXT = st.text(st.characters(codec="utf-8"), max_size=60) | st.sampled_from(
    ["", " ", "  hello  world ", "naïve café", "本!", "🤖 emoji 👩‍👩‍👧", "tab\tnew\nline", "ünï\u0301code", "\x00\x7f"])


@pytest.fixture(scope="module")
def toks():
    return {"byte-level": (HFTokenizer(hf_tiny.gpt2_tokenizer().to_str()), hf_tiny.gpt2_tokenizer()),
            "sentencepiece": (HFTokenizer(hf_tiny.sentencepiece_tokenizer().to_str()),
                              hf_tiny.sentencepiece_tokenizer())}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
@pytest.mark.parametrize("kind", ["byte-level", "sentencepiece"])
def test_tokenizer_ids_equal_library_and_bytes_rebuild_text(toks, kind, text):
    ours, ref = toks[kind]
    assert ours.encode(text) == ref.encode(text, add_special_tokens=False).ids
    spans = ours.spans(text)
    assert b"".join(s.bytes for s in spans) == text.encode("utf-8")
    assert all(b"\xef\xbf\xbd" not in s.bytes for s in spans) or "\ufffd" in text


def test_token_bytes_are_true_bytes(toks):
    gpt2, _ = toks["byte-level"]
    assert [gpt2.token_bytes(i) for i in gpt2.encode("Hello world")] == [b"Hello", b" world"]
    assert gpt2.encode("Hello world") == [15496, 995]  # tiktoken's gpt2 ids
    sp, _ = toks["sentencepiece"]
    ids = sp.encode("the 本")
    assert [sp.token_bytes(i) for i in ids] == [b" the", b" ", b"\xe6", b"\x9c", b"\xac"]
    assert sp.token_str(ids[2]) == "<E6>" and sp.merge_info(ids[2]).startswith("byte 0xE6")
    assert sp.decode_text(ids) == "the 本"


def test_special_tokens_are_text_unless_allowed(toks):
    gpt2, _ = toks["byte-level"]
    assert 50256 not in gpt2.encode("a<|endoftext|>b")
    assert gpt2.encode("a<|endoftext|>b", allowed_special="all") == [64, 50256, 65]
    assert gpt2.is_special(50256)


def test_hf_tokenizer_survives_a_checkpoint_dict(toks):
    gpt2, _ = toks["byte-level"]
    again = tokenizer_from_dict(json.loads(json.dumps(gpt2.to_dict())))
    assert again == gpt2 and again.encode("round trip") == gpt2.encode("round trip")


def test_chat_template_sandboxed(folders):
    _, _, info = load_model(folders["llama"][0])
    text = render_chat(info["chat_template"], [{"role": "user", "content": "Hi"}],
                       bos_token=info["bos_token"], eos_token=info["eos_token"])
    assert text == "<s><|user|>Hi</s><|assistant|>"
    with pytest.raises(ChatTemplateError, match="refused: no"):
        render_chat("{{ raise_exception('no') }}", [])
    with pytest.raises(ChatTemplateError):  # the sandbox: no reaching into Python internals
        render_chat("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])
    with pytest.raises(ChatTemplateError):  # immutable: a template cannot change what it is given
        render_chat("{{ messages.append(1) }}", [])


# -- the cache


def _hub_repo(root, name, folder, *, ref=True, incomplete=False, drop_snapshot=False):
    """Lay out models--org--name like huggingface_hub does: blobs, snapshots/HASH/* -> ../../blobs/..., refs/main."""
    repo = os.path.join(root, "models--" + name.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(os.path.join(repo, "refs"))
    os.makedirs(snap)
    for i, f in enumerate(sorted(os.listdir(folder))):
        blob = f"blob{i:04d}"
        shutil.copy(os.path.join(folder, f), os.path.join(repo, "blobs", blob))
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snap, f))
    if ref:
        with open(os.path.join(repo, "refs", "main"), "w") as f:
            f.write(commit)
    if incomplete:
        open(os.path.join(repo, "blobs", "deadbeef.incomplete"), "wb").close()
    if drop_snapshot:
        shutil.rmtree(snap)
    return repo


def test_hub_cache_listed_with_partial_downloads(folders, tmp_path, monkeypatch):
    root = str(tmp_path / "hub")
    _hub_repo(root, "openai-community/gpt2", folders["gpt2"][0])
    _hub_repo(root, "org/llama-tiny", folders["llama"][0])
    _hub_repo(root, "org/half", folders["qwen2"][0], incomplete=True)
    _hub_repo(root, "org/gone", folders["qwen2"][0], drop_snapshot=True)
    monkeypatch.setenv("HF_HUB_CACHE", root)
    found = {m.name: m for m in hub_models()}
    assert set(found) == {"openai-community/gpt2", "org/llama-tiny", "org/half", "org/gone"}
    gpt2 = found["openai-community/gpt2"]
    assert gpt2.openable and gpt2.architecture == "GPT2LMHeadModel" and gpt2.size_bytes > 0
    assert gpt2.n_params == sum(p.numel() for p in folders["gpt2"][1].parameters())
    assert found["org/llama-tiny"].openable
    assert not found["org/half"].openable and "incomplete" in found["org/half"].reason
    assert not found["org/gone"].openable and "missing" in found["org/gone"].reason
    model, tok, info = load_model(resolve_model("openai-community/gpt2"))
    assert info["name"] == "openai-community/gpt2" and tok.encode("Hello world") == [15496, 995]
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert {m.name for m in hub_models()} == set(found)
    with pytest.raises(HFModelError, match="missing"):
        load_model(found["org/gone"].path)


# -- bad folders: one clear line each


def _copy(folder, tmp_path, name="m"):
    dst = str(tmp_path / name)
    shutil.copytree(folder, dst)
    return dst


def _message(path):
    with pytest.raises(HFModelError) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_unknown_architecture(folders, tmp_path):
    d = _copy(folders["gpt2"][0], tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["architectures"] = ["MambaForCausalLM"]
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    assert "MambaForCausalLM is not supported" in _message(d)


def test_no_weights_and_missing_shard(folders, tmp_path):
    d = _copy(folders["gpt2"][0], tmp_path)
    os.remove(os.path.join(d, "model.safetensors"))
    assert "has no weights" in _message(d)
    d2 = _copy(folders["llama"][0], tmp_path, "sharded")
    shutil.rmtree(d2)
    folders["llama"][1].save_pretrained(d2, max_shard_size="100KB")
    shutil.copy(os.path.join(folders["llama"][0], "tokenizer.json"), d2)
    model, _, _ = load_model(d2)  # sharded: loads
    index = json.load(open(os.path.join(d2, "model.safetensors.index.json")))
    shard = sorted(set(index["weight_map"].values()))[-1]
    os.remove(os.path.join(d2, shard))
    assert f"shard is missing: {shard}" in _message(d2)


def test_corrupt_tokenizer(folders, tmp_path):
    d = _copy(folders["gpt2"][0], tmp_path)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "BPE", "vocab": 12}')
    assert "tokenizer.json is corrupt" in _message(d)


class _Boom:
    def __reduce__(self):
        return (os.mkdir, (os.path.join(os.environ["BOOM_DIR"], "pwned"),))


def test_malicious_pytorch_model_bin_refused_without_running(folders, tmp_path, monkeypatch):
    d = _copy(folders["gpt2"][0], tmp_path)
    os.remove(os.path.join(d, "model.safetensors"))
    monkeypatch.setenv("BOOM_DIR", str(tmp_path))
    torch.save({"transformer.wte.weight": torch.zeros(2), "x": _Boom()}, os.path.join(d, "pytorch_model.bin"))
    assert "refused" in _message(d)
    assert not os.path.exists(tmp_path / "pwned")


def test_pytorch_model_bin_loads(folders, tmp_path):
    d = str(tmp_path / "bin")
    _, ref = hf_tiny.make_gpt2(d, safe=False)
    assert os.path.isfile(os.path.join(d, "pytorch_model.bin")) or os.path.isfile(
        os.path.join(d, "model.safetensors"))
    model, tok, info = load_model(d)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.allclose(model(ids)[0], ref(ids).logits, atol=1e-4)


def test_too_big_for_memory_refused_before_allocating(folders, tmp_path):
    d = _copy(folders["llama"][0], tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg.update(hidden_size=65536, intermediate_size=262144, num_hidden_layers=512, head_dim=16384)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    msg = _message(d)
    assert "of memory in bfloat16" in msg and "available" in msg

