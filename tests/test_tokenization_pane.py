"""The Tokenization pane driven through qtbot: live split and counts, encodings, comparison, decode mode, inspector,
hover linking, the BPE panel, persistence; plus the pure helpers behind it."""

import pytest
from PySide6.QtCore import QPoint, Qt

from app.settings import app_settings
from app.tokenization.analysis import analyse, label, parse_ids, spans_from_ids
from app.tokenization.pane import BPE_TAB, COMPARE_TAB, DECODE_TAB, TEXT_TAB, TokenizationPane
from engine.tokenizers import get_tokenizer

WAIT_MS = 15_000


@pytest.fixture
def pane(tokenization_pane):
    return tokenization_pane


def shown(pane, text, encoding=None, qtbot=None):
    """Wait until the views show ``text`` (tokenized by ``encoding`` when given)."""
    def done():
        a = pane.analysis
        return a is not None and a.text == text and (encoding is None or a.encoding == encoding)

    qtbot.waitUntil(done, timeout=WAIT_MS)
    return pane.analysis


def type_text(pane, qtbot, text, encoding=None):
    pane.set_text(text)
    return shown(pane, text, encoding, qtbot)


def center(view, index) -> QPoint:
    return view.token_rect(index).center().toPoint()


# ---- live split and counts ----------------------------------------------------------------------------------------
def test_typing_updates_spans_and_counts(pane, qtbot):
    pane.editor.setFocus()
    qtbot.keyClicks(pane.editor, "Hello world")
    a = shown(pane, "Hello world", "gpt2", qtbot)
    assert [s.id for s in a.spans] == [15496, 995]
    assert [pane.token_view.label(i) for i in range(pane.token_view.count())] == ["Hello", "␣world"]
    assert [pane.ids_view.label(i) for i in range(pane.ids_view.count())] == ["15496", "995"]
    counts = pane.counts.text()
    assert "<b>2</b> tokens" in counts and "<b>11</b> characters" in counts and "<b>11</b> bytes" in counts
    assert "<b>5.50</b> bytes/token" in counts

    qtbot.keyClicks(pane.editor, "!")
    a = shown(pane, "Hello world!", "gpt2", qtbot)
    assert [s.id for s in a.spans] == [15496, 995, 0]


def test_only_the_latest_edit_is_shown(pane, qtbot):
    for k in range(1, 30):
        pane.set_text("word " * k)
        pane.refresh()  # skip the debounce: many jobs in flight, all but the last stale
    a = shown(pane, "word " * 29, "gpt2", qtbot)
    assert a.n_tokens == len(get_tokenizer("gpt2").encode("word " * 29))


def test_encoding_switch_retokenizes(pane, qtbot):
    text = "Hello world, tokenizers!"
    type_text(pane, qtbot, text, "gpt2")
    assert pane.set_encoding("cl100k_base")
    a = shown(pane, text, "cl100k_base", qtbot)
    assert [s.id for s in a.spans] == get_tokenizer("cl100k_base").encode(text)
    assert [pane.ids_view.label(i) for i in range(pane.ids_view.count())] == [str(s.id) for s in a.spans]


def test_empty_and_huge_text(pane, qtbot):
    a = type_text(pane, qtbot, "")
    assert a.n_tokens == 0 and pane.token_view.count() == 0
    assert "Empty text" in pane.status.text()
    assert "<b>0</b> tokens" in pane.counts.text()

    huge = "The quick brown fox jumps over the lazy dog. 🤗\n" * 6000  # ~300 KB: more than the views draw
    a = type_text(pane, qtbot, huge)
    assert a.truncated and 0 < len(a.spans) < a.n_tokens
    assert a.n_tokens == len(get_tokenizer("gpt2").encode(huge))  # the counts cover the whole text
    assert a.n_bytes == len(huge.encode("utf-8")) and a.n_chars == len(huge)
    assert pane.token_view.count() == len(a.spans)
    assert f"Showing the first {len(a.spans):,} of {a.n_tokens:,} tokens" in pane.status.text()


