"""The Inside pane driven like a user: type text, hover and click tokens, pick a layer and a head, step in the
Generation pane and watch the marked row move, switch the model."""

import numpy as np
import pytest
import torch
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QToolTip

from app.generation.pane import GenerationPane
from app.inside.pane import InsidePane
from engine import interpret
from engine.checkpoint import load_model, save_model
from engine.model import GPT, GPTConfig
from engine.tokenizers.chars import CharTokenizer

CORPUS = "hello world, the quick brown fox jumps over the lazy dog\n"
BLOCK = 16


def checkpoint(folder, pos: str, seed: int) -> str:
    tok = CharTokenizer.from_text(CORPUS)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, pos=pos))
    path = folder / f"{pos}.pt"
    save_model(path, model, tok)
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inside")
    return {pos: checkpoint(folder, pos, seed) for seed, pos in enumerate(("rope", "learned", "alibi"))}


@pytest.fixture
def pane(qtbot, reporter):
    p = InsidePane(reporter=reporter)
    qtbot.addWidget(p)
    p.resize(900, 600)
    p.show()
    yield p
    p.shutdown()


def fill(qtbot, pane, action, timeout=20000):
    with qtbot.waitSignal(pane.sig_filled, timeout=timeout):
        action()


def idle(qtbot, pane):
    qtbot.waitUntil(lambda: not pane.runner.busy, timeout=20000)


def test_typed_text_scores_every_position(qtbot, pane, checkpoints):
    model, tok, _ = load_model(checkpoints["rope"])
    pane.set_model(model, tok, "tiny")
    fill(qtbot, pane, lambda: pane.set_text("the lazy fox"))
    a = pane.result
    assert a.ids == tok.encode("the lazy fox") and pane.tokens.n_tokens == len(a.ids)
    expected = interpret.token_losses(model, a.ids)
    assert a.mean_loss == pytest.approx(float(expected.mean()), rel=1e-5)
    assert "bits per character" in pane.status.text() and f"{a.mean_loss:.3f}" in pane.status.text()
    assert pane.position == len(a.ids) - 1  # the newest token is chosen
    assert pane.lens.model.rowCount() == 2 and pane.head_view.summary.position == len(a.ids) - 1
    # colour by GLTR rank: the legend changes and the tokens take the bucket colours
    pane.mode.setCurrentIndex(1)
    assert pane.tokens.mode == "rank" and "top 1000" in [w.text() for w in pane.legend.findChildren(type(
        pane.status))]


def test_hover_shows_loss_and_top_predictions(qtbot, pane, checkpoints):
    model, tok, _ = load_model(checkpoints["rope"])
    pane.set_model(model, tok)
    fill(qtbot, pane, lambda: pane.set_text("hello world"))
    view = pane.tokens
    where = view.rect_of(4).center()
    assert view.position_at(where) == 4
    QApplication.sendEvent(view.viewport(), QHelpEvent(QEvent.Type.ToolTip, where, view.viewport().mapToGlobal(where)))
    text = QToolTip.text()
    a = pane.result
    assert f"position 4: {a.labels[4]!r}" in text and f"loss {a.losses[3]:.3f}" in text
    assert f"rank {a.ranks[3]}" in text and "position 3 guessed" in text
    QToolTip.hideText()


