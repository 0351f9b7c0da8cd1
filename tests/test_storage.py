"""--dtype, --compression and --chunk-rows: the same values as the default float32 export, stored otherwise."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from conftest import VOCAB, random_docs, write_shard
from stream_export.cli import main


def export(model, inputs, out, *extra):
    return main(["export", "--quiet", "--model", str(model), "--input", str(inputs), "--out", str(out),
                 "--batch-size", "4", "--label-column", "label", *map(str, extra)])


def datasets(out):
    found = {}
    for name in ("states.hdf5", "train.hdf5", "meta.hdf5"):
        with h5py.File(os.path.join(out, name), "r") as f:
            f.visititems(lambda p, o: found.__setitem__(f"{name}:{p}", (o[()], o.dtype, o.chunks, o.compression,
                                                                        o.compression_opts))
                         if isinstance(o, h5py.Dataset) else None)
    return found


@pytest.fixture(scope="module")
def plain(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("storage")
    rng = np.random.default_rng(3)
    docs = random_docs(rng, 23)
    write_shard(d / "c.parquet", docs, rng.integers(0, 2, size=23).tolist(), row_group_size=5)
    out = d / "float32"
    assert export(models["classic"], d / "c.parquet", out, "--cell-states") == 0
    return {"dir": d, "input": d / "c.parquet", "out": out, "sets": datasets(out)}


@pytest.mark.parametrize("options, compression, opts", [
    (["--compression", "gzip:6"], "gzip", 6),
    (["--compression", "lzf"], "lzf", None),
    (["--chunk-rows", "7"], None, None),
])
def test_compressed_and_rechunked_exports_hold_the_same_values(models, plain, options, compression, opts):
    out = plain["dir"] / "_".join(options).replace(":", "")
    assert export(models["classic"], plain["input"], out, "--cell-states", *options) == 0
    got = datasets(out)
    assert sorted(got) == sorted(plain["sets"])
    for key, (values, dtype, chunks, comp, comp_opts) in got.items():
        want = plain["sets"][key]
        np.testing.assert_array_equal(values, want[0], err_msg=key)  # bit for bit
        assert dtype == want[1], key
        if "documents/" not in key:
            assert (comp, comp_opts) == (compression, opts), key
        if "--chunk-rows" in options and key.startswith("states.hdf5"):
            assert chunks == (7, 5), key
        elif "documents/" not in key:
            assert chunks == want[2], key
    assert main(["verify", str(out), "--sample", "5"]) == 0


def test_float16_export_is_the_float32_export_rounded(models, plain, tmp_path, capsys):
    out = tmp_path / "half"
    assert export(models["classic"], plain["input"], out, "--cell-states", "--dtype", "float16",
                  "--compression", "gzip") == 0
    got = datasets(out)
    for key, (values, dtype, *_rest) in got.items():
        want = plain["sets"][key][0]
        if key.startswith("states.hdf5"):
            assert dtype == np.float16, key
            np.testing.assert_array_equal(values, want.astype(np.float16), err_msg=key)
            assert np.abs(values.astype(np.float32) - want).max() <= np.abs(want).max() * 2.0 ** -11
        else:
            assert dtype == plain["sets"][key][1], key
            np.testing.assert_array_equal(values, want, err_msg=key)
    capsys.readouterr()
    assert main(["verify", str(out), "--sample", "10"]) == 0  # the re-run's float32 within float16 rounding
    assert "OK" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["dtype"] == "float16"
    assert main(["sample", str(out), "--docs", "4"]) == 0
    with h5py.File(tmp_path / "half_sample" / "states.hdf5", "r") as f:
        assert f["states1"].dtype == np.float16 and f["states1"].compression == "gzip"
    assert "states: states.hdf5" in (out / "lstm.yml").read_text()


def test_float16_overflow_is_an_error_naming_document_and_layer(tmp_path, capsys):
    import keras
    from keras import layers

    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(VOCAB, 2)(inp)
    x = layers.SimpleRNN(3, activation="relu", return_sequences=True, name="relu_rnn")(x)
    model = keras.Model(inp, x)
    embeddings = np.full((VOCAB, 2), 0.1, dtype=np.float32)
    embeddings[0] = 0
    embeddings[VOCAB - 1] = 1e4  # only this token drives the state past float16's 65504
    kernel, recurrent, bias = model.get_layer("relu_rnn").get_weights()
    model.set_weights([embeddings, np.full_like(kernel, 10.0), np.zeros_like(recurrent), bias])
    model.save(tmp_path / "relu.keras")
    docs = [[1, 2, 3], [4, 5], [1, VOCAB - 1, 2], [VOCAB - 1]] * 3
    write_shard(tmp_path / "c.parquet", docs, [0] * len(docs))
    states = model.predict(keras.utils.pad_sequences(docs, maxlen=6), verbose=0)
    assert np.abs(states).max() > 65504 and np.isfinite(states).all()
    assert export(tmp_path / "relu.keras", tmp_path / "c.parquet", tmp_path / "half", "--dtype", "float16") == 3
    err = capsys.readouterr().err
    assert f"shard {tmp_path / 'c.parquet'}, row 2: layer relu_rnn has values beyond the range of float16" in err
    assert "--dtype float32" in err
    assert not (tmp_path / "half").exists()  # a failed fresh export leaves nothing behind
    # under --on-error skip the documents that overflow are left out and listed, the others kept
    assert export(tmp_path / "relu.keras", tmp_path / "c.parquet", tmp_path / "skip", "--dtype", "float16",
                  "--on-error", "skip") == 0
    good = [i for i, doc in enumerate(docs) if VOCAB - 1 not in doc]
    with h5py.File(tmp_path / "skip" / "states.hdf5", "r") as f:
        np.testing.assert_array_equal(f["states1"][()], states[good].reshape(-1, 3).astype(np.float16))
    report = (tmp_path / "skip" / "skipped.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[0]) for line in report] == [i for i in range(len(docs)) if i not in good]
    assert export(tmp_path / "relu.keras", tmp_path / "c.parquet", tmp_path / "full") == 0
    with h5py.File(tmp_path / "full" / "states.hdf5", "r") as f:
        np.testing.assert_array_equal(f["states1"][()], states.reshape(-1, 3))


@pytest.mark.parametrize("option", [["--compression", "zip"], ["--compression", "lzf:3"],
                                    ["--compression", "gzip:x"], ["--compression", "gzip:10"],
                                    ["--dtype", "float64"], ["--chunk-rows", "0"]])
def test_bad_storage_options_are_refused(models, plain, tmp_path, option, capsys):
    try:
        code = export(models["classic"], plain["input"], tmp_path / "x", *option)
    except SystemExit as e:  # argparse's own refusal of a choice
        code = e.code
    assert code == 2
    assert option[-1] in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_journal_from_before_the_storage_options_still_resumes(plain, tmp_path):
    out = shutil.copytree(plain["out"], tmp_path / "old")
    journal = json.loads((out / "export.json").read_text())
    for key in ("dtype", "compression", "compression_level", "chunk_rows"):
        del journal["config"][key]
    journal["complete"] = False  # as if interrupted: resume must accept the config and finish
    (out / "export.json").write_text(json.dumps(journal))
    assert main(["resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "export.json").read_text())["complete"]
