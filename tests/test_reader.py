"""Parquet shards -> padded batches: input resolution, footer checks, batching from any document, row errors."""

import os
import re
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st
from keras.utils import pad_sequences

from stream_export.errors import InputError
from stream_export.reader import Columns, iter_batches, open_shards, resolve_inputs

ALL_COLUMNS = Columns(tokens="tokens", label="label", doc_id="doc_id")


def write_shard(path, docs, *, labels=None, ids=None, token_type=pa.int64(), row_group_size=None):
    data = {"tokens": pa.array(docs, pa.list_(token_type))}
    if labels is not None:
        data["label"] = pa.array(labels)
    if ids is not None:
        data["doc_id"] = pa.array(ids, pa.string())
    pq.write_table(pa.table(data), path, row_group_size=row_group_size)
    return str(path)


def read_all(paths, columns, max_len, batch_size, **options):
    return list(iter_batches(open_shards(paths, columns), columns, max_len, batch_size, **options))


def error_message(call) -> str:
    with pytest.raises(InputError) as info:
        call()
    return str(info.value)


def check_batches(batches, docs, start_doc, batch_size, max_len, padding="pre", truncating="pre", value=0,
                  labels=None, ids=None):
    """The batches hold docs[start_doc:], padded like pad_sequences, in batches of batch_size."""
    starts = list(range(start_doc, len(docs), batch_size))
    assert [b.first_doc for b in batches] == starts
    assert [len(b.tokens) for b in batches] == [min(batch_size, len(docs) - s) for s in starts]
    if not batches:
        return
    expected = pad_sequences(docs[start_doc:], maxlen=max_len, padding=padding, truncating=truncating,
                             value=value, dtype="int32")
    np.testing.assert_array_equal(np.concatenate([b.tokens for b in batches]), expected)
    assert np.concatenate([b.lengths for b in batches]).tolist() == [len(d) for d in docs[start_doc:]]
    if labels is not None:
        assert np.concatenate([b.labels for b in batches]).tolist() == labels[start_doc:]
    if ids is not None:
        assert np.concatenate([b.doc_ids for b in batches]).tolist() == ids[start_doc:]


# resolve_inputs -----------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """data/b.parquet, data/a.parquet, data/sub/c.parquet, data/notes.txt"""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ["b.parquet", "a.parquet", "sub/c.parquet", "notes.txt"]:
        (data / name).write_bytes(b"")
    return data


def test_resolve_a_file(tree):
    assert resolve_inputs([str(tree / "notes.txt")]) == [str(tree / "notes.txt")]


def test_resolve_a_directory_recursively(tree):
    expected = sorted([str(tree / "a.parquet"), str(tree / "b.parquet"), str(tree / "sub" / "c.parquet")])
    assert resolve_inputs([str(tree)]) == expected


def test_resolve_globs(tree):
    assert resolve_inputs([str(tree / "*.parquet")]) == [str(tree / "a.parquet"), str(tree / "b.parquet")]
    assert resolve_inputs([str(tree / "**" / "c.*")]) == [str(tree / "sub" / "c.parquet")]


def test_resolve_removes_duplicates_and_sorts(tree):
    patterns = [str(tree / "sub" / "c.parquet"), str(tree), str(tree / "b.parquet"), str(tree / "*.parquet")]
    expected = sorted([str(tree / "a.parquet"), str(tree / "b.parquet"), str(tree / "sub" / "c.parquet")])
    assert resolve_inputs(patterns) == expected


