"""Fit-and-finish items of the Tokenization pane: the inspector follows the clicked token across edits, ids copy as a
list, Compare fits many encodings and highlights where they split differently, a virama cannot take the "<" of the
hex bytes after it."""

import pytest
from PySide6.QtGui import QGuiApplication

from app.tokenization.analysis import analyse, follow_token
from app.tokenization.compare import split_differences, split_html
from app.tokenization.encodings import Encoding
from app.tokenization.pane import COMPARE_TAB, DECODE_TAB
from app.tokentext import isolated_html, shaping_runs
from engine.tokenizers import get_tokenizer

WAIT_MS = 15_000


@pytest.fixture
def pane(tokenization_pane):
    return tokenization_pane


def type_text(pane, qtbot, text):
    pane.set_text(text)
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.text == text, timeout=WAIT_MS)
    return pane.analysis


# ---- the inspector follows the token, not its index ---------------------------------------------------------------
def test_inspector_follows_the_clicked_token_when_text_is_added_before_it(pane, qtbot):
    type_text(pane, qtbot, "Hello world again")
    pane.select_token(1)  # " world"
    assert "' world'" in pane.inspector.text()
    a = type_text(pane, qtbot, "Oh no, Hello world again")
    index = pane.token_view.selected
    assert a.spans[index].bytes == b" world" and a.spans[index].byte_start == 12
    assert "' world'" in pane.inspector.text() and pane.ids_view.selected == index


def test_inspector_clears_when_the_edit_changes_the_token(pane, qtbot):
    type_text(pane, qtbot, "Hello world again")
    pane.select_token(1)
    type_text(pane, qtbot, "Hello worldly again")  # " world" became " worldly": not the same token
    assert pane.token_view.selected == -1 and pane.inspector.text() == ""
    pane.select_token(0)
    type_text(pane, qtbot, "Hello worldly again!")
    assert pane.token_view.selected == 0 and "'Hello'" in pane.inspector.text()  # an edit after it: kept
    pane.set_encoding("cl100k_base")  # another vocabulary: "Hello" is another token (id 9906, not 15496)
    qtbot.waitUntil(lambda: pane.analysis.encoding == "cl100k_base", timeout=WAIT_MS)
    assert pane.token_view.selected == -1 and pane.inspector.text() == ""


def test_follow_token_with_edits_after_and_inside():
    enc = get_tokenizer("gpt2")
    old = "one two three"
    spans = enc.spans(old)
    for new, k, expect in [("one two three four", 1, 1), ("zero one two three", 2, 3), ("one tw three", 1, -1),
                           ("one two three", 2, 2)]:
        assert follow_token(old.encode(), new.encode(), spans[k], enc.spans(new)) == expect, new


# ---- copy ids -----------------------------------------------------------------------------------------------------
def test_copy_ids_as_a_list_of_the_whole_text(pane, qtbot):
    text = "word " * 20_000  # more tokens than the views draw: the copy has them all
    a = type_text(pane, qtbot, text)
    assert a.truncated
    copied = pane.copy_ids()
    assert copied == QGuiApplication.clipboard().text()
    assert eval(copied) == get_tokenizer("gpt2").encode(text)  # noqa: S307 - a list of ints we made
    assert f"Copied {a.n_tokens:,} ids" in pane.status.text()

    pane.decode.ids_edit.setPlainText("15496 995")
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.text == "Hello world", timeout=WAIT_MS)
    pane.copy_ids_button.click()
    assert QGuiApplication.clipboard().text() == "[15496, 995]"


# ---- Compare ------------------------------------------------------------------------------------------------------
def test_split_differences_marks_only_tokens_not_shared():
    text = "Hello   world 1234567 日本"
    analyses = [analyse(get_tokenizer(e), text) for e in ("gpt2", "cl100k_base", "o200k_base")]
    differs, compared = split_differences(analyses + ["broken tokenizer"])
    assert differs[3] is None and compared == len(text.encode())
    shared = set.intersection(*({(s.byte_start, s.byte_end) for s in a.spans} for a in analyses))
    for a, d in zip(analyses, differs):
        assert {s.index for s in a.spans if (s.byte_start, s.byte_end) not in shared} == d
    assert 0 not in differs[0]  # "Hello" is the same token in all three
    assert split_differences(analyses[:1]) == ([None], 0)  # one encoding: nothing to compare


