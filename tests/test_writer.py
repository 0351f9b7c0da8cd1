"""writer.py on its own: which rows --skip-padding keeps, and rolling back to a commit when rows vary."""

import h5py
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from stream_export.model import Output
from stream_export.reader import Batch, pad
from stream_export.writer import ProjectWriter, real_tokens


@given(st.lists(st.integers(0, 12), min_size=1, max_size=8), st.integers(1, 9), st.sampled_from(["pre", "post"]))
def test_real_tokens_are_where_pad_put_the_tokens(lengths, max_len, padding):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    padded = pad(offsets, np.ones(offsets[-1], dtype=np.int64), max_len, padding=padding, value=0)
    np.testing.assert_array_equal(real_tokens(np.array(lengths), max_len, padding), padded == 1)


def test_skip_padding_rows_and_truncate_to_a_commit(tmp_path):
    outputs = [Output("states", "states1", 2, "float32", "state", 1, "lstm"),
               Output("meta", "predictions/class", None, "int32", "class", None, "model output")]
    w = ProjectWriter(str(tmp_path), outputs, 4, labels=False, doc_ids=False, create=True, skip_padding="post")
    rng = np.random.default_rng(0)
    docs = [[3, 4], [5, 6, 7, 8, 9], []]
    lengths = np.array([len(d) for d in docs])
    tokens = pad(np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(docs), 4, padding="post")
    values = [rng.normal(size=(3, 4, 2)).astype(np.float32), rng.integers(0, 3, size=(3, 4)).astype(np.int32)]
    assert w.append(Batch(0, tokens[:1], lengths[:1], None, None), [v[:1] for v in values]) == 2
    committed = w.rows
    assert w.append(Batch(1, tokens[1:], lengths[1:], None, None), [v[1:] for v in values]) == 4
    w.flush()
    with h5py.File(tmp_path / "meta.hdf5") as f:
        np.testing.assert_array_equal(f["documents/start"][()], [0, 2, 6])
        np.testing.assert_array_equal(f["predictions/class"][()],
                                      np.concatenate([values[1][0, :2], values[1][1, :4]]))
    with h5py.File(tmp_path / "states.hdf5") as f:
        np.testing.assert_array_equal(f["states1"][()], np.concatenate([values[0][0, :2], values[0][1, :4]]))
    w.truncate(1, committed)
    w.close()
    with h5py.File(tmp_path / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][()], [3, 4])
    with h5py.File(tmp_path / "meta.hdf5") as f:
        assert f["documents/start"].shape == (1,) and f["predictions/class"].shape == (2,)
        assert f["doc"].shape == (2,)


def test_chunks_align_with_whole_batches(tmp_path):
    """The default chunk is the largest divisor of a batch's rows within 1/8..1 of about 1 MiB of rows,
    else ~1 MiB; checked against a brute-force search over every divisor."""
    from stream_export.writer import _aligned

    def brute(target, rows):
        fits = [d for d in range(1, rows + 1) if rows % d == 0 and target // 8 <= d <= target]
        return max(fits) if fits else target

    for target in (1, 7, 1000, 1024, 16384, 262144):
        for rows in (1, 24, 500, 23757, 64000, 128 * 250, 7919):
            assert _aligned(target, rows) == brute(target, rows), (target, rows)
    outputs = [Output("states", "states1", 16, "float32", "state", 1, "lstm")]
    w = ProjectWriter(str(tmp_path), outputs, 500, labels=True, doc_ids=False, create=True, batch_rows=64000)
    chunks = {ds.name: ds.chunks for ds in w.row_sets}
    w.close()
    assert chunks == {"/states1": (16000, 16), "/words": (64000,), "/label": (64000,), "/doc": (64000,)}