def test_whitespace_toggle(pane, qtbot):
    type_text(pane, qtbot, "a b\n\tc")
    labels = [pane.token_view.label(i) for i in range(pane.token_view.count())]
    assert "␣b" in labels and any("↵" in t for t in labels) and any("→" in t for t in labels)
    pane.show_whitespace.setChecked(False)
    labels = [pane.token_view.label(i) for i in range(pane.token_view.count())]
    assert " b" in labels and not any(ch in "".join(labels) for ch in "␣↵→")
    assert "\n" in "".join(labels)  # newlines still break the line


def test_special_tokens_are_text_unless_allowed(pane, qtbot):
    a = type_text(pane, qtbot, "<|endoftext|>")
    assert 50256 not in [s.id for s in a.spans] and a.n_tokens > 1
    pane.allow_special.setChecked(True)
    qtbot.waitUntil(lambda: [s.id for s in pane.analysis.spans] == [50256], timeout=WAIT_MS)


# ---- partial bytes, inspector, hover linking --------------------------------------------------------------------
def test_partial_byte_tokens_show_hex_and_inspector_names_the_character(pane, qtbot):
    a = type_text(pane, qtbot, "🤗!")
    assert [s.partial for s in a.spans] == [True, True, True, False]
    labels = [pane.token_view.label(i) for i in range(pane.token_view.count())]
    assert labels[:3] == ["<F0><9F>", "<A4>", "<97>"]
    assert "\ufffd" not in "".join(labels)

    qtbot.mouseClick(pane.token_view.viewport(), Qt.MouseButton.LeftButton, pos=center(pane.token_view, 1))
    assert pane.token_view.selected == 1 and pane.ids_view.selected == 1
    info = pane.inspector.text()
    assert "Token: #1 of 4" in info and f"Id: {a.spans[1].id}" in info
    assert "A4" in info and "<A4>" in info and "b'\\xa4'" in info
    assert "'🤗'" in info and "U+1F917" in info and "F0 9F A4 97" in info and "#0–#2" in info
    assert get_tokenizer("gpt2").merge_info(a.spans[1].id) in info
    assert "\ufffd" not in info
    tip = pane.token_tooltip(0)
    assert "F0 9F" in tip and "🤗" in tip


def test_inspector_for_a_whole_token_and_keyboard(pane, qtbot):
    type_text(pane, qtbot, "Hello world")
    qtbot.mouseClick(pane.ids_view.viewport(), Qt.MouseButton.LeftButton, pos=center(pane.ids_view, 1))
    info = pane.inspector.text()
    assert "995" in info and "' world'" in info and "20 77 6F 72 6C 64" in info and "[5, 11)" in info
    assert "no: whole characters" in info
    assert get_tokenizer("gpt2").merge_info(995) in info
    assert pane.token_view.selected == 1
    pane.token_view.setFocus()
    qtbot.keyClick(pane.token_view, Qt.Key.Key_Left)
    assert pane.token_view.selected == 0 and "15496" in pane.inspector.text()
    # the token's characters are marked in the editor
    marks = pane.editor.extraSelections()
    assert len(marks) == 1 and marks[0].cursor.selectedText() == "Hello"


def test_hover_links_text_and_ids_both_ways(pane, qtbot):
    type_text(pane, qtbot, "one two three")
    qtbot.mouseMove(pane.token_view.viewport(), center(pane.token_view, 2))
    qtbot.waitUntil(lambda: pane.ids_view.highlighted == 2, timeout=3000)
    assert pane.token_view.hovered == 2
    qtbot.mouseMove(pane.ids_view.viewport(), center(pane.ids_view, 0))
    qtbot.waitUntil(lambda: pane.token_view.highlighted == 0, timeout=3000)
    assert pane.ids_view.hovered == 0