def test_resolve_relative_paths_to_absolute(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert resolve_inputs(["b.parquet", "./b.parquet"]) == [str(tree / "b.parquet")]


def test_resolve_pattern_matching_nothing(tree):
    pattern = str(tree / "*.parket")
    message = error_message(lambda: resolve_inputs([str(tree), pattern]))
    assert pattern in message


def test_resolve_directory_without_parquet(tmp_path):
    (tmp_path / "empty").mkdir()
    assert str(tmp_path / "empty") in error_message(lambda: resolve_inputs([str(tmp_path / "empty")]))


# open_shards --------------------------------------------------------------------------------------------

def test_row_group_layout_from_footers(tmp_path):
    a = write_shard(tmp_path / "a.parquet", [[1]] * 7, row_group_size=3)
    b = write_shard(tmp_path / "b.parquet", [[1, 2], []], row_group_size=5)
    shards = open_shards([a, b], Columns())
    assert [(s.path, s.row_groups, s.num_rows) for s in shards] == [(a, (3, 3, 1), 7), (b, (2,), 2)]


def test_missing_column_lists_existing_columns(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1]], labels=[0], ids=["d0"])
    message = error_message(lambda: open_shards([path], Columns(tokens="text")))
    assert path in message
    assert "text" in message
    for existing in ["tokens", "label", "doc_id"]:
        assert existing in message


@pytest.mark.parametrize("tokens", [pa.array([[1.0, 2.5]], pa.list_(pa.float32())), pa.array(["the cat"]),
                                    pa.array([["the", "cat"]]), pa.array([3])],
                         ids=["list of floats", "string", "list of strings", "plain integer"])
def test_token_column_must_be_list_of_integers(tmp_path, tokens):
    path = str(tmp_path / "a.parquet")
    pq.write_table(pa.table({"tokens": tokens}), path)
    message = error_message(lambda: open_shards([path], Columns()))
    assert path in message
    assert "'tokens'" in message


def test_string_labels_need_label_names(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1], [2]], labels=["neg", "pos"])
    message = error_message(lambda: open_shards([path], Columns(label="label")))
    assert path in message
    assert "'label'" in message
    assert open_shards([path], Columns(label="label", label_names=("neg", "pos")))[0].num_rows == 2


def test_float_labels_rejected(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1]], labels=[0.5])
    message = error_message(lambda: open_shards([path], Columns(label="label")))
    assert path in message
    assert "'label'" in message


def test_differing_schemas_name_both_shards(tmp_path):
    a = write_shard(tmp_path / "a.parquet", [[1]], labels=[0])
    b = write_shard(tmp_path / "b.parquet", [[1]], labels=["x"])
    message = error_message(lambda: open_shards([a, b], Columns(label="label", label_names=("x",))))
    assert a in message and b in message
    assert "column 'label' as strings" in message and "as integers" in message


def test_integer_widths_may_differ_between_shards(tmp_path):
    a = write_shard(tmp_path / "a.parquet", [[1, 2], [3]], token_type=pa.int64())
    b = write_shard(tmp_path / "b.parquet", [[300, 4, 5]], token_type=pa.int16())
    shards = open_shards([a, b], Columns())
    (batch,) = iter_batches(shards, Columns(), 3, 8)
    np.testing.assert_array_equal(batch.tokens, [[0, 1, 2], [0, 0, 3], [300, 4, 5]])


def test_only_chosen_columns_must_agree(tmp_path):
    a = write_shard(tmp_path / "a.parquet", [[1]], labels=[0])
    b = write_shard(tmp_path / "b.parquet", [[1]], labels=["x"])
    assert [s.num_rows for s in open_shards([a, b], Columns())] == [1, 1]