def test_click_token_pick_layer_and_head(qtbot, pane, checkpoints):
    model, tok, _ = load_model(checkpoints["learned"])
    pane.set_model(model, tok)
    fill(qtbot, pane, lambda: pane.set_text("quick brown"))
    view = pane.tokens
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.rect_of(3).center())
    assert pane.position == 3 and pane.attention.marked == 3 and view.selected == 3
    qtbot.waitUntil(lambda: pane.head_view.summary.position == 3, timeout=10000)
    first, last = pane.lens.visible_positions()
    assert first <= 3 <= last
    t = interpret.trace(model, pane.result.ids)
    assert torch.allclose(interpret.head_view(t, 3).logits[pane.head_view.summary.rows[0].id],
                          torch.tensor(pane.head_view.summary.rows[0].logit))

    pane.views.setCurrentIndex(1)
    pane.layer.setValue(2)
    idle(qtbot, pane)
    assert np.allclose(pane.attention.maps, t.attention(1).numpy(), atol=1e-6)
    grid = pane.attention.grid
    assert grid.n_heads == 2
    QTest.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.head_rect(1).center())
    assert pane.attention.head == 1 and pane.head.value() == 1
    # the enlarged head and the thumbnails are the maps through the colour map, 0 to the head's 99th percentile
    from app.inside.analysis import colourise, max_pool
    view = pane.attention
    top = view.tops[1]
    assert np.array_equal(view.image.image, colourise(view.maps[1:2], [top], view.lut)[0])
    bright = np.unravel_index(np.argmax(view.maps[1]), view.maps[1].shape)
    assert tuple(view.image.image[bright]) == tuple(view.lut[255])  # the largest weight is drawn brightest
    thumb = max_pool(view.maps)[1]
    image = grid.images[1]
    assert (image.width(), image.height()) == thumb.shape[::-1]
    assert image.pixelColor(0, 0).getRgb() == tuple(int(c) for c in view.lut[int(min(thumb[0, 0] / top, 1) * 255)])
    pane.head.setValue(0)
    assert pane.attention.head == 0
    assert "reads key 0" in pane.attention.cell_text(3, 0) and "cannot read" in pane.attention.cell_text(0, 3)


def test_stepping_in_generation_moves_the_marked_row_and_slides(qtbot, reporter, pane, checkpoints):
    gen = GenerationPane(reporter=reporter)
    qtbot.addWidget(gen)
    gen.sig_context_changed.connect(pane.set_context)
    gen.prompt.setPlainText("hello")
    fill(qtbot, pane, lambda: gen.load_checkpoint(checkpoints["rope"]))
    qtbot.waitUntil(lambda: not gen.busy, timeout=10000)
    assert pane.follow.isChecked() and pane.result.ids == gen.snapshot.ids
    rows = []
    for _ in range(3):
        fill(qtbot, pane, gen.step)
        qtbot.waitUntil(lambda: not gen.busy, timeout=10000)
        rows.append(pane.attention.marked)
        assert pane.result.ids == gen.snapshot.ids[-BLOCK:]
        assert "newest" in pane.row_note.text()
    assert rows == [5, 6, 7]
    assert pane.text.toPlainText() == gen.loaded.tokenizer.decode(gen.snapshot.ids)
    while len(gen.snapshot.ids) <= BLOCK + 2:  # past the context: the window slides and says so
        fill(qtbot, pane, gen.step)
        qtbot.waitUntil(lambda: not gen.busy, timeout=10000)
    assert pane.result.n == BLOCK and pane.result.skipped == len(gen.snapshot.ids) - BLOCK
    assert pane.attention.marked == BLOCK - 1 and "window slides" in pane.status.text()
    gen.shutdown()


def test_switching_model_redraws_everything(qtbot, pane, checkpoints):
    first, tok, _ = load_model(checkpoints["rope"])
    pane.set_model(first, tok, "rope")
    fill(qtbot, pane, lambda: pane.set_text("the dog"))
    pane.views.setCurrentIndex(3)
    qtbot.waitUntil(lambda: pane.embeddings.neighbours.count() > 0, timeout=10000)
    assert "RoPE" in pane.embeddings.scheme_title.text()
    second, tok2, _ = load_model(checkpoints["alibi"])
    fill(qtbot, pane, lambda: pane.set_context(second, tok2, []))
    assert "alibi positions" in pane.model_info.text()
    qtbot.waitUntil(lambda: "ALiBi" in pane.embeddings.scheme_title.text(), timeout=10000)
    expected = interpret.token_losses(second, tok2.encode("the dog"))
    assert pane.result.mean_loss == pytest.approx(float(expected.mean()), rel=1e-5)
    near = interpret.nearest_tokens(second, pane.result.ids[-1], k=12, n_valid=tok2.n_vocab)
    first_row = f"{near[0][1]:+.3f}   {tok2.token_bytes(near[0][0]).decode()!r}"
    qtbot.waitUntil(lambda: pane.embeddings.neighbours.item(0).text().startswith(first_row), timeout=10000)
    assert pane.embeddings.neighbours.count() == len(near)


