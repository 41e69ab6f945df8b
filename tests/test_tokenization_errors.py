"""The Tokenization pane's error contract: a user's mistake is a UserError (shown in one line), anything else a bug
(raised, so the pane reports it). A plain ValueError from deep inside a library must never pass as the user's."""

import pytest

from app.tokenization.analysis import parse_ids
from app.tokenization.encodings import folder_encoding
from app.tokenization.inspector import token_fields
from engine.errors import UserError, is_user_error
from engine.tokenizers import CharTokenizer, TokenizerError, get_tokenizer, tokenizer_from_dict


class Refusing:
    """A tokenizer stand-in whose lookups raise the exception it is given."""

    name, n_vocab = "refusing", 10

    def __init__(self, exc):
        self.exc = exc

    def merge_info(self, id):
        raise self.exc

    def token_bytes(self, id):
        raise self.exc


def test_folder_refusals_are_user_errors_with_their_messages(tmp_path):
    with pytest.raises(UserError) as nowhere:
        folder_encoding(str(tmp_path / "nowhere"))
    assert str(nowhere.value) == f"{tmp_path / 'nowhere'} is not a folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as empty:
        folder_encoding(str(tmp_path / "empty"))
    assert str(empty.value) == ("empty has no tokenizer.json: pick a Hugging Face model folder (config.json, weights "
                                "and tokenizer.json)")


def test_inspector_shows_a_refusal_and_raises_a_bug():
    text = "hi there"
    spans = get_tokenizer("gpt2").spans(text)
    rows = dict(token_fields(Refusing(TokenizerError("no merge for that id")), text, spans, 0))
    assert rows["Made by"] == "no merge for that id"
    with pytest.raises(ValueError, match="inside numpy") as bug:
        token_fields(Refusing(ValueError("inside numpy")), text, spans, 0)
    assert not is_user_error(bug.value)


def test_parse_ids_names_bad_ids_and_raises_a_bug():
    ids, problem = parse_ids("1 2", Refusing(TokenizerError("not a token")))
    assert ids == [] and "not in the refusing vocabulary" in problem
    with pytest.raises(ValueError, match="inside numpy"):
        parse_ids("1 2", Refusing(ValueError("inside numpy")))


def test_parse_ids_survives_brackets_nested_past_the_json_parser():
    assert parse_ids("[" * 5000 + "1, 2" + "]" * 5000) == ([1, 2], "")


def test_tokenizer_files_wrap_only_the_tokenizers_own_refusals(monkeypatch):
    saved = CharTokenizer.from_text("ab").to_dict()
    with pytest.raises(TokenizerError, match="^saved.json: unknown must be one of"):
        tokenizer_from_dict({**saved, "unknown": "bogus"}, "saved.json")

    def broken(self, *args, **kwargs):
        raise ValueError("inside numpy")

    monkeypatch.setattr(CharTokenizer, "__init__", broken)
    with pytest.raises(ValueError, match="^inside numpy$") as bug:
        tokenizer_from_dict(saved, "saved.json")
    assert not is_user_error(bug.value)