def test_non_parquet_file_rejected(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_text("tokens\n1 2 3\n")
    assert str(path) in error_message(lambda: open_shards([str(path)], Columns()))


def test_files_without_rows_are_accepted_and_contribute_nothing(tmp_path):
    table = pa.table({"tokens": pa.array([[5, 6]], pa.list_(pa.int64()))})
    empty_group = str(tmp_path / "b.parquet")
    pq.write_table(table.slice(0, 0), empty_group)
    groups = pq.ParquetFile(empty_group).metadata.num_row_groups  # pyarrow 26 writes one group of 0 rows
    no_groups = str(tmp_path / "c.parquet")
    pq.ParquetWriter(no_groups, table.schema).close()
    assert pq.ParquetFile(no_groups).metadata.num_row_groups == 0

    a = write_shard(tmp_path / "a.parquet", [[1], [2, 3]])
    d = write_shard(tmp_path / "d.parquet", [[4], [], [7, 8, 9]], row_group_size=2)
    paths = [a, empty_group, no_groups, d]
    shards = open_shards(paths, Columns())
    assert [s.row_groups for s in shards] == [(2,), (0,) * groups, (), (2, 1)]
    docs = [[1], [2, 3], [4], [], [7, 8, 9]]
    for start_doc in range(len(docs) + 1):
        check_batches(read_all(paths, Columns(), 2, 2, start_doc=start_doc), docs, start_doc, 2, 2)
    # A corpus of nothing but empty files yields no batches.
    assert read_all([empty_group, no_groups], Columns(), 2, 2) == []


# iter_batches -------------------------------------------------------------------------------------------

@pytest.fixture
def corpus(tmp_path):
    """Three shards with labels and ids, several row groups each; file names sort differently than written."""
    names = ["part-2.parquet", "part-10.parquet", "part-1.parquet"]
    sizes = [7, 5, 6]
    shards, k = {}, 0
    for name, size in zip(names, sizes):
        docs = [[(k + i) * 10 + j for j in range((k + i) * 5 % 7)] for i in range(size)]
        labels = [(k + i) % 3 for i in range(size)]
        ids = [f"{name}#{i}" for i in range(size)]
        write_shard(tmp_path / name, docs, labels=labels, ids=ids, row_group_size=3)
        shards[str(tmp_path / name)] = (docs, labels, ids)
        k += size
    docs, labels, ids = [], [], []
    for path in sorted(shards):
        docs += shards[path][0]
        labels += shards[path][1]
        ids += shards[path][2]
    return sorted(shards), docs, labels, ids


def test_corpus_has_empty_long_and_short_documents(corpus):
    _, docs, _, _ = corpus
    assert {len(d) for d in docs} >= {0, 1, 6}


@pytest.mark.parametrize("batch_size", [1, 4, 5, 100])
def test_every_start_doc(corpus, batch_size):
    paths, docs, labels, ids = corpus
    assert resolve_inputs([os.path.dirname(paths[0])]) == paths
    for start_doc in range(len(docs) + 1):
        batches = read_all(paths, ALL_COLUMNS, 4, batch_size, start_doc=start_doc)
        check_batches(batches, docs, start_doc, batch_size, 4, labels=labels, ids=ids)


@pytest.mark.parametrize("padding,truncating", [("pre", "pre"), ("pre", "post"), ("post", "pre"),
                                                ("post", "post")])
def test_padding_options_and_pad_value(corpus, padding, truncating):
    paths, docs, _, _ = corpus
    batches = read_all(paths, Columns(), 3, 4, padding=padding, truncating=truncating, pad_value=-1)
    check_batches(batches, docs, 0, 4, 3, padding, truncating, -1)


shard_docs = st.lists(st.lists(st.integers(0, 50), max_size=6), max_size=7)


@settings(max_examples=40, deadline=None)
@given(shards=st.lists(shard_docs, min_size=1, max_size=4), row_group_size=st.integers(1, 4),
       batch_size=st.integers(1, 6), max_len=st.integers(1, 5),
       mode=st.sampled_from(["pre", "post"]), data=st.data())
def test_any_layout_any_start(shards, row_group_size, batch_size, max_len, mode, data):
    docs = [d for shard in shards for d in shard]
    start_doc = data.draw(st.integers(0, len(docs)), label="start_doc")
    with tempfile.TemporaryDirectory() as folder:
        paths = [write_shard(os.path.join(folder, f"shard-{i:02d}.parquet"), shard, row_group_size=row_group_size)
                 for i, shard in enumerate(shards)]
        batches = read_all(paths, Columns(), max_len, batch_size, padding=mode, truncating=mode,
                           start_doc=start_doc)
        check_batches(batches, docs, start_doc, batch_size, max_len, mode, mode)


def test_string_labels_map_to_class_ids(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1], [2], [3], [4]], labels=["pos", "neg", "pos", "mixed"],
                       row_group_size=3)
    columns = Columns(label="label", label_names=("neg", "pos", "mixed"))
    batches = read_all([path], columns, 2, 3)
    assert [b.labels.tolist() for b in batches] == [[1, 0, 1], [2]]
    assert batches[0].labels.dtype == np.int32