def test_split_html_colours_differences_and_greys_agreement():
    a = analyse(get_tokenizer("gpt2"), " hello 123456")
    html = split_html(a, True, differs={1}, compared=13)
    assert html.count("#e6e6e6") + html.count("#d2d2d2") == 2  # " hello" and "456" agree
    assert "color:gray;" not in html.split("…")[0]
    assert "color:gray;" in split_html(a, True, differs={1}, compared=6)  # past the compared bytes: faint


def test_compare_fits_many_encodings_without_a_horizontal_scrollbar(pane, qtbot):
    many = [Encoding(n, n) for n in ("gpt2", "p50k_base", "cl100k_base", "o200k_base")]
    many += [Encoding(f"some-org/a-rather-long-model-name-{k} (model)", f"/nowhere/{k}") for k in range(4)]
    pane.compare.set_encodings(many, checked=["gpt2", "p50k_base", "cl100k_base", "o200k_base"])
    pane.resize(900, 600)
    pane.side_tabs.setCurrentIndex(COMPARE_TAB)
    pane.main_split.setSizes([500, 380])
    qtbot.wait(50)
    choices, table = pane.compare.choices, pane.compare.table
    assert choices.horizontalScrollBar().maximum() == 0  # the names wrap onto lines instead
    for i in range(choices.count()):
        rect = choices.visualItemRect(choices.item(i))
        assert rect.right() <= choices.viewport().width()
    type_text(pane, qtbot, "Compare me, please: 1234567")
    qtbot.waitUntil(lambda: len(pane.compare.row_values()) == 4, timeout=WAIT_MS)
    assert table.horizontalScrollBar().maximum() == 0 or not table.horizontalScrollBar().isVisible()
    header = table.horizontalHeader()
    assert sum(header.sectionSize(c) for c in range(table.columnCount())) <= table.viewport().width()
    assert "split differently" in pane.compare.legend.text()


# ---- a virama at the start of a label ------------------------------------------------------------------------------
def test_text_and_hex_bytes_are_shaped_apart():
    spans = get_tokenizer("cl100k_base").spans("नमस्ते")
    labels = [span.bytes for span in spans]
    with_virama = next(b for b in labels if b.startswith("\u094d".encode()))  # ् then the first bytes of ते
    from app.tokenization.analysis import label

    shown = label(with_virama, True)
    runs = shaping_runs(shown)
    assert runs[0] == "\u25cc\u094d" and runs[1].startswith("<E0>")  # drawn as separate runs
    assert "<span style='color:#a0213a'>&lt;E0&gt;" in isolated_html(shown)


# ---- long pastes go in a piece at a time --------------------------------------------------------------------------
def paste(edit, text):
    # setText, not setMimeData(QMimeData()): a mime object made in Python is owned by the clipboard, which Qt deletes in
    # its exit handlers after Python is gone, and the wrapper's destructor then crashed the test process (exit 139)
    QGuiApplication.clipboard().setText(text)
    edit.setFocus()
    edit.paste()


def test_a_long_paste_goes_in_pieces_as_one_undo_step(pane, qtbot):
    from app.tokenization.editor import PIECE_CHARS

    type_text(pane, qtbot, "start ")
    pane.editor.moveCursor(pane.editor.textCursor().MoveOperation.End)
    text = "line of text, café 日本 🤗\r\n" * (4 * PIECE_CHARS // 20)
    progress = []
    pane.editor.sig_insert_progress.connect(lambda done, total: progress.append((done, total)))
    paste(pane.editor, text)
    assert pane.editor.inserting and pane.editor.isReadOnly()  # returned before the whole text went in
    expected = "start " + text.replace("\r\n", "\n")
    qtbot.waitUntil(lambda: not pane.editor.inserting, timeout=WAIT_MS)
    assert len(progress) > 3 and progress[-1] == (len(text), len(text))
    assert pane.text() == expected and not pane.editor.isReadOnly()
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.text == expected, timeout=WAIT_MS)
    pane.editor.undo()  # the whole paste is one step
    assert pane.text() == "start "