def test_text_the_tokenizer_cannot_encode_is_told_once_and_keeps_the_last_result(qtbot, pane, checkpoints):
    model, tok, _ = load_model(checkpoints["rope"])
    pane.set_model(model, tok)
    fill(qtbot, pane, lambda: pane.set_text("the fox"))
    before = pane.result
    pane.set_text("the fox 😀")
    qtbot.waitUntil(lambda: "cannot be encoded" in pane.status.text(), timeout=5000)
    assert pane.result is before and pane.tokens.n_tokens == len(before.ids)


def test_main_window_feeds_the_generation_context_to_the_inside_tab(qtbot, reporter, checkpoints):
    from app.main_window import MainWindow

    win = MainWindow(reporter=reporter)
    qtbot.addWidget(win)
    win.show()
    win.show_pane(win.generation)
    win.generation.prompt.setPlainText("the")
    win.generation.load_checkpoint(checkpoints["learned"])
    qtbot.waitUntil(lambda: win.generation.snapshot is not None and not win.generation.busy, timeout=20000)
    assert win.inside.result is None  # hidden: no work while the user is elsewhere
    view = [a for a in win.menuBar().actions() if a.text() == "&View"][0].menu()
    inside = [a for a in view.actions() if a.text() == "Inside"][0]
    assert inside.shortcut().toString() == "Ctrl+4"
    fill(qtbot, win.inside, inside.trigger)  # shown: it catches up with the Generation pane's context
    assert win.tabs.currentIndex() == 3 and win.tabs.tabText(3) == "Inside"
    assert win.inside.result.ids == win.generation.snapshot.ids
    win.close()


def test_thumbnails_keep_each_blocks_largest_weight():
    from app.inside.analysis import colour_top, max_pool

    maps = np.zeros((2, 5, 5), dtype=np.float32)
    maps[0, 4, 0] = 0.9
    maps[1, 1, 1] = 0.5
    pooled = max_pool(maps, size=3)  # blocks of 2: 5 -> 3 cells
    assert pooled.shape == (2, 3, 3) and pooled[0, 2, 0] == np.float32(0.9) and pooled[1, 0, 0] == np.float32(0.5)
    assert pooled.sum() == np.float32(1.4)
    assert max_pool(maps, size=8) is maps
    tri = np.tril(np.full((10, 10), 0.1, dtype=np.float32))
    tri[0, 0] = 1.0
    assert colour_top(tri) < 1.0  # one weight of 1 among 55 does not set the scale for the rest


def test_a_layer_chosen_while_a_pass_runs_is_the_one_shown(qtbot, pane, checkpoints):
    model, tok, _ = load_model(checkpoints["alibi"])
    pane.set_model(model, tok)
    pane.set_text("the quick brown fox")
    pane.refresh()  # the pass starts with layer 1 chosen ...
    pane.layer.setValue(2)  # ... and the user picks layer 2 before it is shown
    qtbot.waitUntil(lambda: pane.result is not None and not pane.runner.busy, timeout=20000)
    t = interpret.trace(model, pane.result.ids)
    assert np.allclose(pane.attention.maps, t.attention(1).numpy(), atol=1e-6)


