"""CPU dropout with four mask lanes per generator call: its rate, its scaling, its gradient, its reproducibility, and
attention's explicit weights (engine.model.attention_weights), undropped equal to SDPA, dropped with this mask."""

import pytest
import torch
from torch.nn import functional as F

from engine.dropout import ONE, Dropout, dropout, keep_mask
from engine.model import attention_weights


def test_the_mask_drops_p_and_the_kept_values_keep_the_mean():
    torch.manual_seed(0)
    x = torch.randn(400_000).abs() + 1
    for p in (0.1, 0.2, 0.5):
        y = dropout(x, p, training=True)
        dropped = (y == 0).float().mean().item()
        assert abs(dropped - p) < 0.003, (p, dropped)
        kept = y != 0
        torch.testing.assert_close(y[kept], x[kept] * ONE / (ONE - round(p * ONE)))
    lanes = torch.stack([keep_mask((4, 100_000), 0.5)[:, i::4].float().mean() for i in range(4)])
    assert (lanes - 0.5).abs().max() < 0.005  # every int16 lane of a draw, the top one too, is random


def test_the_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    g = torch.randn_like(y)
    y.backward(g)
    scale = ONE / (ONE - round(0.3 * ONE))
    torch.testing.assert_close(x.grad, torch.where(y != 0, g * scale, 0.0))


def test_the_same_generator_state_draws_the_same_mask_and_eval_is_identity():
    x = torch.ones(1000)
    torch.manual_seed(7)
    a = dropout(x, 0.2, training=True)
    torch.manual_seed(7)
    assert torch.equal(a, dropout(x, 0.2, training=True))
    assert not torch.equal(a, dropout(x, 0.2, training=True))
    module = Dropout(0.2).eval()
    assert module(x) is x and dropout(x, 0.0, training=True) is x and "p=0.2" in repr(module)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros(1000))  # torch's own beyond (0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_with_dropout_is_sdpa_and_drops_the_weights(dtype):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 9, 8, generator=g).to(dtype)
    k, v = torch.randn(2, 2, 9, 8, generator=g).to(dtype), torch.randn(2, 2, 9, 8, generator=g).to(dtype)
    vv = v.repeat_interleave(2, dim=1)

    def attention(mask, causal, p):  # as the model's attention computes it when it drops the weights itself
        return dropout(attention_weights(q, k, mask, causal).to(dtype), p, training=True) @ vv

    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else {}
    bias = torch.randn(1, 4, 9, 9, generator=g).to(dtype)
    allowed = torch.rand(9, 9, generator=g) > 0.3
    allowed[:, 0] = True
    for mask, causal in ((None, True), (bias, False), (allowed, False)):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
        torch.testing.assert_close(attention(mask, causal, 0.0), expected, **tol)
    torch.manual_seed(3)
    got = attention(None, True, 0.25)
    torch.manual_seed(3)
    keep = keep_mask((2, 4, 9, 9), 0.25)
    kk = k.repeat_interleave(2, dim=1)
    att = ((q.float() @ kk.float().transpose(-2, -1)) / 8 ** 0.5).masked_fill(
        torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    expected = (att * keep * (ONE / (ONE - round(0.25 * ONE)))) @ vv.float()
    torch.testing.assert_close(got.float(), expected, **tol)


def test_the_model_drops_with_it_on_the_cpu(monkeypatch):
    from engine.model import GPT, GPTConfig

    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(kw) or sdpa(*a, **kw))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.2))
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert sum(isinstance(m, Dropout) for m in model.modules()) == 1 + 2 * 2  # embeddings, and 2 in each block
    x = torch.randint(0, 37, (2, 12))
    torch.manual_seed(1)
    a, _ = model.train()(x)
    torch.manual_seed(1)
    b, _ = model(x)
    assert torch.equal(a, b) and not torch.equal(a, model(x)[0])
    assert calls == []  # attention dropped its weights itself, not through SDPA's slower mask
    model.eval()(x)
    assert [kw["dropout_p"] for kw in calls] == [0.0, 0.0]