def test_token_equal_to_max_token_is_allowed(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[0, 9], [9]])
    check_batches(read_all([path], Columns(), 2, 2, max_token=9), [[0, 9], [9]], 0, 2, 2)


def test_lengths_are_int64(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1, 2], [3]])
    assert read_all([path], Columns(), 2, 2)[0].lengths.dtype == np.int64


def test_token_id_beyond_int32_rejected_without_max_token(tmp_path):
    path = write_shard(tmp_path / "a.parquet", [[1], [2, 2**31]])
    message = error_message(lambda: read_all([path], Columns(), 2, 2))
    assert re.search(r"\brow 1\b", message)
    assert re.search(r"\bposition 1\b", message)


# Row errors: the bad shard is the second of two, three rows per row group, so the reported row must be
# counted within the shard and across row groups, also when reading starts in the middle of the shard.

def convert_error(tmp_path, docs, labels=None, *, label_names=None, max_token=None, start_doc=0):
    first_labels = None if labels is None else [labels[0]] * 5
    a = write_shard(tmp_path / "a.parquet", [[1]] * 5, labels=first_labels)
    b = write_shard(tmp_path / "b.parquet", docs, labels=labels, row_group_size=3)
    columns = Columns(label=None if labels is None else "label", label_names=label_names)
    message = error_message(lambda: read_all([a, b], columns, 3, 2, start_doc=start_doc, max_token=max_token))
    assert b in message
    return message


def names_row(message, row, position=None):
    assert re.search(rf"\brow {row}\b", message), message
    if position is not None:
        assert re.search(rf"\bposition {position}\b", message), message
    return True


@pytest.mark.parametrize("start_doc", [0, 6])
def test_null_document(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [2], [3], [4], None], start_doc=start_doc)
    assert names_row(message, 4)


@pytest.mark.parametrize("start_doc", [0, 6])
def test_null_token(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [], [2, 3], [], [None, 5, 6]], start_doc=start_doc)
    assert names_row(message, 4, position=0)


@pytest.mark.parametrize("start_doc", [0, 6])
def test_negative_token(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [2], [], [-1, 4, 5]], start_doc=start_doc)
    assert names_row(message, 3, position=0)
    assert "-1" in message


@pytest.mark.parametrize("start_doc", [0, 6])
def test_token_above_max_token(tmp_path, start_doc):
    message = convert_error(tmp_path, [[9], [0, 9], [], [3, 10]], max_token=9, start_doc=start_doc)
    assert names_row(message, 3, position=1)
    assert "10" in message


@pytest.mark.parametrize("start_doc", [0, 6])
def test_null_label(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [2], [3], [4]], [0, 1, 0, None], start_doc=start_doc)
    assert names_row(message, 3)


@pytest.mark.parametrize("start_doc", [0, 6])
def test_label_outside_label_names(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [2], [3], [4]], [0, 1, 1, 2], label_names=("neg", "pos"),
                            start_doc=start_doc)
    assert names_row(message, 3)
    assert "label 2" in message


def test_negative_label(tmp_path):
    assert names_row(convert_error(tmp_path, [[1], [2], [3], [4]], [0, 1, 0, -1]), 3)


@pytest.mark.parametrize("start_doc", [0, 6])
def test_unknown_label_name(tmp_path, start_doc):
    message = convert_error(tmp_path, [[1], [2], [3], [4]], ["neg", "pos", "pos", "neutral"],
                            label_names=("neg", "pos"), start_doc=start_doc)
    assert names_row(message, 3)
    assert "'neutral'" in message


def test_null_id_names_its_row(tmp_path):
    a = write_shard(tmp_path / "a.parquet", [[1], [2], [3]], ids=["x", None, "z"])
    columns = Columns(doc_id="doc_id")
    message = error_message(lambda: read_all([a], columns, 2, 8))
    assert f"shard {a}, row 1: id column 'doc_id' is null" in message
