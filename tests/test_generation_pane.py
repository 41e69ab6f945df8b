"""The Generation pane driven through qtbot, on a tiny 1-layer character model saved as a real checkpoint."""

import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextCursor

from app.generation.distribution import chart_data, draw_strip
from app.generation.model_source import ModelSource
from app.generation.pane import PROMPT_STATE, GenerationPane
from app.generation.vocab_search import find
from engine.decoding import DecodeSettings

CORPUS = "hello world, the quick brown fox jumps over the lazy dog\n"
BLOCK = 16


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from engine.checkpoint import save_model
    from engine.model import GPT, GPTConfig
    from engine.tokenizers.chars import CharTokenizer

    tok = CharTokenizer.from_text(CORPUS)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, model, tok)
    return str(path)


def wait_idle(qtbot, pane, timeout=30000):
    qtbot.waitUntil(lambda: not pane.busy, timeout=timeout)


@pytest.fixture
def pane(qtbot, reporter, tiny_checkpoint):
    p = GenerationPane(reporter=reporter)
    qtbot.addWidget(p)
    p.prompt.setPlainText("hello")
    p.load_checkpoint(tiny_checkpoint)
    wait_idle(qtbot, p)
    assert p.loaded is not None and p.snapshot is not None, p.banner.text()
    yield p
    p.shutdown()


def step(qtbot, pane, n=1):
    for _ in range(n):
        pane.step()
        wait_idle(qtbot, pane)


def bars(pane):
    return [(r.id, r.raw, r.final, r.cut_by) for r in pane.chart.data.rows]


def test_step_appends_a_token_and_shows_the_draw(qtbot, pane):
    assert pane.text.generated_text() == ""
    step(qtbot, pane, 3)
    snap = pane.snapshot
    assert len(snap.history) == 3
    expected = pane.loaded.tokenizer.decode(snap.ids[snap.prompt_len:])
    assert pane.text.generated_text() == expected
    assert pane.text.toPlainText() == "hello" + expected
    assert pane.chart.u_line.isVisible()
    assert "u = " in pane.chart.strip_title.text()
    drawn = [s for s in pane.chart.strip_bars.opts["x0"]]
    assert len(drawn) == pane.loaded.tokenizer.n_vocab  # a small vocabulary: every token has its slice
    assert "3 generated" in pane.counts.text()


def test_undo_restores_the_exact_text_and_distribution(qtbot, pane):
    step(qtbot, pane, 2)
    text, chart, logits = pane.text.toPlainText(), bars(pane), pane.snapshot.logits.clone()
    step(qtbot, pane, 1)
    assert pane.text.toPlainText() != text or bars(pane) != chart
    pane.undo()
    wait_idle(qtbot, pane)
    assert pane.text.toPlainText() == text
    assert bars(pane) == chart
    assert torch.equal(pane.snapshot.logits, logits)
    assert len(pane.snapshot.history) == 2


def test_undo_then_step_draws_the_same_token_again(qtbot, pane):
    step(qtbot, pane, 2)
    first = pane.snapshot.history[-1].token_id, pane.snapshot.history[-1].u
    pane.undo()
    wait_idle(qtbot, pane)
    step(qtbot, pane)
    assert (pane.snapshot.history[-1].token_id, pane.snapshot.history[-1].u) == first


def test_controls_redraw_the_bars_without_a_forward_pass(qtbot, pane):
    forwards = pane.snapshot.forward_count
    before = bars(pane)
    pane.controls.temperature.setValue(0.3)
    after = bars(pane)
    assert [b[2] for b in after] != [b[2] for b in before]  # the solid bars changed
    assert [b[1] for b in after] == [b[1] for b in before]  # the raw softmax did not
    assert max(b[2] for b in after) > max(b[2] for b in before)  # a low temperature sharpens

    pane.controls.top_k.setValue(3)
    rows = pane.chart.data.rows
    assert [r.cut_by for r in rows[:3]] == ["", "", ""]
    assert all(r.cut_by == "top_k" and r.final == 0 for r in rows[3:])

    pane.controls.top_k.setValue(0)
    pane.controls.top_p.setValue(0.2)
    assert pane.chart.data.top_p_row is not None and pane.chart.cutoff.isVisible()
    assert not pane.controls.hint.isHidden()  # temperature and top-p both changed

    pane.controls.top_p.setValue(1.0)
    pane.controls.temperature.setValue(1.0)
    assert pane.controls.hint.isHidden()
    pane.controls.set_order(("top_k", "min_p", "top_p", "temperature", "repetition_penalty"))
    pane.top_n.setValue(5)
    assert len(pane.chart.data.rows) == 5
    assert pane.snapshot.forward_count == forwards


