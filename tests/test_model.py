"""The transformer: shapes, causality, KV-cache equivalence (with the decoding fast paths), positions past
block_size, config validation."""

import pytest
import torch

from engine.incremental import KVCache, lay_out_for_decoding, one_query_attention
from engine.model import GPT, GPTConfig, alibi_slopes, attends_in_float32

POSITIONS = ("learned", "rope", "alibi")


def tiny(pos="learned", **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16, pos=pos)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def ids(B, T, V=37, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pos", POSITIONS)
def test_shapes_and_loss(pos):
    model = tiny(pos)
    x = ids(3, 10)
    logits, loss = model(x)
    assert logits.shape == (3, 10, 37) and loss is None
    logits, loss = model(x, targets=ids(3, 10, seed=2))
    assert loss.dim() == 0 and torch.isfinite(loss)
    # a fresh model predicts near-uniformly: loss close to ln(V)
    assert abs(loss.item() - torch.log(torch.tensor(37.0)).item()) < 0.5
    last, _ = model(x, last_only=True)
    assert last.shape == (3, 1, 37)
    torch.testing.assert_close(last[:, 0], logits[:, -1])


def test_targets_minus_one_are_ignored():
    model = tiny()
    x, y = ids(1, 8), ids(1, 8, seed=3)
    _, full = model(x, targets=y)
    y2 = y.clone()
    y2[0, 4:] = -1
    _, part = model(x, targets=y2)
    logits, _ = model(x)
    expected = torch.nn.functional.cross_entropy(logits[0, :4], y[0, :4])
    torch.testing.assert_close(part, expected)
    assert not torch.allclose(part, full)


@pytest.mark.parametrize("pos", POSITIONS)
def test_causality(pos):
    """Changing a future token never changes the logits of earlier positions."""
    model = tiny(pos)
    x = ids(1, 12)
    base, _ = model(x)
    for t in (0, 5, 11):
        y = x.clone()
        y[0, t] = (y[0, t] + 1) % 37
        changed, _ = model(y)
        torch.testing.assert_close(changed[0, :t], base[0, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(changed[0, t], base[0, t])


@pytest.mark.parametrize("pos", POSITIONS)
def test_kv_cache_matches_full_forward(pos):
    model = tiny(pos)
    x = ids(2, 14)
    full, _ = model(x)

    cache = model.new_cache(batch_size=2)
    steps = [model(x[:, t:t + 1], cache=cache)[0] for t in range(14)]
    assert cache.length == 14
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)

    cache = model.new_cache(batch_size=2, max_len=4)  # chunks of several new tokens; the buffer has to grow
    chunks = [model(x[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 6), (6, 11), (11, 14))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_one_token_steps_with_grouped_heads_match_full_forward(pos, dtype):
    """One-token steps equal a full pass with grouped-query heads, weights laid out for decoding and a cache that
    grows: in float32 through keys kept as columns and one_query_attention, in bf16 through SDPA."""
    model = lay_out_for_decoding(tiny(pos, n_head=4, n_kv_head=2).to(dtype))
    x = ids(2, 14)
    full, _ = model(x)
    cache = model.new_cache(batch_size=2, max_len=3)
    steps = [model(x[:, :5], cache=cache)[0]] + [model(x[:, t:t + 1], cache=cache)[0] for t in range(5, 14)]
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=tol, atol=tol)
    keys = cache.k[0]
    assert keys is not None and keys.shape == (2, 2, cache.capacity, 4)
    assert (keys.stride(-2) == 1) == (dtype == torch.float32)  # float32 keys are columns, others rows


def test_one_query_attention_is_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 6, 1, 8, generator=g), torch.randn(2, 3, 11, 8, generator=g), torch.randn(2, 3, 11, 8,
                                                                                                     generator=g)
    mask = torch.randn(1, 6, 1, 11, generator=g)
    for m in (None, mask):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
        torch.testing.assert_close(one_query_attention(q, k, v, m), expected)
        keys_as_columns = k.transpose(-2, -1).contiguous().transpose(-2, -1)
        torch.testing.assert_close(one_query_attention(q, keys_as_columns, v, m), expected)


@pytest.mark.parametrize("pos", POSITIONS)
def test_bf16_training_attends_in_float32_on_the_cpu(pos, monkeypatch):
    """Under bf16 autocast a training pass's attention runs in float32 (torch's bf16 flash-attention backward is the
    slow one on the CPU at short contexts); without autograd, and from context 256 with 64-wide heads, it stays bf16.
    The gradients match an fp32 run's to bf16 precision."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, None if kw.get("attn_mask") is None else kw["attn_mask"].dtype))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model, x = tiny(pos).train(), ids(2, 12)
    _, loss32 = model(x, x)
    loss32.backward()
    grads32 = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(x, x)
    loss.backward()
    mask = torch.float32 if pos == "alibi" else None
    assert seen == [(torch.float32, mask)] * 2 and logits.dtype == torch.bfloat16
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads32[name], atol=3e-3, rtol=5e-2, msg=name)
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        model(x)
    assert [dtype for dtype, _ in seen] == [torch.bfloat16] * 2
    with torch.no_grad():  # weights large enough for attention to matter to the logits
        for param in model.parameters():
            param.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # chunks after a cache, with autograd: a boolean causal mask
        full = model(x)[0]
        cache = model.new_cache(batch_size=2)
        chunks = torch.cat([model(x[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 12))], dim=1)
    assert (chunks - full).abs().max() < 0.03 * full.abs().max()
    q = torch.zeros(1, 2, 256, 64, dtype=torch.bfloat16, requires_grad=True)
    assert not attends_in_float32(q) and attends_in_float32(q[:, :, :255]) and attends_in_float32(q[..., :32])
    assert not attends_in_float32(q.float())


def test_lay_out_for_decoding_changes_only_memory_layout():
    model = tiny(tie_weights=True)
    x = ids(1, 9)
    before, _ = model(x)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    assert lay_out_for_decoding(model) is model
    w = model.transformer.h[0].attn.c_attn.weight
    assert w.shape == (48, 16) and w.stride() == (1, 48)  # column-major: its transpose is contiguous
    assert model.lm_head.weight is model.transformer.wte.weight and model.lm_head.weight.stride() == (1, 37)
    torch.testing.assert_close(model(x)[0], before, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
    fresh = tiny(tie_weights=True)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(x)[0], before, rtol=1e-6, atol=1e-6)
    bf16 = lay_out_for_decoding(tiny().to(torch.bfloat16))  # bf16 single-row products are faster row-major
    assert all(p.is_contiguous() for p in bf16.parameters())


@pytest.mark.parametrize("pos", POSITIONS)
def test_cache_truncate_is_undo(pos):
    model = tiny(pos)
    x = ids(1, 10)
    cache = model.new_cache()
    model(x[:, :6], cache=cache)
    first, _ = model(x[:, 6:7], cache=cache)
    model(torch.tensor([[3, 4]]), cache=cache)  # something else, then undo it
    cache.truncate(6)
    again, _ = model(x[:, 6:7], cache=cache)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="truncate"):
        cache.truncate(99)


@pytest.mark.parametrize("pos", POSITIONS)
def test_return_attention_matches_sdpa(pos):
    model = tiny(pos)
    x = ids(1, 9)
    plain, _ = model(x)
    logits, _, attn = model(x, return_attention=True)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    assert len(attn) == 2
    for a in attn:
        assert a.shape == (1, 2, 9)
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 2))
    # with a cache: the new token attends to the cache and itself
    cache = model.new_cache()
    model(x[:, :8], cache=cache)
    step, _, attn = model(x[:, 8:], cache=cache, return_attention=True)
    torch.testing.assert_close(step[:, -1], plain[:, -1], rtol=1e-5, atol=1e-5)
    assert attn[0].shape == (1, 2, 9)


@pytest.mark.parametrize("pos", ("rope", "alibi"))
def test_rope_and_alibi_run_past_block_size(pos):
    model = tiny(pos)  # block_size 16
    x = ids(1, 40)
    full, _ = model(x)
    assert full.shape == (1, 40, 37) and torch.isfinite(full).all()
    cache = model.new_cache()
    model(x[:, :30], cache=cache)
    steps = [model(x[:, t:t + 1], cache=cache)[0] for t in range(30, 40)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 30:], rtol=1e-5, atol=1e-5)


def test_learned_positions_refuse_past_block_size():
    model = tiny("learned")
    with pytest.raises(ValueError, match="learned positions.*block_size"):
        model(ids(1, 17))
    cache = model.new_cache()
    model(ids(1, 16), cache=cache)
    with pytest.raises(ValueError, match="block_size"):
        model(ids(1, 1), cache=cache)


def test_bad_ids_get_a_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match="token id 37 is outside"):
        model(torch.tensor([[1, 37]]))
    with pytest.raises(ValueError, match="batch, time"):
        model(torch.tensor([1, 2]))


def test_next_logits_uses_last_block_size_ids():
    model = tiny("rope")
    seq = ids(1, 30)[0].tolist()
    out = model.next_logits(seq)
    assert out.shape == (37,) and out.dtype == torch.float32
    expected, _ = model(torch.tensor([seq[-16:]]))
    torch.testing.assert_close(out, expected[0, -1])
    with pytest.raises(ValueError, match="at least one"):
        model.next_logits([])


def test_weight_tying_and_param_count():
    tied = tiny(tie_weights=True)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    untied = tiny(tie_weights=False)
    assert untied.num_params() == tied.num_params() + 37 * 16
    assert tiny("rope").num_params() == tied.num_params() - 16 * 16  # no position table
    assert tied.num_params(non_embedding=True) == tied.num_params() - 37 * 16 - 16 * 16


def test_init_is_gpt2_like():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, n_layer=8, n_embd=128, n_head=4))
    assert abs(model.transformer.wte.weight.std().item() - 0.02) < 0.002
    proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(proj - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * n_layer)
    assert torch.count_nonzero(model.transformer.h[0].mlp.c_fc.bias) == 0


def test_optimizer_groups():
    model = tiny()
    decay, no_decay = model.optimizer_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params()
    torch.optim.AdamW([decay, no_decay], lr=1e-3)  # accepted as-is


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    x = ids(1, 8)
    a, _ = model(x)
    b, _ = model(x)
    assert torch.equal(a, b)
    model.train()
    c, _ = model(x)
    assert not torch.allclose(a, c)


def test_alibi_slopes():
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]))
    six = alibi_slopes(6)
    assert six.shape == (6,) and (six > 0).all() and len(set(six.tolist())) == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=30, n_head=4), "divisible by n_head"),
    (dict(n_embd=12, n_head=4, pos="rope"), "even head size"),
    (dict(n_layer=0), "n_layer must be > 0"),
    (dict(vocab_size=-5), "vocab_size must be > 0"),
    (dict(block_size=2.5), "block_size must be an integer"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), "dropout"),
    (dict(pos="sinusoidal"), "pos must be one of learned, rope, alibi"),
    (dict(bias="yes"), "bias must be true or false"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_config_dict_round_trip():
    cfg = GPTConfig(vocab_size=99, pos="alibi", tie_weights=False, dropout=0.1)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config key.*n_embed"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_embed": 3})


def test_kvcache_rejects_other_batch_size():
    cache = KVCache(n_layer=2, batch_size=1)
    model = tiny()
    with pytest.raises(ValueError, match="batch size 1"):
        model(ids(2, 3), cache=cache)
