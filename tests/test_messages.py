"""The training message stream: pickle and JSON round trips, and following a JSON-lines file as it grows."""

import math
import pickle

import pytest

from engine.messages import (MESSAGE_TYPES, CheckpointSaved, Eval, Failed, Finished, JsonlWriter, NonFinite, Outcome,
                             Sample, Started, Step, append_jsonl, from_dict, from_json, read_jsonl)

EXAMPLES = [
    Started("r1", config={"lr": 0.001, "corpus": "shakespeare"}, n_params=812345, world_size=2, step=40),
    Step("r1", step=41, loss=2.25, lr=1e-3, grad_norm=0.5, tokens_per_s=31000.5, tokens_seen=31488, amp_scale=1.0,
         skipped_steps=0, time=1.7e9),
    Eval("r1", step=50, train_loss=2.1, val_loss=2.2, tokens_seen=38400),
    Sample("r1", step=50, text="ROMEO:\nO, ünïcödé — 🎭\x00\n"),
    CheckpointSaved("r1", step=50, path="/runs/a/ckpt.pt"),
    NonFinite("r1", step=51, what="gradient norm is inf: step skipped"),
    Finished("r1", step=60, outcome=Outcome.STOPPED),
    Failed("r1", step=12, error="RuntimeError: boom", traceback="Traceback (most recent call last):\n  ...\n"),
]


def test_every_message_type_has_an_example():
    assert {type(m) for m in EXAMPLES} == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trips(msg):
    assert pickle.loads(pickle.dumps(msg)) == msg
    line = msg.to_json()
    assert "\n" not in line
    assert from_json(line) == msg
    assert type(from_json(line)) is type(msg)


def test_non_finite_numbers_survive_json():
    msg = Step("r", step=3, loss=math.nan, grad_norm=math.inf)
    back = from_json(msg.to_json())
    assert math.isnan(back.loss) and back.grad_norm == math.inf


def test_messages_are_immutable():
    with pytest.raises(AttributeError):
        EXAMPLES[1].loss = 0.0


def test_unknown_or_broken_messages_are_rejected():
    with pytest.raises(ValueError, match="unknown message type"):
        from_dict({"type": "weather", "run_id": "r"})
    with pytest.raises(ValueError, match="without run_id"):
        from_dict({"type": "step", "step": 1})
    with pytest.raises(ValueError, match="not a JSON"):
        from_json("{nope")
    # a newer writer's extra field is ignored
    assert from_dict({"type": "finished", "run_id": "r", "step": 2, "reason": "completed", "new": 1}) == \
        Finished("r", step=2, outcome=Outcome.COMPLETED)


def test_follow_a_growing_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_jsonl(path, 0) == ([], 0)  # not there yet
    append_jsonl(path, EXAMPLES[0])
    msgs, offset = read_jsonl(path, 0)
    assert msgs == [EXAMPLES[0]] and offset == path.stat().st_size

    with open(path, "a", encoding="utf-8") as f:  # a line being written: left for later
        f.write(EXAMPLES[1].to_json()[:20])
    assert read_jsonl(path, offset) == ([], offset)
    with open(path, "a", encoding="utf-8") as f:
        f.write(EXAMPLES[1].to_json()[20:] + "\n")
    msgs, offset = read_jsonl(path, offset)
    assert msgs == [EXAMPLES[1]]

    with JsonlWriter(path) as w:
        for m in EXAMPLES[2:]:
            w.write(m)
    msgs, offset = read_jsonl(path, offset)
    assert msgs == EXAMPLES[2:]
    assert read_jsonl(path, 0)[0] == EXAMPLES


def test_writer_ends_a_cut_line_and_readers_skip_it(tmp_path):
    """A writer killed mid-line leaves half a line; the next writer starts a new one and readers skip the half."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(EXAMPLES[0].to_json() + "\n" + EXAMPLES[1].to_json()[:30], encoding="utf-8")
    with JsonlWriter(path) as w:
        w.write(EXAMPLES[2])
    assert read_jsonl(path, 0)[0] == [EXAMPLES[0], EXAMPLES[2]]


def test_a_replaced_file_is_read_from_the_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for m in EXAMPLES:
        append_jsonl(path, m)
    _, offset = read_jsonl(path, 0)
    path.write_text(EXAMPLES[0].to_json() + "\n", encoding="utf-8")
    assert read_jsonl(path, offset)[0] == [EXAMPLES[0]]


def test_a_non_utf8_file_name_in_a_message_does_not_break_the_writer(tmp_path):
    """A corpus path Python decoded with surrogateescape (Latin-1 bytes in a Linux file name) used to raise
    UnicodeEncodeError in the writer, failing the run at its Started message; it now round-trips."""
    import os

    corpus = os.fsdecode(b"/data/caf\xe9.txt")  # '/data/caf\udce9.txt'
    started = Started("r1", config={"corpus": corpus})
    failed = Failed("r1", error=f"cannot read {corpus}")
    path = tmp_path / "metrics.jsonl"
    with JsonlWriter(path) as w:
        w.write(started)
    append_jsonl(path, failed)
    assert read_jsonl(path, 0)[0] == [started, failed]
