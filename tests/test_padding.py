"""reader.pad must give exactly what keras.utils.pad_sequences gives, for every padding/truncating mode."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from keras.utils import pad_sequences

from stream_export.reader import pad

MODES = [("pre", "pre"), ("pre", "post"), ("post", "pre"), ("post", "post")]


def ragged(docs):
    """Arrow-style (offsets, flat values) for a list of documents."""
    lengths = [len(d) for d in docs]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    values = np.array([t for d in docs for t in d], dtype=np.int64)
    return offsets, values


documents = st.lists(st.lists(st.integers(0, 2**31 - 1), max_size=12), max_size=8)


@pytest.mark.parametrize("padding,truncating", MODES)
@settings(max_examples=150, deadline=None)
@given(docs=documents, max_len=st.integers(1, 10), value=st.integers(-3, 3))
def test_pad_equals_pad_sequences(docs, max_len, value, padding, truncating):
    offsets, values = ragged(docs)
    got = pad(offsets, values, max_len, padding, truncating, value)
    expected = pad_sequences(docs, maxlen=max_len, padding=padding, truncating=truncating, value=value,
                             dtype="int32")
    assert got.dtype == np.int32
    assert got.shape == (len(docs), max_len)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("padding,truncating", MODES)
@pytest.mark.parametrize("docs", [[], [[]], [[], [], []]], ids=["no documents", "one empty", "three empty"])
def test_empty_corpora_equal_pad_sequences(docs, padding, truncating):
    offsets, values = ragged(docs)
    got = pad(offsets, values, 4, padding, truncating, 7)
    expected = pad_sequences(docs, maxlen=4, padding=padding, truncating=truncating, value=7, dtype="int32")
    assert got.shape == (len(docs), 4)
    np.testing.assert_array_equal(got, expected)


# Written out by hand: one document longer than max_len, one shorter, one empty.
HAND_DOCS = [[1, 2, 3, 4], [5], []]
HAND_EXPECTED = {
    ("pre", "pre"): [[2, 3, 4], [0, 0, 5], [0, 0, 0]],
    ("pre", "post"): [[1, 2, 3], [0, 0, 5], [0, 0, 0]],
    ("post", "pre"): [[2, 3, 4], [5, 0, 0], [0, 0, 0]],
    ("post", "post"): [[1, 2, 3], [5, 0, 0], [0, 0, 0]],
}


@pytest.mark.parametrize("padding,truncating", MODES)
def test_pad_by_hand(padding, truncating):
    offsets, values = ragged(HAND_DOCS)
    got = pad(offsets, values, 3, padding, truncating, 0)
    np.testing.assert_array_equal(got, np.array(HAND_EXPECTED[padding, truncating], dtype=np.int32))


def test_pad_max_len_one_and_pad_value_by_hand():
    offsets, values = ragged([[7, 8, 9], [], [4]])
    np.testing.assert_array_equal(pad(offsets, values, 1, "pre", "pre", -1), [[9], [-1], [4]])
    np.testing.assert_array_equal(pad(offsets, values, 1, "post", "post", -1), [[7], [-1], [4]])


def test_pad_offsets_into_a_larger_values_array():
    # Arrow offsets of a sliced list array need not start at 0: only values[2:6] belong to these documents.
    offsets = np.array([2, 3, 6])
    values = np.array([90, 91, 1, 2, 3, 4, 92])
    np.testing.assert_array_equal(pad(offsets, values, 2, "post", "pre", 0), [[1, 0], [3, 4]])
