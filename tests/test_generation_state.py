"""GenerationState without Qt: the busy/pending state machine, outcomes, Run's limits, driven headless."""

import pytest
import torch

from app.generation.model_source import ModelSource
from app.generation.state import GenerationState, Prompt, RateMeter, RunLimits, parse_stop_sequences, run_inline
from engine.decoding import DecodeSettings

CORPUS = "hello world, the quick brown fox jumps over the lazy dog\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from engine.checkpoint import save_model
    from engine.model import GPT, GPTConfig
    from engine.tokenizers.chars import CharTokenizer

    tok = CharTokenizer.from_text(CORPUS)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=16, n_layer=1, n_head=2, n_embd=16))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, model, tok)
    return str(path)


class Deferred:
    """A submit that holds jobs until run_next(): what a worker thread looks like to the state."""

    def __init__(self):
        self.jobs = []

    def __call__(self, kind, fn, on_done):
        self.jobs.append((kind, fn, on_done))

    def run_next(self):
        kind, fn, on_done = self.jobs.pop(0)
        run_inline(kind, fn, on_done)
        return kind


def record(state):
    events = []
    for name in ("busy", "loaded", "changed", "outcome"):
        getattr(state.events, name).connect(lambda *args, name=name: events.append((name, args)))
    return events


def test_load_step_undo_reset_inline(checkpoint):
    state = GenerationState(run_inline)
    events = record(state)
    state.load(ModelSource("file", path=checkpoint), Prompt("hello"))
    assert state.ready and state.snapshot.ids == state.loaded.tokenizer.encode("hello")
    assert [e[0] for e in events] == ["busy", "loaded", "changed", "busy"]
    assert state.step(DecodeSettings(), seed=1) and state.step(DecodeSettings(), seed=1)
    first_two = list(state.snapshot.ids)
    assert state.undo() and state.step(DecodeSettings(), seed=1)
    assert state.snapshot.ids == first_two  # the draw depends on seed and position only
    forwards = state.snapshot.forward_count
    state.reset(Prompt("hello"))
    assert not state.snapshot.history and state.snapshot.forward_count == forwards  # undo all the way
    assert [args[0] for name, args in events if name == "changed"] == ["load", "step", "step", "undo", "step",
                                                                       "reset"]


def test_actions_while_busy_wait_their_turn(checkpoint):
    submit = Deferred()
    state = GenerationState(submit)
    source = ModelSource("file", path=checkpoint)
    state.load(source, Prompt("hello"))
    assert state.busy and state.busy_kind == "load" and not state.ready
    assert not state.step(DecodeSettings(), 1)  # nothing to step yet
    state.load(source, Prompt("the"))  # a second choice while loading: pending, and the first is told to stop
    assert state.pending_load is not None
    assert submit.run_next() == "load"  # the tiny load finished before it looked at the cancel flag
    assert submit.run_next() == "load"  # then the pending one started by itself
    assert state.snapshot.ids == state.loaded.tokenizer.encode("the")
    state.step(DecodeSettings(), 1)
    state.set_prompt(Prompt("fox"))  # typed during a step
    assert state.pending_prompt == Prompt("fox")
    assert submit.run_next() == "step" and submit.run_next() == "prompt"
    assert state.prompt == Prompt("fox") and not state.snapshot.history and not submit.jobs


def test_a_prompt_the_model_cannot_read_is_the_users_mistake(checkpoint):
    state = GenerationState(run_inline)
    outcomes = []
    state.events.outcome.connect(lambda text, failure: outcomes.append((text, failure)))
    state.load(ModelSource("file", path=checkpoint), Prompt("hello"))
    state.set_prompt(Prompt("héllo"))
    assert state.snapshot is None and ("é" in state.prompt_error or "\\xe9" in state.prompt_error)
    assert not state.ready and not outcomes


def test_a_failed_load_keeps_the_model_and_says_so(checkpoint, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    state = GenerationState(run_inline)
    state.load(ModelSource("file", path=checkpoint), Prompt("hello"))
    loaded = state.loaded
    outcomes = []
    state.events.outcome.connect(lambda text, failure: outcomes.append((text, failure)))
    state.load(ModelSource("file", path=str(bad)), Prompt("hello"))
    assert state.loaded is loaded and state.ready
    (text, failure), = outcomes
    assert "Could not load" in text and "previous model stays" in text and failure.expected
    state.step(DecodeSettings(), 1)
    assert state.outcome == "" and outcomes[-1] == ("", None)  # moving on clears it


def test_cancelling_a_load(tmp_path):
    import hf_tiny

    folder = hf_tiny.make_gpt2(str(tmp_path / "gpt2"))[0]
    submit = Deferred()
    state = GenerationState(submit)
    outcomes = []
    state.events.outcome.connect(lambda text, failure: outcomes.append(text))
    state.load(ModelSource("hf", path=folder), Prompt("hi"))
    assert state.cancel_load()
    submit.run_next()
    assert state.loaded is None and not state.busy
    assert outcomes and "cancelled" in outcomes[-1]


def test_a_load_can_be_cancelled_while_its_weights_are_laid_out(checkpoint):
    """Laying float32 weights out for decoding is part of the load: it says so and stops when asked."""
    from app.generation.model_source import load_source
    from engine.hf import LoadCancelled

    said: list[str] = []
    with pytest.raises(LoadCancelled, match="cancelled"):
        load_source(ModelSource("file", path=checkpoint), said.append,
                    cancel=lambda: any(text.startswith("Arranging the weights") for text in said))
    loaded = load_source(ModelSource("file", path=checkpoint), cancel=lambda: False)
    linears = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.t().is_contiguous() for m in linears)


def test_run_limits_and_stop_sequences():
    assert parse_stop_sequences(r"\n\n | END") == ("\n\n", "END")
    assert parse_stop_sequences(r"a\|b|c") == ("a|b", "c")
    assert parse_stop_sequences("  ") == ()
    limits = RunLimits(max_new=5, stop=("END",))
    assert limits.stop_reason(4, "abc") == ""
    assert "maximum" in limits.stop_reason(5, "abc")
    assert "END" in limits.stop_reason(2, "xxENDyy")
    assert RunLimits().stop_reason(10_000, "anything") == ""


def test_the_state_needs_no_qt():
    import subprocess
    import sys

    code = "import sys, app.generation.state; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rate_meter():
    meter = RateMeter(window=5)
    assert meter.rate() is None
    for i in range(8):
        meter.tick(i * 0.1)
    assert meter.rate() == pytest.approx(10.0)


def test_every_bundled_checkpoint_is_offered_with_a_readable_title(tmp_path):
    from app.generation.model_source import bundled_sources

    for name in ("shakespeare-char.pt", "shakespeare_words.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    titles = [s.title() for s in bundled_sources(tmp_path)]
    assert titles == ["Bundled: Shakespeare char", "Bundled: Shakespeare words"]
    assert bundled_sources(tmp_path / "missing") == []
