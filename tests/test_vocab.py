"""Vocabularies and .dict files: reversible escaping, LSTMVis-style read-back, load_vocab formats and errors."""

import json
import os
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from stream_export.errors import VocabError
from stream_export.vocab import escape, load_vocab, read_dict_like_lstmvis, unescape, write_dict

# Characters that break naive .dict writing or naive escaping: whitespace LSTMVis splits on, line breaks
# Python's splitlines() knows, the escape character itself, text that looks like an escape, non-BMP.
TRICKY = " \t\n\r\x0b\x0c\x1c\x85\u00a0\u1680\u2028\u2029\u3000\\uU0aF\u00e9\u65e5\U0001F600\U00010000"
texts = st.one_of(st.text(), st.text(alphabet=st.sampled_from(TRICKY)))

HAND_TOKENS = {
    0: "<pad>",
    1: "a b",
    2: "a\tb",
    3: "\u00a0",
    4: "x\u2028y",
    5: "\u3000",
    6: "\\",
    7: "naïve",
    8: "日本語",
    9: " ",
    10: "\\u0020",  # looks like an escape already
    11: "\r\n",
    12: "\U0001F600",
    40: "Straße",  # ids need not be contiguous
}


@given(texts)
def test_unescape_inverts_escape(text):
    assert unescape(escape(text)) == text


@given(texts)
def test_escaped_token_is_one_whitespace_free_field(text):
    escaped = escape(text)
    assert ("<" + escaped + ">").split() == ["<" + escaped + ">"]


def test_escape_by_hand():
    assert escape("a b") == "a\\u0020b"
    assert escape("\\") == "\\\\"
    assert escape("naïve") == "naïve"


def roundtrip(entries, folder):
    path = os.path.join(folder, "words.dict")
    write_dict(path, entries)
    return {i: unescape(token) for i, token in read_dict_like_lstmvis(path).items()}


def test_dict_roundtrip_of_hand_picked_tokens(tmp_path):
    assert roundtrip(HAND_TOKENS, tmp_path) == HAND_TOKENS


def test_dict_is_utf8_one_line_per_id(tmp_path):
    write_dict(str(tmp_path / "words.dict"), HAND_TOKENS)
    lines = (tmp_path / "words.dict").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert len(lines[:-1]) == len(HAND_TOKENS)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 10**6), texts.filter(len), max_size=20))
def test_dict_roundtrip_of_any_tokens(entries):
    with tempfile.TemporaryDirectory() as folder:
        assert roundtrip(entries, folder) == entries


# load_vocab -------------------------------------------------------------------------------------------

def test_text_vocab_line_i_is_id_i_with_crlf(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("<pad>\r\nthe\r\na\u2028b\r\nx\x85y\u2029z\r\nnaïve\r\n".encode("utf-8"))
    assert load_vocab(str(path)) == {0: "<pad>", 1: "the", 2: "a\u2028b", 3: "x\x85y\u2029z", 4: "naïve"}


def test_text_vocab_without_final_newline(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("a\nb c\n\u3000".encode("utf-8"))
    assert load_vocab(str(path)) == {0: "a", 1: "b c", 2: "\u3000"}


def test_text_vocab_whose_first_token_is_a_brace(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("{\n}\nthe\n", encoding="utf-8")
    assert load_vocab(str(path)) == {0: "{", 1: "}", 2: "the"}


def test_json_token_to_id_mapping(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"<pad>": 0, "the": 1, "a b": 2, "x\u2028y": 5}), encoding="utf-8")
    assert load_vocab(str(path)) == {0: "<pad>", 1: "the", 2: "a b", 5: "x\u2028y"}


def test_keras_tokenizer_json(tmp_path):
    # The shape of keras_preprocessing's Tokenizer.to_json(): the inner dicts are themselves JSON strings.
    word_index = {"<oov>": 1, "the": 2, "naïve": 3}
    config = {
        "num_words": None, "filters": "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n", "lower": True, "split": " ",
        "char_level": False, "oov_token": "<oov>", "document_count": 2,
        "word_counts": json.dumps({"the": 3, "naïve": 1}),
        "word_docs": json.dumps({"the": 2, "naïve": 1}),
        "index_docs": json.dumps({"2": 2, "3": 1}),
        "index_word": json.dumps({str(i): w for w, i in word_index.items()}),
        "word_index": json.dumps(word_index),
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"class_name": "Tokenizer", "config": config}), encoding="utf-8")
    assert load_vocab(str(path)) == {1: "<oov>", 2: "the", 3: "naïve"}


def load_error(path) -> str:
    with pytest.raises(VocabError) as info:
        load_vocab(str(path))
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("content", [b"a\n\nb\n", b"a\r\n\r\nb\r\n"], ids=["LF", "CRLF"])
def test_empty_line_names_line_and_id(tmp_path, content):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    message = load_error(path)
    assert "line 2" in message
    assert "id 1" in message


def test_json_empty_token_names_the_id(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"a": 0, "": 3}), encoding="utf-8")
    assert "id 3" in load_error(path)


def test_json_id_with_two_tokens_names_id_and_both_tokens(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"cat": 4, "dog": 4}), encoding="utf-8")
    message = load_error(path)
    assert "id 4" in message
    assert "'cat'" in message
    assert "'dog'" in message


def test_non_utf8_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("café\n".encode("latin-1"))
    assert "UTF-8" in load_error(path)


def test_missing_file(tmp_path):
    assert "No such file" in load_error(tmp_path / "no-such-vocab.txt")
