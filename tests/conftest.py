"""Shared fixtures: tiny real Keras models saved as .keras files, and Parquet corpora written with pyarrow."""

import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

VOCAB = 30


def random_docs(rng, n, max_tokens=12, vocab=VOCAB):
    """n documents of 0..max_tokens token ids in 1..vocab-1 (0 is padding)."""
    return [rng.integers(1, vocab, size=rng.integers(0, max_tokens + 1)).tolist() for _ in range(n)]


def write_shard(path, docs, labels=None, ids=None, row_group_size=None):
    columns = {"tokens": pa.array(docs, type=pa.list_(pa.int32()))}
    if labels is not None:
        columns["label"] = pa.array(labels, type=pa.int32())
    if ids is not None:
        columns["id"] = pa.array(ids, type=pa.string())
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def _save(model, path):
    model.save(path)
    return str(path)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of small models with fixed random weights, built once per test session."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    d = tmp_path_factory.mktemp("models")
    out = {}

    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 4)(inp)
    x = layers.LSTM(5, return_sequences=True, name="lstm")(x)
    x = layers.TimeDistributed(layers.Dense(3, activation="softmax"))(x)
    out["classic"] = _save(keras.Model(inp, x), d / "classic.keras")

    inp = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(VOCAB, 4)(inp)
    x = layers.LSTM(4, name="last")(x)  # return_sequences=False: only the final state in the model
    x = layers.Dense(2, activation="softmax")(x)
    out["last"] = _save(keras.Model(inp, x), d / "last.keras")

    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 3)(inp)
    x = layers.GRU(4, return_sequences=True, name="gru")(x)
    x = layers.SimpleRNN(2, return_sequences=True, name="rnn")(x)
    x = layers.LSTM(3, name="top")(x)
    out["stacked"] = _save(keras.Model(inp, x), d / "stacked.keras")

    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 3)(inp)
    x = layers.Flatten()(x)
    out["dense"] = _save(keras.Model(inp, layers.Dense(2)(x)), d / "dense.keras")

    # every merge mode, both GRU variants, go_backwards and return_sequences=False, side by side
    inp = keras.Input(shape=(6,), dtype="int32")
    e = layers.Embedding(VOCAB, 4)(inp)
    sequences = [
        layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="concat", name="bi_concat")(e),
        layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum", name="bi_sum")(e),
        layers.Bidirectional(layers.GRU(2, return_sequences=True, reset_after=False), merge_mode="mul",
                             name="bi_mul")(e),
        layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True), merge_mode="ave", name="bi_ave")(e),
        *layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None, name="bi_none")(e),
        layers.LSTM(3, return_sequences=True, go_backwards=True, name="back_seq")(e),
    ]
    finals = [layers.Bidirectional(layers.LSTM(2), name="bi_last")(e),
              layers.GRU(3, go_backwards=True, name="back_last")(e)]
    model = keras.Model(inp, [layers.Concatenate()(sequences), layers.Concatenate()(finals)])
    out["directions"] = _save(_lively(model), d / "directions.keras")

    # Embedding(mask_zero=True) under LSTM, Bidirectional, then a final LSTM beside a backwards SimpleRNN
    inp = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(VOCAB, 4, mask_zero=True)(inp)
    x = layers.LSTM(4, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True), name="bi")(x)
    ends = [layers.LSTM(3, name="last")(x), layers.SimpleRNN(3, return_sequences=True, go_backwards=True,
                                                               name="back")(x)]
    out["masked"] = _save(_lively(keras.Model(inp, ends)), d / "masked.keras")

    # a Sequential inside a functional model, then a functional model used as a layer, then predictions
    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 4)(inp)
    encoder = keras.Sequential([keras.Input((6, 4)), layers.LSTM(4, return_sequences=True, name="enc")],
                               name="encoder")
    block_in = keras.Input((6, 4))
    block = keras.Model(block_in, layers.GRU(3, return_sequences=True, name="gru")(block_in), name="block")
    x = layers.TimeDistributed(layers.Dense(3, activation="softmax"), name="td")(block(encoder(x)))
    out["nested"] = _save(_lively(keras.Model(inp, x)), d / "nested.keras")

    # a recurrent layer whose "states" are class probabilities
    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 4)(inp)
    x = layers.SimpleRNN(3, activation="softmax", return_sequences=True, name="probs")(x)
    out["softmax_rnn"] = _save(keras.Model(inp, x), d / "softmax_rnn.keras")
    return out


def _lively(model, seed=5):
    """Give every weight values of order one, so that states differ clearly from step to step and a
    misaligned or wrong state cannot hide under the tolerance (Keras initialises embeddings at +-0.05)."""
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.normal(size=w.shape) * 0.6).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture
def corpus(tmp_path):
    """Three shards (the middle one empty) of 11 labelled documents, written out of path order."""
    rng = np.random.default_rng(7)
    docs = random_docs(rng, 11)
    labels = rng.integers(0, 3, size=11).tolist()
    ids = [f"doc-{i}" for i in range(11)]
    d = tmp_path / "corpus"
    d.mkdir()
    write_shard(d / "c.parquet", docs[6:], labels[6:], ids[6:], row_group_size=2)
    write_shard(d / "a.parquet", docs[:6], labels[:6], ids[:6], row_group_size=4)
    write_shard(d / "b.parquet", [], [], [])
    return {"dir": str(d), "docs": docs, "labels": np.array(labels), "ids": ids}


@pytest.fixture
def tmpfs(tmp_path):
    """A real 8 MiB tmpfs (ENOSPC when full; remountable larger or read-only); skipped where mounting is not
    allowed (it needs root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)