def test_lens_shows_every_position_and_fills_in_while_its_tab_is_shown(qtbot, pane):
    from app.inside import analysis as an

    tok = CharTokenizer.from_text(CORPUS)
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=64, n_layer=3, n_head=2, n_embd=16)).eval()
    pane.set_model(model, tok)
    text = "the quick brown fox jumps over the lazy dog"
    fill(qtbot, pane, lambda: pane.set_text(text))
    lens, T = pane.lens.model, len(text)
    assert lens.columnCount() == T and lens.rowCount() == 3
    # another tab is shown: only the first slice is computed, the one ending at the chosen (newest) position
    assert lens.done.sum() == an.LENS_FIRST and lens.done[-an.LENS_FIRST:].all()
    assert pane.lens.cell_text(0, 0) == "…"
    with qtbot.waitSignal(pane.sig_lens_complete, timeout=20000):
        pane.views.setCurrentIndex(2)
    assert lens.done.all()
    expected = interpret.lens_at(interpret.trace(model, pane.result.ids), range(T))
    assert np.allclose(lens.final_probs, expected.final_probs.numpy(), atol=1e-5)
    assert np.allclose(lens.top_probs, expected.top_probs.numpy(), atol=1e-5)
    label = lambda i: an.render_bytes(tok.token_bytes(int(i)), whitespace="chips")  # noqa: E731
    for layer in range(3):
        for p in range(T):
            top = label(expected.top_ids[layer, p])
            assert lens.top_labels[layer][p] == top
            assert pane.lens.cell_text(layer, p) == f"{an.short(top)}\n{100 * lens.final_probs[layer, p]:.0f}%"
    assert lens.final_labels == [label(i) for i in expected.top_ids[-1]]
    # hovering a cell names the layer, the position and both tokens with their probabilities
    table = pane.lens.table
    pane.lens.show_position(5)
    where = table.visualRect(lens.index(1, 5)).center()
    port = table.viewport()
    QApplication.sendEvent(port, QHelpEvent(QEvent.Type.ToolTip, where, port.mapToGlobal(where)))
    tip = QToolTip.text()
    assert f"layer 2, position 5 (after {text[5]!r})" in tip and f"{lens.final_probs[1, 5]:.3f}" in tip
    assert repr(lens.top_labels[1][5]) in tip and repr(lens.final_labels[5]) in tip
    QToolTip.hideText()
    # clicking a token far from the view scrolls the lens to its column
    pane.views.setCurrentIndex(0)
    pane.choose_position(40)
    pane.views.setCurrentIndex(2)
    first, last = pane.lens.visible_positions()
    assert first <= 40 <= last


def test_every_alibi_head_can_be_shown_on_one_colour_scale(qtbot, pane):
    tok = CharTokenizer.from_text(CORPUS)
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=24, n_layer=1, n_head=4, n_embd=16, pos="alibi"))
    pane.set_model(model.eval(), tok)
    fill(qtbot, pane, lambda: pane.set_text("the dog"))
    pane.views.setCurrentIndex(3)
    view = pane.embeddings
    qtbot.waitUntil(lambda: "ALiBi head 0 of 4" in view.scheme_title.text(), timeout=10000)
    assert view.scheme_head.isVisible() and view.scheme_head.maximum() == 3
    bias = interpret.alibi_biases(model, 24).numpy()
    shown = []
    for h in range(4):
        view.scheme_head.setValue(h)
        assert f"ALiBi head {h} of 4" in view.scheme_title.text()
        image = view.scheme_image.image.T
        below = np.tril_indices(24)
        assert np.allclose(image[below], bias[h][below]) and np.isnan(image[np.triu_indices(24, 1)]).all()
        assert view.scheme_image.levels is not None and tuple(view.scheme_image.levels) == (bias[0][23, 0], 0.0)
        shown.append(image[below])
    assert all(not np.allclose(shown[a], shown[b]) for a in range(4) for b in range(a + 1, 4))
    # another scheme has one picture: no head to choose
    learned = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=24, n_layer=1, n_head=4, n_embd=16)).eval()
    fill(qtbot, pane, lambda: pane.set_context(learned, tok, []))
    qtbot.waitUntil(lambda: "learned positions" in view.scheme_title.text(), timeout=10000)
    assert not view.scheme_head.isVisible()


