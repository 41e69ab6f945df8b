"""engine.interpret: per-position losses, attention maps, the logit lens, the head and the embedding helpers, on every
kind of model the engine builds (our GPT with each position scheme, a Llama-shaped one, imported GPT-2 / Llama /
Qwen2, and the bundled checkpoints)."""

import math

import pytest
import torch
from torch.nn import functional as F

import hf_tiny
from engine import interpret
from engine.checkpoint import load_model
from engine.model import GPT, GPTConfig
from engine.positions import alibi_slopes, rope_tables

from pathlib import Path

BUNDLED = sorted((Path(__file__).resolve().parent.parent / "assets" / "models").glob("*.pt"))

OURS = {
    "learned": dict(pos="learned"),
    "rope": dict(pos="rope"),
    "alibi": dict(pos="alibi"),
    "llama-shaped": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, tie_weights=False, rope_theta=5e5),
}
HF = {"gpt2": hf_tiny.make_gpt2, "llama": hf_tiny.make_llama, "qwen2": hf_tiny.make_qwen2}


def ours(kind: str, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=97, block_size=32, n_layer=3, n_head=4, n_embd=32, bias=True, **OURS[kind])
    model = GPT(cfg)
    with torch.no_grad():  # random init is nearly uniform attention; larger weights make the maps tell heads apart
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(6)
    return model.eval()


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, make in HF.items():
        folder, ref = make(str(root / name))
        model, tok, _ = load_model(folder)
        out[name] = (model, ref)
    return out


def all_models(hf_models):
    models = {kind: ours(kind) for kind in OURS}
    models.update({name: m for name, (m, _) in hf_models.items()})
    for path in BUNDLED:
        models[path.stem] = load_model(path)[0]
    return models


@pytest.fixture(scope="module")
def models(hf_models):
    return all_models(hf_models)


MODEL_NAMES = list(OURS) + list(HF) + [p.stem for p in BUNDLED]


