"""Vocabularies and LSTMVis .dict files: load token<->id maps, escape tokens so LSTMVis reads them back.

LSTMVis parses each .dict line with Python's `str.split()` and keeps only lines with exactly two fields,
so a token holding any whitespace would vanish. Tokens are therefore written with this reversible escape:
a backslash becomes `\\\\`, and every character for which `str.isspace()` is true becomes `\\uXXXX`
(four lowercase hex digits; `\\UXXXXXXXX` above U+FFFF). `unescape` undoes it.
"""

from __future__ import annotations

import json
import os

from stream_export.errors import VocabError

PAD_TOKEN = "<pad>"


def escape(token: str) -> str:
    out = []
    for ch in token:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isspace():
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
        elif text[i + 1] == "\\":
            out.append("\\")
            i += 2
        else:
            width = 4 if text[i + 1] == "u" else 8
            out.append(chr(int(text[i + 2:i + 2 + width], 16)))
            i += 2 + width
    return "".join(out)


def load_vocab(path: str) -> dict[int, str]:
    """Read a vocabulary: a text file with one token per line (line i is id i), or JSON: a token->id
    object, or a Keras Tokenizer's `to_json()` (its config.word_index)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as e:
        raise VocabError(f"vocabulary {path} cannot be read: {e}") from e
    except UnicodeDecodeError as e:
        raise VocabError(f"vocabulary {path} is not UTF-8 text ({e}); re-save it as UTF-8") from e
    if path.endswith(".json"):
        return _from_json(path, text)
    if text.lstrip().startswith("{"):  # JSON saved under another name, or a text vocab starting with "{"
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            return _from_json(path, text)
    # splitlines() would also split on U+2028 and friends, which may be part of a token.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {}
    for i, line in enumerate(lines):
        token = line[:-1] if line.endswith("\r") else line
        if token == "":
            raise VocabError(f"vocabulary {path}, line {i + 1} (id {i}) is empty: every id needs a "
                             "non-empty token")
        vocab[i] = token
    return vocab


def _from_json(path, text) -> dict[int, str]:
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "config" in data:  # Tokenizer.to_json()
            data = data["config"]["word_index"]
            data = json.loads(data) if isinstance(data, str) else data
    except (ValueError, KeyError, TypeError) as e:
        raise VocabError(f"vocabulary {path} is not a token->id JSON object nor a Keras Tokenizer "
                         f"JSON ({e})") from e
    if not isinstance(data, dict):
        raise VocabError(f"vocabulary {path} must be a JSON object mapping token to id")
    vocab = {}
    for token, i in data.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise VocabError(f"vocabulary {path}: token {token!r} has id {i!r}; ids must be "
                             "non-negative integers")
        if token == "":
            raise VocabError(f"vocabulary {path}: id {i} has an empty token")
        if i in vocab and vocab[i] != token:
            raise VocabError(f"vocabulary {path}: id {i} is given two tokens, {vocab[i]!r} and "
                             f"{token!r}; keep one")
        vocab[i] = token
    return vocab


def write_dict(path: str, entries: dict[int, str]):
    """Write an LSTMVis .dict (UTF-8, `token id` per line, escaped tokens) atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for i in sorted(entries):
            f.write(f"{escape(entries[i])} {i}\n")
    os.replace(tmp, path)


def read_dict_like_lstmvis(path: str) -> dict[int, str]:
    """Parse a .dict exactly the way the LSTMVis server does (tokens still escaped)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) == 2:
                out[int(fields[1])] = fields[0]
    return out