def test_a_long_text_is_shown_whole_though_a_piece_at_a_time(qtbot, pane):
    from app.inside.tokens_view import PIECE

    tok = CharTokenizer.from_text(CORPUS)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=2 * PIECE + 50, n_layer=1, n_head=2, n_embd=16)).eval()
    pane.set_model(model, tok)
    text = (CORPUS * 20)[:2 * PIECE + 40]
    pane.set_text(text)
    steps = []
    pane.tokens.insert_more = (lambda more: lambda count=PIECE: steps.append(count) or more(count))(
        pane.tokens.insert_more)
    fill(qtbot, pane, pane.refresh)
    assert len(steps) == 3  # the text went in over three event-loop turns ...
    assert pane.tokens.toPlainText() == text  # ... and all of it is there, each token coloured
    assert pane.tokens.n_tokens == len(text) and pane.last_timings["longest_step_s"] <= pane.last_timings["show_s"]
    last = len(text) - 1
    assert pane.tokens.position_at(pane.tokens.rect_of(last).center()) == last


def test_the_lens_tab_shown_while_a_shorter_text_is_being_shown_waits_for_it(qtbot, pane):
    tok = CharTokenizer.from_text(CORPUS)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=64, n_layer=2, n_head=2, n_embd=16)).eval()
    pane.set_model(model, tok)
    fill(qtbot, pane, lambda: pane.set_text("the quick brown fox jumps over the lazy dog"))
    shown = pane._show_scores

    def scores_then_lens_tab(a):  # the lens tab opens while the shorter text is shown, before the lens's step
        shown(a)
        assert pane._fill.pending
        pane.views.setCurrentIndex(2)

    pane._show_scores = scores_then_lens_tab
    pane.set_text("the dog")
    with qtbot.waitSignal(pane.sig_lens_complete, timeout=20000):
        pane.refresh()
    assert pane.lens.model.columnCount() == 7 and pane.lens.model.done.all()
    assert "positions must lie" not in pane.status.text()


def test_token_colours_and_legend_follow_a_dark_palette(qtbot):
    """Light chips under black text on a light base; dark shades of the same hues under the palette's text on a dark
    one, switched live when the palette changes (no pastel blocks glaring in a dark window)."""
    from PySide6.QtGui import QPalette, QTextCursor

    from app.inside.tokens_view import Legend, TokensView
    from app.theme import chip_colors, dark_palette, prob_color

    def char_format(view, t):
        cursor = QTextCursor(view.document())
        start, length = view.span_of(t)
        cursor.setPosition(start + length)
        return cursor.charFormat()

    light = QPalette(QColor("white"))
    view, legend = TokensView(), Legend()
    for widget in (view, legend):
        qtbot.addWidget(widget)
        widget.setPalette(light)
    view.set_tokens(["a", "b", "c"], [0.01, 0.9], [3, 0])
    fmt = char_format(view, 1)
    assert fmt.background().color() == prob_color(0.01) and fmt.foreground().color() == QColor("black")

    for widget in (view, legend):
        widget.setPalette(dark_palette())
    background, text = chip_colors(prob_color(0.01), view)
    assert background.lightness() < 100 and text.lightness() > 150
    fmt = char_format(view, 1)
    assert (fmt.background().color(), fmt.foreground().color()) == (background, text)
    chip_background = chip_colors(prob_color(0.01), legend)[0].name()
    assert any(chip_background in chip.styleSheet() for chip in legend.findChildren(QLabel))


def test_lens_cells_are_shaded_from_the_palettes_base(qtbot):
    """The lens table's cells run from the base colour to a blue under the palette's text: white to light blue in a
    light palette, dark to mid blue in a dark one (white cells under black text glared in a dark window)."""
    from PySide6.QtGui import QPalette

    from app.inside.lens_view import LensView
    from app.theme import dark_palette

    view = LensView()
    qtbot.addWidget(view)
    for palette, dark in ((QPalette(QColor("white")), False), (dark_palette(), True)):
        view.setPalette(palette)
        base = view.palette().color(QPalette.ColorRole.Base)
        model = view.model
        assert model.shades[0].color() == base
        assert (model.text.lightness() > 150) == dark
        assert (model.shades[-1].color().lightness() < 128) == dark
        if not dark:  # white to the strong blue, as the cells were shaded before they followed the palette
            assert (model.shades[0].color().name(), model.shades[-1].color().name()) == ("#ffffff", "#6991ff")