def test_greedy_is_one_hot(qtbot, pane):
    pane.controls.greedy.setChecked(True)
    finals = [r.final for r in pane.chart.data.rows]
    assert sorted(finals)[-1] == 1.0 and sum(finals) == 1.0
    assert [r.cut_by for r in pane.chart.data.rows].count("greedy") == len(finals) - 1
    assert pane.chart.data.entropy_after == 0.0
    best = pane.chart.data.rows[finals.index(1.0)].id
    step(qtbot, pane)
    assert pane.snapshot.history[-1].token_id == best


def test_repetition_penalty_uses_the_text_so_far(qtbot, pane):
    forwards = pane.snapshot.forward_count
    seen = set(pane.snapshot.ids)
    pane.top_n.setValue(40)
    raw = {r.id: r.final for r in pane.chart.data.rows}
    pane.controls.penalty.setValue(3.0)
    pen = {r.id: r.final for r in pane.chart.data.rows}
    assert any(pen[i] < raw[i] for i in seen if i in raw)
    assert pane.snapshot.forward_count == forwards


def test_clicking_a_bar_forces_that_token(qtbot, pane):
    pane.show()
    qtbot.waitExposed(pane)
    row = 2
    token = pane.chart.data.rows[row].id
    scene_pos = pane.chart.row_scene_pos(row)
    view_pos = pane.chart.view.mapFromScene(scene_pos)
    qtbot.mouseClick(pane.chart.view.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    wait_idle(qtbot, pane)
    rec = pane.snapshot.history[-1]
    assert rec.forced and rec.token_id == token
    assert pane.text.generated_text() == pane.loaded.tokenizer.decode([token])
    assert "forced" in pane.chart.strip_title.text()
    step(qtbot, pane)  # generation continues from the forced token
    assert len(pane.snapshot.history) == 2


def test_vocabulary_search_forces_a_token(qtbot, pane):
    tok = pane.loaded.tokenizer
    z = tok.encode("z")[0]
    pane.search.setFocus()
    qtbot.keyClicks(pane.search, "z")
    qtbot.keyClick(pane.search, Qt.Key.Key_Return)
    wait_idle(qtbot, pane)
    assert pane.snapshot.history[-1].token_id == z and pane.snapshot.history[-1].forced
    qtbot.keyClicks(pane.search, f"#{tok.encode('q')[0]}")
    qtbot.keyClick(pane.search, Qt.Key.Key_Return)
    wait_idle(qtbot, pane)
    assert pane.text.generated_text() == "zq"


def test_vocabulary_search_matching():
    labels = ["a", "␣the", "the", "then", None, "<E2>"]
    assert find(labels, "the") == [2, 3, 1]
    assert find(labels, " the") == [1]  # a typed space matches the visible ␣
    assert find(labels, "#3") == [3] and find(labels, "#4") == [] and find(labels, "#99") == []
    assert find(labels, "") == []
    big = [f"tok{i}" for i in range(200_000)]
    assert find(big, "tok199999") == [199_999]
    assert len(find(big, "tok1")) == 100


def test_context_window_slides_and_says_so(qtbot, pane):
    assert pane.context_note.isHidden()
    step(qtbot, pane, BLOCK - 5)  # prompt "hello" is 5 tokens: now exactly full
    assert len(pane.snapshot.ids) == BLOCK
    assert "slides" in pane.context_note.text() and not pane.context_note.isHidden()
    step(qtbot, pane, 3)
    assert len(pane.snapshot.ids) == BLOCK + 3
    assert "16" in pane.context_note.text()
    assert len(pane.text.generated_text()) == BLOCK - 5 + 3


def test_hovering_a_generated_token_lists_the_alternatives(qtbot, pane):
    pane.show()
    qtbot.waitExposed(pane)
    step(qtbot, pane, 4)
    text = pane.text.generated_text()
    k = next(i for i, ch in enumerate(text) if ch not in "\n")  # a character with a width on screen
    cursor = QTextCursor(pane.text.document())
    cursor.setPosition(len("hello") + k)
    left = pane.text.cursorRect(cursor)
    cursor.setPosition(len("hello") + k + 1)
    right = pane.text.cursorRect(cursor)
    assert pane.text.step_at(QPoint((left.x() + right.x()) // 2, left.center().y())) == k
    assert pane.text.step_at(QPoint(1, left.center().y())) is None or left.y() > 0  # the prompt is no step
    tip = pane.text.tooltip_for(k)
    label = pane.state.label(pane.snapshot.history[k].token_id)
    assert f"Token {k + 1}" in tip and label in tip and "%" in tip and "u = " in tip


def test_keyboard_shortcuts_step_and_undo(qtbot, pane):
    pane.show()
    qtbot.waitExposed(pane)
    pane.activateWindow()
    pane.text.setFocus()
    qtbot.waitUntil(pane.text.hasFocus, timeout=2000)
    qtbot.keyClick(pane.text, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 1
    qtbot.keyClick(pane.text, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 0
    assert "Ctrl+Right" in pane.step_button.toolTip() and "Ctrl+Left" in pane.undo_button.toolTip()


def test_run_steps_until_paused(qtbot, pane):
    pane.speed.setValue(pane.speed.maximum())
    pane.run_button.setChecked(True)
    qtbot.waitUntil(lambda: len(pane.snapshot.history) >= 4, timeout=10000)
    pane.pause()
    assert not pane.run_control.timer.isActive()
    wait_idle(qtbot, pane)
    n = len(pane.snapshot.history)
    qtbot.wait(100)
    assert len(pane.snapshot.history) == n


def test_editing_the_prompt_and_reset_start_over(qtbot, pane):
    step(qtbot, pane, 2)
    pane.prompt.setPlainText("the fox")
    qtbot.waitUntil(lambda: pane.snapshot.prompt_len == 7 and not pane.busy, timeout=5000)
    assert pane.text.toPlainText() == "the fox" and not pane.snapshot.history
    step(qtbot, pane, 2)
    forwards = pane.snapshot.forward_count
    pane.reset()
    wait_idle(qtbot, pane)
    assert pane.text.toPlainText() == "the fox" and not pane.snapshot.history
    assert pane.snapshot.forward_count == forwards  # reset is undo all the way: no forward pass


def test_a_prompt_the_tokenizer_cannot_encode_is_explained(qtbot, pane):
    pane.prompt.setPlainText("héllo")  # é is not in the tiny vocabulary
    qtbot.waitUntil(lambda: pane.snapshot is None and not pane.busy, timeout=5000)
    assert "é" in pane.chart.message.toPlainText() or "'\\xe9'" in pane.chart.message.toPlainText()
    assert not pane.step_button.isEnabled()
    pane.prompt.setPlainText("hello")
    qtbot.waitUntil(lambda: pane.snapshot is not None and not pane.busy, timeout=5000)
    assert pane.step_button.isEnabled()


def test_a_corrupt_checkpoint_is_explained_and_the_model_stays(qtbot, pane, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    previous = pane.loaded
    pane.load_checkpoint(str(bad))
    wait_idle(qtbot, pane)
    assert pane.loaded is previous
    assert not pane.banner.isHidden()
    assert "Could not load" in pane.banner.text() and "broken.pt" in pane.banner.text()
    assert "corrupt" in pane.banner.text() and "previous model stays" in pane.banner.text()
    step(qtbot, pane)
    assert len(pane.snapshot.history) == 1


def test_settings_and_prompt_persist(qtbot, reporter, tiny_checkpoint):
    from app.paths import read_state
    from app.settings import app_settings

    first = GenerationPane(reporter=reporter)
    qtbot.addWidget(first)
    first.restore_settings(app_settings())
    first.prompt.setPlainText("the quick")
    first.controls.set_settings(DecodeSettings(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05,
                                               repetition_penalty=1.3, order=("top_k", "temperature", "min_p",
                                                                              "top_p", "repetition_penalty")),
                                seed=42)
    first.top_n.setValue(9)
    first.speed.setValue(2)
    first.load_checkpoint(tiny_checkpoint)
    wait_idle(qtbot, first)
    s = app_settings()
    s.beginGroup("GenerationPane")
    first.save_settings(s)
    s.endGroup()
    s.sync()
    first.shutdown()
    assert read_state(PROMPT_STATE) == "the quick"

    second = GenerationPane(reporter=reporter)
    qtbot.addWidget(second)
    s = app_settings()
    s.beginGroup("GenerationPane")
    second.restore_settings(s)
    s.endGroup()
    assert second.prompt.toPlainText() == "the quick"
    assert second.controls.settings() == first.controls.settings()
    assert second.controls.seed.value() == 42
    assert second.top_n.value() == 9 and second.speed.value() == 2
    assert second.wanted == ModelSource("file", path=tiny_checkpoint)
    second.show()  # the restored model loads when the pane is first shown
    qtbot.waitUntil(lambda: second.loaded is not None and not second.busy, timeout=10000)
    assert second.loaded.source.path == tiny_checkpoint
    second.shutdown()


def test_latest_checkpoint_is_offered(qtbot, pane, tiny_checkpoint):
    pane.set_latest_checkpoint(tiny_checkpoint)
    titles = [pane.source_box.itemText(i) for i in range(pane.source_box.count())]
    assert any(t.startswith("Latest training checkpoint") for t in titles)
    index = next(i for i, t in enumerate(titles) if t.startswith("Latest"))
    pane.source_box.activated.emit(index)
    wait_idle(qtbot, pane)
    assert pane.loaded.source.kind == "latest"
    pane.set_latest_checkpoint(tiny_checkpoint)
    assert "newer" in pane.reload_button.text()


def test_random_gpt2_sized_model_is_honestly_uniform(qtbot, pane):
    pane.load_source(ModelSource("random", size="tiny", tokenizer="gpt2"))
    wait_idle(qtbot, pane, timeout=60000)
    assert pane.loaded.untrained and pane.loaded.tokenizer.n_vocab == 50257
    assert "untrained" in pane.chart.header.text()
    assert pane.chart.data.entropy_before > 14  # log2(50257) = 15.6
    step(qtbot, pane)
    assert len(pane.snapshot.history) == 1
    tip = pane.text.tooltip_for(0)
    assert "raw 0.0%" not in tip and "e-05" in tip  # each raw probability is about 2e-5, not zero


def test_chart_data_marks_the_nucleus_and_extra_rows():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
    data = chart_data(logits, DecodeSettings(top_p=0.8), (), 4, str)
    assert [r.cut_by for r in data.rows] == ["", "", "top_p", "top_p"]
    assert data.top_p_row == 2 and data.top_p_info["n_kept"] == 2
    # a repetition penalty can push the top token down: the new favourite is added as an extra row
    data = chart_data(logits, DecodeSettings(repetition_penalty=100.0), [0, 1], 2, str)
    assert [r.id for r in data.rows] == [0, 1, 2] and data.rows[-1].extra
    strip = draw_strip(torch.softmax(logits, -1), 2, 0.97, str, 0)
    assert [s.id for s in strip.segments] == list(range(6))
    assert strip.segments[2].drawn and abs(strip.segments[2].x0 - float(torch.softmax(logits, -1)[:2].sum())) < 1e-6


def test_small_probabilities_are_not_shown_as_zero():
    from app.generation.distribution import percent

    assert percent(0.0) == "0%"
    assert percent(0.25) == "25.0%"
    assert percent(0.0005) == "0.05%"
    assert percent(2e-5) == "2.0e-05"  # a GPT-2 token under an untrained model: not "0.0%"


def test_error_banner_goes_away_once_the_user_moves_on(qtbot, pane, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    pane.load_checkpoint(str(bad))
    wait_idle(qtbot, pane)
    assert not pane.banner.isHidden()
    assert "File: broken.pt" not in pane.banner.text()  # the file is named once, by the error itself
    step(qtbot, pane)
    assert pane.banner.isHidden()


def test_empty_prompt_shows_the_token_the_model_starts_from(qtbot, pane):
    pane.prompt.setPlainText("")
    qtbot.waitUntil(lambda: pane.snapshot.prompt_len == 1 and not pane.busy, timeout=5000)
    start = pane.state.label(pane.snapshot.ids[0])
    assert pane.text.toPlainText() == start  # the model predicts from it, so the user sees it
    assert f"starts from {start}" in pane.counts.text()
    step(qtbot, pane, 2)
    assert pane.text.toPlainText() == start + pane.text.generated_text()
    assert len(pane.text.generated_text()) == 2


def test_last_draw_is_computed_in_the_worker_not_the_ui_thread(qtbot, pane, monkeypatch):
    import app.generation.distribution as distribution_module
    import app.generation.state as state_module
    from engine.decoding import probabilities

    pane.controls.top_k.setValue(3)
    step(qtbot, pane, 2)
    rec = pane.snapshot.history[-1]
    expected = probabilities(rec.logits_before, rec.settings, pane.snapshot.ids[: rec.index])
    assert torch.equal(pane.snapshot.last_probs, expected)

    def no_stages_here(*args, **kwargs):
        raise AssertionError("the UI thread re-ran the decoding stages of the last step")

    monkeypatch.setattr(state_module, "probabilities", no_stages_here)
    monkeypatch.setattr(distribution_module, "probabilities", no_stages_here)
    pane.render()
    assert "u = " in pane.chart.strip_title.text()


def test_a_long_chart_message_is_wrapped_not_cut_off(qtbot, pane):
    pane.resize(1000, 700)
    pane.show()
    qtbot.waitExposed(pane)
    pane.prompt.setPlainText("héllo " * 30)
    qtbot.waitUntil(lambda: pane.snapshot is None and not pane.busy, timeout=5000)
    message = pane.chart.message
    assert "cannot read the prompt" in message.toPlainText()
    width = message.textItem.boundingRect().width()
    assert 0 < width <= pane.chart.plot.vb.width()  # one long line would be as wide as the whole text


def test_model_list_shows_whole_titles(qtbot, pane):
    view = pane.source_box.view()
    longest = max(view.sizeHintForColumn(0), 1)
    assert view.minimumWidth() >= longest  # "Random small model (untrained) · Shakespeare characters" is not cut


def test_probability_axis_has_no_ticks_past_one(qtbot, pane):
    # a 99% favourite: the view reaches to 1.55 to leave room for its label, but probabilities end at 1
    axis = pane.chart.plot.getAxis("bottom")
    values = [v for _, level in axis.tickValues(0.0, 1.55, 500) for v in level]
    assert values and max(values) <= 1.0


def test_context_changed_follows_load_step_force_undo_and_reset(qtbot, pane):
    seen = []
    pane.sig_context_changed.connect(lambda model, tok, ids: seen.append((model, tok, list(ids))))
    step(qtbot, pane, 2)
    assert [len(s[2]) for s in seen] == [pane.snapshot.prompt_len + 1, pane.snapshot.prompt_len + 2]
    model, tok, ids = pane.context()
    assert model is pane.loaded.model and tok is pane.loaded.tokenizer and ids == pane.snapshot.ids == seen[-1][2]
    pane.force(tok.encode("z")[0])
    wait_idle(qtbot, pane)
    assert seen[-1][2][-1] == tok.encode("z")[0]
    pane.undo()
    wait_idle(qtbot, pane)
    assert seen[-1][2] == ids
    pane.reset()
    wait_idle(qtbot, pane)
    assert seen[-1][2] == tok.encode("hello")
    assert len(seen) == 5


def test_context_changed_on_load(qtbot, reporter, tiny_checkpoint):
    p = GenerationPane(reporter=reporter)
    qtbot.addWidget(p)
    p.prompt.setPlainText("hello")
    assert p.context() is None
    with qtbot.waitSignal(p.sig_context_changed, timeout=10000) as blocker:
        p.load_checkpoint(tiny_checkpoint)
    model, tok, ids = blocker.args
    assert ids == tok.encode("hello") and model is p.loaded.model
    wait_idle(qtbot, p)
    p.shutdown()


def test_whitespace_tokens_are_visible_but_the_text_stays_true(qtbot, pane):
    from PySide6.QtGui import QTextOption

    flags = pane.text.document().defaultTextOption().flags()
    assert flags & QTextOption.Flag.ShowTabsAndSpaces and flags & QTextOption.Flag.ShowLineAndParagraphSeparators
    pane.force(pane.loaded.tokenizer.encode(" ")[0])
    wait_idle(qtbot, pane)
    assert pane.text.generated_text() == " "  # drawn as a dot, kept as a space


def test_chart_numbers_pre_cut_and_log_view(qtbot, pane):
    from app.generation.distribution import number_format

    pane.controls.top_k.setValue(2)
    rows = pane.chart.data.rows
    cut = [r for r in rows if r.cut_by == "top_k"]
    assert cut and all(r.pre_cut == pytest.approx(r.raw) for r in cut)  # top-k first: cut from the raw softmax
    fmt = number_format([v for r in rows for v in (r.raw, r.final, r.pre_cut)])
    assert len({("e" in fmt(r.raw)) for r in rows}) == 1  # one format for every number
    pane.scale.setCurrentIndex(1)
    assert pane.chart.log_scale and pane.chart.plot.getAxis("bottom").labelText == "ln p"
    pane.controls.greedy.setChecked(True)
    pane.controls.top_p.setValue(0.5)
    assert pane.chart.data.top_p_row is None and not pane.chart.cutoff.isVisible()  # no nucleus in greedy


def test_reset_controls_and_the_hint_keeps_its_room(qtbot, pane):
    pane.controls.temperature.setValue(0.5)
    pane.controls.top_p.setValue(0.8)
    assert not pane.controls.hint.isHidden()
    assert pane.controls.hint.sizePolicy().retainSizeWhenHidden()
    pane.controls.reset_button.click()
    assert pane.controls.settings() == DecodeSettings()
    assert pane.controls.hint.isHidden()


def test_run_stops_at_max_new_tokens_and_shows_its_rate(qtbot, pane):
    pane.speed.setValue(pane.speed.maximum())
    pane.max_new.setValue(4)
    pane.run_button.setChecked(True)
    qtbot.waitUntil(lambda: not pane.run_button.isChecked(), timeout=20000)
    wait_idle(qtbot, pane)
    assert len(pane.snapshot.history) == 4 and "maximum" in pane.counts.text()
    pane.max_new.setValue(0)
    every_character = "|".join(sorted(set(CORPUS) - {"\n", "|", " "})) + r"|\n| "
    pane.stop_sequences.setText(every_character)  # whatever it draws first stops it
    pane.run_button.setChecked(True)
    qtbot.waitUntil(lambda: not pane.run_button.isChecked(), timeout=20000)
    wait_idle(qtbot, pane)
    assert "stop sequence" in pane.counts.text() and len(pane.snapshot.history) == 5


def test_the_previous_draw_is_labelled_as_such(qtbot, pane):
    step(qtbot, pane, 1)
    title = pane.chart.strip_title
    assert "Previous step" in title.text() and "not the chart above" in title.toolTip()