def some_ids(model, n=24, seed=3):
    vocab = min(model.config.vocab_size, 5000)
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_both_bundled_models_are_checked():
    assert {p.stem for p in BUNDLED} >= {"shakespeare-char", "shakespeare-words"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_mean_token_loss_is_the_training_loss(models, name):
    model = models[name]
    ids = some_ids(model)
    losses = interpret.token_losses(model, ids)
    idx = torch.tensor([ids])
    with torch.no_grad():
        _, loss = model(idx[:, :-1], targets=idx[:, 1:])
    assert losses.shape == (len(ids) - 1,)
    assert math.isclose(float(losses.mean()), float(loss), rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_attention_rows_sum_to_one_causal_and_equal_the_models(models, name):
    model = models[name]
    ids = some_ids(model)
    T = len(ids)
    t = interpret.trace(model, ids)
    with torch.no_grad():
        plain, _ = model(torch.tensor([ids]))
        _, _, last_rows = model(torch.tensor([ids]), return_attention=True)
    # watching changes nothing: bit-identical logits
    assert torch.equal(t.logits, plain[0].float())
    maps = interpret.attention_maps(model, ids)
    assert len(maps) == model.config.n_layer
    for layer, att in enumerate(maps):
        assert att.shape == (model.config.n_head, T, T)
        assert torch.allclose(att.sum(-1), torch.ones(model.config.n_head, T), atol=1e-5)
        assert torch.all(att.triu(1) == 0)
        # the last query's row is what the model's own explicit attention path gives
        assert torch.allclose(att[:, -1, :], last_rows[layer][0].float(), atol=1e-5)
        # and weighting the values with these maps reproduces the attention module's output
        block = model.transformer.h[layer]
        x, rope, bias = t.attention_inputs[layer]
        with torch.no_grad():
            out, _ = block.attn(x, rope=rope, bias=bias)
            hs, nh, nkv = block.attn.head_size, block.attn.n_head, block.attn.n_kv_head
            v = block.attn.c_attn(x)[..., (nh + nkv) * hs:].view(1, T, nkv, hs).transpose(1, 2)
            v = v.repeat_interleave(nh // nkv, dim=1)
            y = (att[None].to(v) @ v).transpose(1, 2).reshape(1, T, -1)
            assert torch.allclose(block.attn.c_proj(y), out, atol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
def test_attention_equals_transformers(hf_models, name):
    model, ref = hf_models[name]
    ids = some_ids(model, n=12)
    ref.set_attn_implementation("eager")
    with torch.no_grad():
        expected = ref(torch.tensor([ids]), output_attentions=True).attentions
    for got, want in zip(interpret.attention_maps(model, ids), expected):
        assert torch.allclose(got, want[0], atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_last_lens_layer_is_the_logits_and_the_head_reproduces_them(models, name, monkeypatch):
    monkeypatch.setattr(interpret, "LENS_ROWS", 7)  # several slices, one ending mid-layer
    model = models[name]
    ids = some_ids(model, n=10)
    lens = interpret.logit_lens(model, ids)
    t = interpret.trace(model, ids)
    assert lens.shape == (model.config.n_layer, len(ids), model.config.vocab_size)
    assert torch.allclose(lens[-1], t.logits, atol=1e-5)
    summary = interpret.lens_at(t, [0, 4, 9])
    probs = F.softmax(lens[:, [0, 4, 9]], dim=-1)
    assert torch.equal(summary.top_ids, probs.argmax(-1))
    assert torch.allclose(summary.top_probs, probs.max(-1).values, atol=1e-6)
    assert torch.allclose(summary.final_probs[-1], summary.top_probs[-1])  # the last layer's top is the choice
    head = interpret.head_view(t, 4)
    assert torch.allclose(head.logits, t.logits[4], atol=1e-5)
    assert torch.allclose(head.probs.sum(), torch.tensor(1.0), atol=1e-5)
    assert int(head.top_ids[0]) == int(t.logits[4].argmax())
    # a kept trace drops its logits: the lens and the head are the same without them, over many rows in slices
    light = t.without_logits()
    assert light.logits.numel() == 0 and t.logits.numel() > 0
    again = interpret.lens_at(light, range(len(ids)))
    everything = F.softmax(lens, dim=-1)
    assert torch.equal(again.top_ids, everything.argmax(-1))
    final = everything[-1].argmax(-1)
    assert torch.allclose(again.final_probs, everything[:, torch.arange(len(ids)), final], atol=1e-6)
    assert torch.allclose(interpret.head_view(light, 4).logits, t.logits[4], atol=1e-5)


def test_predictions_rank_probability_and_buckets():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0],
                           [0.0, 1.0, 2.0, 3.0],
                           [1.0, 1.0, 1.0, 1.0]])
    ids = [0, 3, 1]  # position 0 predicts 3 (its worst), position 1 predicts 1 (third)
    p = interpret.predictions(logits, ids, k=2)
    logp = F.log_softmax(logits, -1)
    assert torch.allclose(p.losses, torch.stack([-logp[0, 3], -logp[1, 1]]))
    assert p.ranks.tolist() == [4, 3]
    assert p.top_ids[0].tolist() == [0, 1] and p.top_ids[1].tolist() == [3, 2]
    assert torch.allclose(p.entropy[2], torch.tensor(math.log(4)))
    assert p.buckets().tolist() == [1, 1]  # ranks 4 and 3: both in "top 10"
    assert interpret.Predictions(p.losses, p.probs, torch.tensor([1, 10, 11, 100, 1000, 1001]), p.top_ids,
                                 p.top_probs, p.entropy).buckets().tolist() == [0, 1, 2, 2, 3, 4]
    assert math.isclose(p.perplexity, math.exp(p.mean_loss))
    assert math.isclose(p.bits_per_char(10), float(p.losses.sum()) / math.log(2) / 10)


def test_token_losses_needs_two_tokens():
    with pytest.raises(ValueError, match="two tokens"):
        interpret.token_losses(ours("rope"), [5])
    with pytest.raises(ValueError, match="at least one"):
        interpret.trace(ours("rope"), [])


def test_nearest_tokens_and_pca_on_a_known_table():
    model = ours("learned")
    table = torch.zeros(97, 32)
    table[:, 0] = torch.linspace(-10, 10, 97)  # the main axis: spread along dimension 0
    table[:, 1] = torch.linspace(-1, 1, 97) ** 2  # a smaller second axis
    table[5:8] = 0
    table[5, 2] = 1.0  # token 5 points along dimension 2 ...
    table[6, 2], table[6, 3] = 1.0, 0.1  # ... token 6 almost the same way, token 7 a bit less
    table[7, 2], table[7, 3] = 1.0, 0.5
    with torch.no_grad():
        model.transformer.wte.weight.copy_(table)
    near = interpret.nearest_tokens(model, 5, k=2)
    assert [i for i, _ in near] == [6, 7]
    assert math.isclose(near[0][1], 1 / math.sqrt(1.01), rel_tol=1e-5)
    coords, explained = interpret.embedding_pca(model)
    assert coords.shape == (97, 2)
    assert float(explained[0]) > 0.9 and float(explained[0]) >= float(explained[1])
    # the first axis is dimension 0, sign fixed so that its largest loading is positive: order kept
    assert torch.all(coords[1:, 0].diff() > 0) or torch.all(coords[8:, 0].diff() > 0)
    assert torch.allclose(coords.mean(0), torch.zeros(2), atol=1e-4)
    with pytest.raises(ValueError, match="outside"):
        interpret.nearest_tokens(model, 97)
    within = [i for i, _ in interpret.nearest_tokens(model, 5, k=3, n_valid=7)]
    assert within[0] == 6 and len(within) == 3 and max(within) < 7


def test_pca_matches_svd():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([5, 3, 1, .5, .2, .1])
    coords, explained = interpret.pca_2d(x)
    centred = x - x.mean(0)
    _, s, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    expect = (centred.double() @ vh[:2].T).float()
    assert torch.allclose(coords.abs(), expect.abs(), atol=1e-4)
    assert torch.allclose(explained, (s[:2] ** 2 / (s ** 2).sum()).float(), atol=1e-5)


def test_position_helpers_for_each_scheme():
    learned, rope, alibi = ours("learned"), ours("rope"), ours("alibi")
    sim = interpret.position_similarity(learned)
    assert sim.shape == (32, 32) and torch.allclose(sim.diagonal(), torch.ones(32), atol=1e-5)
    assert torch.allclose(sim, sim.T, atol=1e-6)

    angles = interpret.rope_angles(rope, 20)
    hs = rope.config.head_size
    cos, sin = rope_tables(torch.arange(20), hs, rope.config.rope_theta)
    assert angles.shape == (20, hs // 2)
    assert torch.allclose(angles.cos(), cos[:, :hs // 2], atol=1e-5)
    assert torch.all(angles[:, 0] >= angles[:, -1])  # the first pair turns fastest

    bias = interpret.alibi_biases(alibi, 6)
    slopes = alibi_slopes(4)
    assert bias.shape == (4, 6, 6)
    assert torch.isinf(bias[:, 0, 1]).all() and torch.allclose(bias[:, 5, 2], -3 * slopes)
    for fn, model in ((interpret.position_similarity, rope), (interpret.rope_angles, learned),
                      (interpret.alibi_biases, rope)):
        with pytest.raises(ValueError, match="exists only for"):
            fn(model) if fn is interpret.position_similarity else fn(model, 4)


def test_trace_restores_training_mode_and_layer_checked():
    model = ours("alibi").train()
    t = interpret.trace(model, [1, 2, 3])
    assert model.training
    with pytest.raises(ValueError, match="does not exist"):
        t.attention(3)
    assert interpret.context_window(list(range(10)), 32) == 0


def test_another_threads_forward_passes_do_not_leak_into_a_trace():
    import threading

    model = ours("rope")
    ids = some_ids(model, n=12)
    expected = interpret.trace(model, ids)
    other = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(9))
    stop = threading.Event()

    def busy():
        with torch.no_grad():
            while not stop.is_set():
                model(other)  # fires the same hooks while they are registered

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        for _ in range(20):
            t = interpret.trace(model, ids)
            assert all(torch.equal(a, b) for a, b in zip(t.residuals, expected.residuals))
            assert torch.equal(t.hidden, expected.hidden) and torch.equal(t.attention(1), expected.attention(1))
    finally:
        stop.set()
        thread.join()