# ---- comparison, decode mode ---------------------------------------------------------------------------------------
def test_comparison_table(pane, qtbot):
    text = "Comparing encodings: 日本語 and emoji 🤗 and code x += 1"
    type_text(pane, qtbot, text)
    for key in ("gpt2", "p50k_base", "cl100k_base", "o200k_base"):
        pane.compare.set_checked(key, key in ("gpt2", "cl100k_base", "o200k_base"))
    pane.side_tabs.setCurrentIndex(COMPARE_TAB)
    qtbot.waitUntil(lambda: pane.compare.table.rowCount() == 3 and pane.compare.table.item(2, 0) is not None
                    and pane.compare.table.item(2, 0).text() == "o200k_base", timeout=WAIT_MS)
    rows = {r[0]: r for r in pane.compare.row_values()}
    for name in ("gpt2", "cl100k_base", "o200k_base"):
        n = len(get_tokenizer(name).encode(text))
        assert rows[name][1] == f"{n:,}"
        assert rows[name][2] == f"{len(text.encode()) / n:.2f}" and rows[name][3] == f"{len(text) / n:.2f}"
    assert "1.00×" in [r[4] for r in rows.values()]
    # the compact splits follow
    assert pane.compare.strips_layout.count() == 4  # three strips + the stretch
    pane.compare.set_checked("p50k_base", True)
    qtbot.waitUntil(lambda: pane.compare.table.rowCount() == 4, timeout=WAIT_MS)


def test_decode_mode_good_and_bad_ids(pane, qtbot, reporter):
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    pane.decode.ids_edit.setPlainText("[15496, 995]")
    qtbot.waitUntil(lambda: pane.decode.decoded.toPlainText() == "Hello world", timeout=WAIT_MS)
    assert [s.id for s in pane.analysis.spans] == [15496, 995]
    assert pane.decode.message.isHidden()

    bad = "15496, abc, 99999999 -7\n995 2.5"
    pane.decode.ids_edit.setPlainText(bad)
    qtbot.waitUntil(lambda: not pane.decode.message.isHidden(), timeout=WAIT_MS)
    message = pane.decode.message.text()
    assert "'abc'" in message and "'2.5'" in message and "99999999" in message and "-7" in message
    assert pane.decode.decoded.toPlainText() == "Hello world"  # the good ids still decode
    assert pane.decode.ids_edit.toPlainText() == bad  # nothing the user typed is lost
    assert "99999999" not in pane.status.text()  # told once, beside the ids (not in the status line too)

    # a partial-byte id sequence decodes truthfully
    pane.decode.ids_edit.setPlainText("8582 97 245")
    qtbot.waitUntil(lambda: pane.decode.decoded.toPlainText() == "🤗", timeout=WAIT_MS)
    assert [s.partial for s in pane.analysis.spans] == [True, True, True]
    pane.select_token(2)
    assert "'🤗'" in pane.inspector.text()
    # the text tab is untouched by decode mode
    pane.input_tabs.setCurrentIndex(TEXT_TAB)
    assert pane.decode_mode is False


# ---- train your own BPE ------------------------------------------------------------------------------------------
CORPUS = ("the cat sat on the mat. the dog sat on the log. " * 40 + "a tokenizer learns merges from text.\n") * 5


