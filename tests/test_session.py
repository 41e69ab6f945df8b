"""GenerationSession: step, force, exact undo, empty prompts and the sliding context window."""

import pytest
import torch

import engine.session as session_module
from engine.decoding import DecodeSettings, probabilities
from engine.model import GPT, GPTConfig
from engine.session import GenerationSession

TEXT = "the quick brown fox jumps over the lazy dog\n"
POSITIONS = ("learned", "rope", "alibi")


@pytest.fixture(scope="module")
def chars():
    from engine.tokenizers import CharTokenizer
    return CharTokenizer.from_text(TEXT)


def make_model(vocab_size, pos="learned", block_size=32, seed=0):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16, pos=pos)
    model = GPT(cfg)
    with torch.no_grad():  # sharper than a fresh init, so different contexts give clearly different logits
        model.lm_head.weight.mul_(30)
    return model.eval()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def full_logits(model, ids, n_vocab):
    return model.next_logits(ids)[:n_vocab]


def test_prompt_and_step(chars):
    model = make_model(chars.n_vocab)
    s = GenerationSession(model, chars)
    s.set_prompt("the fox")
    assert s.ids == chars.encode("the fox") and s.prompt_len == 7 and s.forward_count == 1
    torch.testing.assert_close(s.logits, full_logits(model, s.ids, chars.n_vocab))
    before = s.logits
    settings = DecodeSettings(temperature=0.9, top_k=5)
    rec = s.step(settings, gen(1))
    probs = probabilities(before, settings, chars.encode("the fox"))
    assert rec.index == 7 and s.ids[-1] == rec.token_id and s.generated_ids == [rec.token_id]
    assert rec.prob == pytest.approx(float(probs[rec.token_id])) and rec.prob > 0
    assert 0 <= rec.u < 1 and not rec.forced and rec.settings is settings
    assert torch.equal(rec.logits_before, before)
    assert len(rec.alternatives) == 5 and rec.alternatives[0][1] >= rec.alternatives[-1][1]
    assert s.forward_count == 2
    torch.testing.assert_close(s.logits, full_logits(model, s.ids, chars.n_vocab), rtol=1e-5, atol=1e-5)
    assert s.history == [rec] and s.text == "the fox" + chars.decode([rec.token_id])


def test_steps_are_reproducible(chars):
    runs = []
    for _ in range(2):
        s = GenerationSession(make_model(chars.n_vocab), chars)
        s.set_prompt("over")
        g = gen(42)
        runs.append([(r.token_id, r.u) for r in (s.step(DecodeSettings(), g) for _ in range(8))])
    assert runs[0] == runs[1]


def test_decoding_controls_do_not_run_the_model(chars):
    s = GenerationSession(make_model(chars.n_vocab), chars)
    s.set_prompt("lazy")
    for t in (0.1, 0.5, 2.0):
        probabilities(s.logits, DecodeSettings(temperature=t, top_p=0.5), s.ids)
    assert s.forward_count == 1


@pytest.mark.parametrize("use_cache", [True, False])
def test_undo_restores_exactly(chars, use_cache):
    model = make_model(chars.n_vocab, pos="rope")
    s = GenerationSession(model, chars, use_cache=use_cache)
    s.set_prompt("jumps")
    g = gen(3)
    for _ in range(3):
        s.step(DecodeSettings(), g)
    ids, logits = list(s.ids), s.logits.clone()
    cache_len = s._cache.length if use_cache else None
    g_state = g.get_state()
    first = s.step(DecodeSettings(top_p=0.9), g)
    after_first = s.logits.clone()
    s.force(3)

    assert s.undo().forced
    assert s.undo() is first
    assert s.ids == ids and torch.equal(s.logits, logits)
    if use_cache:
        assert s._cache.length == cache_len
    g.set_state(g_state)
    again = s.step(DecodeSettings(top_p=0.9), g)
    assert (again.token_id, again.u) == (first.token_id, first.u)
    assert torch.equal(s.logits, after_first)  # the truncated cache gives the very same result


def test_undo_at_prompt_and_reset(chars):
    s = GenerationSession(make_model(chars.n_vocab), chars)
    s.set_prompt("dog")
    assert s.undo() is None
    prompt_logits = s.logits
    for _ in range(4):
        s.step(DecodeSettings(), gen())
    n = s.forward_count
    s.reset()
    assert s.ids == chars.encode("dog") and torch.equal(s.logits, prompt_logits) and not s.history
    assert s.forward_count == n


def test_force(chars):
    s = GenerationSession(make_model(chars.n_vocab), chars)
    s.set_prompt("brown")
    before = s.logits
    z = chars.encode("z")[0]
    rec = s.force(z)
    assert rec.forced and rec.u is None and s.ids[-1] == z
    assert rec.prob == pytest.approx(float(torch.softmax(before.double(), -1)[z]))
    rec = s.force(chars.encode("q")[0], DecodeSettings(temperature=0))
    assert rec.prob in (0.0, 1.0)
    for bad in (-1, chars.n_vocab, 2.0, True):
        with pytest.raises(ValueError, match="not in the vocabulary"):
            s.force(bad)