def test_pasted_ids_are_broken_into_lines_and_decoded(pane, qtbot):
    ids = [1000 + (i * 7919) % 900 for i in range(30_000)]  # plain words: the decoded text shows as it is
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    paste(pane.decode.ids_edit, ", ".join(map(str, ids)))
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.n_tokens == len(ids), timeout=WAIT_MS)
    edit = pane.decode.ids_edit
    assert edit.blockCount() > 100 and max(len(line) for line in edit.toPlainText().split("\n")) < 300
    assert pane.analysis.ids.tolist() == ids
    decoded = get_tokenizer("gpt2").decode(ids)
    from app.tokenization.decode_panel import SHOWN_CHARS

    shown = pane.decode.decoded.document()  # the start: a megabyte in one line would freeze Qt's layout
    qtbot.waitUntil(lambda: shown.toRawText().replace("\u2029", "\n") == decoded[:SHOWN_CHARS], timeout=WAIT_MS)
    assert pane.decode.text == decoded and f"first {SHOWN_CHARS:,} of {len(decoded):,}" in pane.decode.note.text()
    assert pane.decode.decoded.isReadOnly()


# ---- BPE training in a process of its own -------------------------------------------------------------------------
def test_bpe_training_runs_in_its_own_process_and_its_errors_come_back(tmp_path):
    import os
    import subprocess
    import sys

    from app.tokenization.bpe_training import RemoteTraceback, train_in_process
    from engine.corpora import CorpusError

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200)
    seen = []
    result = train_in_process(str(corpus), 300, "tiny", lambda d, t: seen.append((d, t)), lambda: False)
    assert os.path.isfile(result.path) and 257 < result.n_vocab <= result.asked == 300 and seen[-1][0] == seen[-1][1]
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01")
    with pytest.raises(CorpusError, match="binary") as err:
        train_in_process(str(tmp_path / "bin.txt"), 300, "x", lambda d, t: None, lambda: False)
    assert isinstance(err.value.__cause__, RemoteTraceback) and "decode_text" in str(err.value.__cause__)
    code = "import sys, app.tokenization.bpe_training; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "False"  # the training process imports no Qt


# ---- a long paste of ids stalls the window once, not twice (issue 10) ------------------------------------------------
def test_a_long_paste_is_inserting_from_its_first_piece_and_drawn_once(pane, qtbot, monkeypatch):
    pane.input_tabs.setCurrentIndex(DECODE_TAB)
    qtbot.waitUntil(lambda: pane.analysis is not None, timeout=WAIT_MS)
    edit = pane.decode.ids_edit
    inserting = []
    edit.textChanged.connect(lambda: inserting.append(edit.inserting))
    drawn = []
    render = pane.render
    monkeypatch.setattr(pane, "render", lambda **kw: (drawn.append(pane.analysis and pane.analysis.n_tokens),
                                                     render(**kw)))
    ids = list(range(1000, 41_000))  # about ten pieces
    paste(edit, " ".join(map(str, ids)))
    qtbot.waitUntil(lambda: pane.analysis is not None and pane.analysis.n_tokens == len(ids), timeout=WAIT_MS)
    # the first piece's change too: an edit seen as typing started a refresh that decoded a part of the paste
    assert len(inserting) > 5 and all(inserting)
    assert [n for n in drawn if n] == [len(ids)]
    # a long result is drawn in two turns: the ids view, the counts and the status follow the token view
    shown = pane.analysis.spans
    qtbot.waitUntil(lambda: pane.ids_view.count() == len(shown), timeout=WAIT_MS)
    assert pane.ids_view.label(len(shown) - 1) == str(shown[-1].id) and f"{len(ids):,}" in pane.counts.text()


def test_the_scroll_bar_appearing_does_not_lay_the_tokens_out_again(qtbot):
    from app.tokenization.token_view import TokenView

    view = TokenView()
    qtbot.addWidget(view)
    view.resize(400, 200)
    view.show()
    qtbot.waitExposed(view)
    view.set_tokens(["short"])
    qtbot.wait(20)
    assert not view.verticalScrollBar().isVisible()
    labels = [f"token{i}" for i in range(3000)]
    view.set_tokens(labels)
    last = view.token_rect(len(labels) - 1)
    qtbot.waitUntil(lambda: view.verticalScrollBar().isVisible(), timeout=WAIT_MS)
    qtbot.wait(20)
    assert view.token_rect(len(labels) - 1) == last  # wrapped beside the bar from the start: no second layout
    assert all(view.token_rect(i).right() <= view.viewport().width() for i in range(0, len(labels), 7))