def test_bpe_panel_trains_and_result_joins_the_selector(pane, qtbot, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    pane.side_tabs.setCurrentIndex(BPE_TAB)
    pane.bpe.set_corpus_file(str(corpus))
    pane.bpe.vocab.setValue(300)
    pane.bpe.name.setText("tiny")
    with qtbot.waitSignal(pane.sig_tokenizer_saved, timeout=30_000) as saved:
        qtbot.mouseClick(pane.bpe.train_button, Qt.MouseButton.LeftButton)
    path = saved.args[0]
    assert path.endswith("tiny.json")
    assert pane.encoding.findData(path) >= 0 and pane.encoding.currentText() == "tiny (yours)"
    result = pane.bpe.last_result
    assert result.n_vocab == 300 and result.curve[0] == (256, 1.0) and result.curve[-1][0] == 299
    assert result.curve[-1][1] > 2.0  # the merges compress the text they were learned from
    xs, ys = pane.bpe.curve.getData()
    assert len(xs) == len(result.curve)
    assert "Trained" in pane.bpe.status.text()
    a = type_text(pane, qtbot, "the cat sat", "bpe:tiny")
    assert a.n_tokens <= 4
    assert path in [pane.compare.choices.item(i).data(Qt.ItemDataRole.UserRole)
                    for i in range(pane.compare.choices.count())]
    # a second training with the same name never overwrites the first
    with qtbot.waitSignal(pane.sig_tokenizer_saved, timeout=30_000) as saved2:
        pane.bpe.train()
    assert saved2.args[0].endswith("tiny-2.json")
    assert "asked" not in pane.bpe.status.text()
    # your tokenizers sort naturally: tiny, tiny-2, ..., tiny-10 (not tiny-10 before tiny-2, nor tiny-2 before tiny)
    import shutil

    shutil.copy(saved2.args[0], saved2.args[0].replace("tiny-2.json", "tiny-10.json"))
    pane.refresh_encodings()
    mine = [pane.encoding.itemText(i) for i in range(pane.encoding.count()) if "(yours)" in pane.encoding.itemText(i)]
    assert mine == ["tiny (yours)", "tiny-2 (yours)", "tiny-10 (yours)"]


def test_bpe_vocabulary_larger_than_the_corpus_allows_says_so(pane, qtbot, tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("abab abab cdcd", encoding="utf-8")
    pane.side_tabs.setCurrentIndex(BPE_TAB)
    pane.bpe.set_corpus_file(str(corpus))
    pane.bpe.vocab.setValue(30_000)
    pane.bpe.name.setText("small")
    with qtbot.waitSignal(pane.sig_tokenizer_saved, timeout=30_000):
        pane.bpe.train()
    result = pane.bpe.last_result
    assert result.n_vocab < 30_000
    assert f"30,000 asked, {result.n_vocab:,} possible: the corpus ran out of pairs" in pane.bpe.status.text()


def test_counts_say_1_token_and_lone_marks_sit_on_a_dotted_circle(pane, qtbot):
    a = type_text(pane, qtbot, "a", "gpt2")
    assert a.n_tokens == 1
    assert "<b>1</b> token ·" in pane.counts.text() and "<b>1</b> character ·" in pane.counts.text()
    pane.set_encoding("cl100k_base")
    a = type_text(pane, qtbot, "e\u0301", "cl100k_base")  # cl100k: 'e' and the combining acute apart
    labels = [label(s.bytes, False) for s in a.spans]
    assert "\u25cc\u0301" in labels


def test_bpe_cancel(pane, qtbot, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS * 4, encoding="utf-8")
    pane.bpe.set_corpus_file(str(corpus))
    pane.bpe.vocab.setValue(5000)
    pane.bpe.train()
    assert pane.bpe.training and pane.bpe.cancel_button.isEnabled()
    pane.bpe.cancel()
    qtbot.waitUntil(lambda: not pane.bpe.training, timeout=WAIT_MS)
    assert "cancelled" in pane.bpe.status.text()
    assert pane.bpe.train_button.isEnabled() and not pane.bpe.cancel_button.isEnabled()
    from app.paths import tokenizers_dir

    assert list(tokenizers_dir().iterdir()) == []


def test_bpe_cancel_while_merging(pane, qtbot, tmp_path):
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(60_000)]
    corpus = tmp_path / "random.txt"
    corpus.write_text(" ".join(words), encoding="utf-8")
    pane.bpe.set_corpus_file(str(corpus))
    pane.bpe.vocab.setValue(60_000)  # far more merges than can finish before the cancel
    pane.bpe.train()
    qtbot.waitUntil(lambda: pane.bpe.progress.maximum() > 1 and pane.bpe.progress.value() > 0, timeout=WAIT_MS)
    pane.bpe.cancel_button.click()
    qtbot.waitUntil(lambda: not pane.bpe.training, timeout=WAIT_MS)
    assert "cancelled" in pane.bpe.status.text()
    from app.paths import tokenizers_dir

    assert list(tokenizers_dir().iterdir()) == []


@pytest.mark.parametrize("content, expected", [(b"\x00\x01binary", "binary"), (b"", "empty"),
                                               (b"ok \xff\xfe", "not valid UTF-8")])
def test_bpe_bad_corpus_is_explained(pane, qtbot, tmp_path, content, expected):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(content)
    pane.bpe.set_corpus_file(str(corpus))
    pane.bpe.train()
    qtbot.waitUntil(lambda: not pane.bpe.training, timeout=WAIT_MS)
    assert expected in pane.bpe.status.text()
    assert pane.bpe.train_button.isEnabled()


def test_a_broken_saved_tokenizer_is_explained(pane, qtbot):
    from app.paths import tokenizers_dir

    broken = tokenizers_dir() / "broken.json"
    broken.write_text('{"format": "llm-playground-bpe", "version": 1}', encoding="utf-8")
    pane.refresh_encodings()
    type_text(pane, qtbot, "some text")
    assert pane.set_encoding(str(broken))
    qtbot.waitUntil(lambda: pane.analysis is None and "Could not tokenize" in pane.status.text(), timeout=WAIT_MS)
    assert "broken.json" in pane.status.text() and pane.token_view.count() == 0
    assert pane.text() == "some text"
    pane.set_encoding("gpt2")
    shown(pane, "some text", "gpt2", qtbot)


# ---- persistence -----------------------------------------------------------------------------------------------------
def test_text_and_settings_persist_across_pane_recreation(qtbot, reporter):
    first = TokenizationPane(reporter=reporter)
    qtbot.addWidget(first)
    s = app_settings()
    s.beginGroup("TokenizationPane")
    first.restore_settings(s)  # first launch: the sample text
    assert "Tokenizers" in first.text()
    first.set_text("keep me: naïve café\u00a0🤗")
    first.set_encoding("o200k_base")
    first.show_whitespace.setChecked(False)
    first.allow_special.setChecked(True)
    first.compare.set_checked("p50k_base", True)
    first.decode.ids_edit.setPlainText("1 2 3")
    first.save_settings(s)
    s.endGroup()
    s.sync()
    first.shutdown()

    second = TokenizationPane(reporter=reporter)
    qtbot.addWidget(second)
    s = app_settings()
    s.beginGroup("TokenizationPane")
    second.restore_settings(s)
    s.endGroup()
    try:
        assert second.text() == "keep me: naïve café\u00a0🤗"  # no-break space kept
        assert second.encoding_key() == "o200k_base"
        assert not second.show_whitespace.isChecked() and second.allow_special.isChecked()
        assert "p50k_base" in second.compare.checked()
        assert second.decode.ids_edit.toPlainText() == "1 2 3"
        shown(second, "keep me: naïve café\u00a0🤗", "o200k_base", qtbot)
    finally:
        second.shutdown()


# ---- pure helpers ---------------------------------------------------------------------------------------------------
def test_parse_ids():
    gpt2 = get_tokenizer("gpt2")
    assert parse_ids("[1, 2, 3]") == ([1, 2, 3], "")
    assert parse_ids("1,2\n3  4;5", gpt2) == ([1, 2, 3, 4, 5], "")
    assert parse_ids("", gpt2) == ([], "")
    ids, problem = parse_ids("[1, \"x\", 2.5, 50257]", gpt2)
    assert ids == [1] and "'x'" in problem and "'2.5'" in problem and "50257" in problem and "0..50256" in problem
    cl100k = get_tokenizer("cl100k_base")
    hole = next(i for i in range(cl100k.n_vocab - 1, 0, -1) if not _is_token(cl100k, i))
    ids, problem = parse_ids(f"100 {hole}", cl100k)
    assert ids == [100] and str(hole) in problem


def _is_token(tokenizer, i):
    try:
        tokenizer.token_bytes(i)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("text", ["Hello world", "🤗 é 日本語", "a\r\nb\tc  ", "👩‍💻 e\u0301", ""])
@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_spans_from_ids_match_the_engine(name, text):
    tokenizer = get_tokenizer(name)
    decoded, spans = spans_from_ids(tokenizer, tokenizer.encode(text))
    assert decoded == text
    expected = tokenizer.spans(text)
    assert [(s.char_start, s.char_end, s.partial, s.bytes) for s in spans] == \
           [(s.char_start, s.char_end, s.partial, s.bytes) for s in expected]


def test_analyse_sanitises_lone_surrogates_and_limits_spans():
    gpt2 = get_tokenizer("gpt2")
    a = analyse(gpt2, "a\ud800b")
    assert a.n_surrogates == 1 and a.text == "a\ufffdb" and a.n_chars == 3 and a.n_bytes == 5
    a = analyse(gpt2, "word" + " word" * 99, max_tokens=10)
    assert len(a.spans) == 10 and a.n_tokens == 100 and a.truncated
    a = analyse(gpt2, "word" + " word" * 99, max_bytes=12)
    assert sum(len(s.bytes) for s in a.spans) <= 12 and len(a.spans) >= 2
    assert label(b"\r\n", True) == "␍↵\n" and label(b"\t", False) == "    "


def test_keyboard_selection_scrolls_the_token_into_view(pane, qtbot):
    text = "line\n" * 400
    type_text(pane, qtbot, text)
    view = pane.token_view
    for index in (len(pane.analysis.spans) // 2, len(pane.analysis.spans) - 1, 300):
        pane.select_token(index)
        rect = view.token_rect(index)
        assert view.verticalScrollBar().value() > 0
        assert 0 <= rect.top() and rect.bottom() <= view.viewport().height()
    pane.select_token(0)
    assert view.verticalScrollBar().value() == 0


# ---- regressions found in the polish pass ------------------------------------------------------------------------
def _shown_text(label) -> str:
    """What a rich-text QLabel displays, as plain text."""
    from PySide6.QtGui import QTextDocument

    assert label.textFormat() == Qt.TextFormat.RichText
    doc = QTextDocument()
    doc.setHtml(label.text())
    return doc.toPlainText()


def test_status_line_stays_inside_the_window_scroll_area(qtbot, reporter):
    """The window puts the pane in a QScrollArea; the splitters' preferred heights pushed the status line (the
    "showing the first N tokens" note, errors) below the window's edge."""
    from app.main_window import MainWindow

    window = MainWindow(reporter=reporter)
    qtbot.addWidget(window)
    window.resize(1280, 820)
    window.show()
    pane = window.tokenization
    viewport = window.tabs.currentWidget().viewport()
    try:
        for tab in (TEXT_TAB, DECODE_TAB):
            pane.input_tabs.setCurrentIndex(tab)
            qtbot.wait(50)
            assert pane.height() <= viewport.height()
            assert pane.status.geometry().bottom() < viewport.height()
    finally:
        window.close()


def test_bpe_error_message_shows_quotes_not_html_entities(pane, qtbot):
    pane.bpe.name.setText("bad name!")
    pane.bpe.train()
    qtbot.waitUntil(lambda: not pane.bpe.training, timeout=WAIT_MS)
    shown_text = _shown_text(pane.bpe.status)
    assert "'bad name!'" in shown_text and "&#x27;" not in shown_text


def test_bad_ids_with_angle_brackets_are_reported_once(pane, qtbot):
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    pane.decode.ids_edit.setPlainText("15496 <abc>")
    qtbot.waitUntil(lambda: not pane.decode.message.isHidden(), timeout=WAIT_MS)
    assert "'<abc>'" in pane.decode.message.text()
    assert "<abc>" not in _shown_text(pane.status)  # reported once


def test_decode_explains_replacement_characters(pane, qtbot):
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    pane.decode.ids_edit.setPlainText("15496 8582 97")  # "Hello" + the first two of 🤗's three pieces
    qtbot.waitUntil(lambda: pane.decode.decoded.toPlainText() == "Hello\ufffd", timeout=WAIT_MS)
    assert not pane.decode.note.isHidden() and "1 byte sequence" in pane.decode.note.text()
    pane.decode.ids_edit.setPlainText("8582 97 245")  # all three pieces: a whole character, nothing to explain
    qtbot.waitUntil(lambda: pane.decode.decoded.toPlainText() == "🤗", timeout=WAIT_MS)
    assert pane.decode.note.isHidden()


def test_compare_heading_says_decode_mode_compares_the_text_tab(pane, qtbot):
    assert "same text" in pane.compare.heading.text()
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    assert "Text tab" in pane.compare.heading.text()
    pane.input_tabs.setCurrentIndex(TEXT_TAB)
    assert "same text" in pane.compare.heading.text()