def test_step_before_prompt_is_an_error(chars):
    s = GenerationSession(make_model(chars.n_vocab), chars)
    with pytest.raises(ValueError, match="set a prompt first"):
        s.step(DecodeSettings(), gen())


@pytest.mark.parametrize("pos", POSITIONS)
def test_cache_and_no_cache_agree(chars, pos):
    model = make_model(chars.n_vocab, pos=pos)
    cached, plain = GenerationSession(model, chars), GenerationSession(model, chars, use_cache=False)
    for s in (cached, plain):
        s.set_prompt("the lazy")
    for t in chars.encode(" dog jumps"):
        cached.force(t)
        plain.force(t)
        torch.testing.assert_close(cached.logits, plain.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pos", POSITIONS)
def test_window_slides(chars, pos):
    model = make_model(chars.n_vocab, pos=pos, block_size=8)
    s = GenerationSession(model, chars)
    s.set_prompt("quick")  # 5 tokens
    assert s.context_note == ""
    logits_seen = [s.logits]
    for step in range(9):
        s.step(DecodeSettings(), gen(step))
        logits_seen.append(s.logits)
        # the model sees exactly the last 8 ids, whatever the position scheme
        torch.testing.assert_close(s.logits, full_logits(model, s.ids[-8:], chars.n_vocab), rtol=1e-5, atol=1e-5)
        assert (s.context_note != "") == (len(s.ids) >= 8)
    assert "window slides" in s.context_note and "last 8" in s.context_note
    assert s.history[-1].window_start == len(s.ids) - 1 - 8
    # undo back across the point where the window started sliding, then go forward again
    for back in range(6):
        s.undo()
        assert torch.equal(s.logits, logits_seen[-2 - back])
    assert len(s.ids) == 8
    for _ in range(4):
        s.step(DecodeSettings(), gen(9))
        torch.testing.assert_close(s.logits, full_logits(model, s.ids[-8:], chars.n_vocab), rtol=1e-5, atol=1e-5)


def test_long_prompt_starts_slid(chars):
    model = make_model(chars.n_vocab, pos="learned", block_size=8)
    s = GenerationSession(model, chars)
    s.set_prompt(TEXT)  # 44 tokens > 8: learned positions would refuse without the window
    assert s.prompt_len == len(TEXT) and "last 8" in s.context_note
    torch.testing.assert_close(s.logits, full_logits(model, s.ids[-8:], chars.n_vocab))
    s.step(DecodeSettings(), gen())
    assert len(s.ids) == len(TEXT) + 1


def test_empty_prompt_uses_endoftext_or_id_0(chars):
    s = GenerationSession(make_model(chars.n_vocab), chars)
    s.set_prompt("")
    assert s.ids == [0] and s.prompt_len == 1
    s.step(DecodeSettings(), gen())

    from engine.tokenizers import get_tokenizer
    gpt2 = get_tokenizer("gpt2")
    s = GenerationSession(make_model(50304), gpt2)
    s.set_prompt("")
    assert s.ids == [50256] and s.text == "<|endoftext|>"


def test_padded_model_vocab_is_never_sampled(chars):
    model = make_model(chars.n_vocab + 40)
    with torch.no_grad():  # make the padded ids by far the likeliest
        model.lm_head.weight[chars.n_vocab:] = 0
        model.transformer.ln_f.bias.zero_()
        model.lm_head.weight[chars.n_vocab:, 0] = 100
        model.transformer.ln_f.bias[0] = 5
    s = GenerationSession(model, chars)
    s.set_prompt("fox")
    assert s.logits.shape == (chars.n_vocab,)
    for i in range(10):
        assert s.step(DecodeSettings(temperature=3.0), gen(i)).token_id < chars.n_vocab


def test_tokenizer_bigger_than_model_is_refused(chars):
    with pytest.raises(ValueError, match="do not belong together"):
        GenerationSession(make_model(chars.n_vocab - 1), chars)


def test_old_logits_are_dropped_past_the_memory_budget(chars, monkeypatch):
    monkeypatch.setattr(session_module, "LOGITS_BUDGET", 4 * chars.n_vocab * 3)  # keep 3 records' logits
    model = make_model(chars.n_vocab)
    s = GenerationSession(model, chars)
    s.set_prompt("the")
    for i in range(6):
        s.step(DecodeSettings(), gen(i))
    assert [r.logits_before is None for r in s.history] == [True] * 3 + [False] * 3
    for _ in range(6):
        s.undo()
        torch.testing.assert_close(s.logits, full_logits(model, s.ids, chars.n_vocab), rtol=1e-5, atol=1e-5)
    assert s.ids == chars.encode("the")
