"""verify on a good export, and on copies damaged in one way each: every damage gives its own finding."""

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from projects import copy, export, make_corpus, read
from stream_export.cli import main
from stream_export.inspection import inspect
from stream_export.verify import verify

N, T = 11, 6


@pytest.fixture(scope="module")
def good(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    corpus = make_corpus(d / "corpus", n=N)
    return {"out": export(models["classic"], corpus, d / "good"), "corpus": corpus, "model": models["classic"]}


def codes(report):
    return {f["code"] for f in report["findings"]}


def test_good_export_passes_and_matches_an_independent_rerun(good):
    import keras

    report = verify(good["out"], sample=5, seed=3)
    assert report["ok"] and report["findings"] == []
    docs = report["sampled_documents"]
    assert len(docs) == 5 and len(set(docs)) == 5 and all(0 <= d < N for d in docs)
    assert verify(good["out"], sample=5, seed=3)["sampled_documents"] == docs  # seeded: reproducible
    # the reported error, recomputed with the classic recipe on the sampled documents
    model = keras.models.load_model(good["model"], compile=False)
    padded = keras.utils.pad_sequences([good["corpus"]["docs"][d] for d in docs], maxlen=T)
    expected = keras.Model(model.inputs, model.get_layer("lstm").output).predict(padded, verbose=0)
    stored = read(good["out"], "states.hdf5", "states1").reshape(N, T, -1)[docs]
    assert abs(report["max_abs_error"]["states1"] - np.abs(stored - expected).max()) <= 1e-6
    assert report["max_abs_error"]["states1"] <= 1e-5


def test_cli_exit_codes_and_json(good, tmp_path, capsys):
    assert main(["verify", good["out"], "--sample", "2"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = copy(good["out"], tmp_path / "bad")
    with h5py.File(os.path.join(bad, "states.hdf5"), "a") as f:
        f["states1"][3, 1] = np.inf
    assert main(["verify", bad, "--sample", "0", "--json"]) == 7
    report = json.loads(capsys.readouterr().out)
    assert [(f["code"], f["where"]) for f in report["findings"]] == [("not-finite", "states.hdf5:states1")]


def remove_dict_line(out):
    used = sorted(set(read(out, "train.hdf5", "words").tolist()) - {0})
    victim = used[0]
    path = os.path.join(out, "words.dict")
    lines = open(path, encoding="utf-8").read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines if line.split()[1] != str(victim)))
    return "words.dict", str(victim)


def unreadable_dict_line(out):
    victim = sorted(set(read(out, "train.hdf5", "words").tolist()) - {0})[-1]
    path = os.path.join(out, "words.dict")
    lines = open(path, encoding="utf-8").read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join((f"new york {victim}" if line.split()[1] == str(victim) else line) + "\n" for line in lines))
    return "words.dict", "new york"


def truncate_dataset(out):
    with h5py.File(os.path.join(out, "states.hdf5"), "a") as f:
        f["states1"].resize((N - 1) * T, axis=0)
    return "states.hdf5:states1", f"{(N - 1) * T} rows but {N * T}"


def set_nan(out):
    with h5py.File(os.path.join(out, "states.hdf5"), "a") as f:
        f["states1"][45, 2] = np.nan
    return "states.hdf5:states1", "first: row 45"


def rows_past_commit(out):
    with h5py.File(os.path.join(out, "meta.hdf5"), "a") as f:
        f["label"].resize(N * T + 3, axis=0)
    return "meta.hdf5:label", f"{N * T + 3} rows but only {N * T}"


def unwritten_chunk(out):
    """Rebuild the doc track in chunks of one document and never write the first chunk: its fill value (0)
    happens to be the right value, so only the chunk count can tell."""
    with h5py.File(os.path.join(out, "meta.hdf5"), "a") as f:
        values = f["doc"][()]
        del f["doc"]
        ds = f.create_dataset("doc", shape=values.shape, maxshape=(None,), chunks=(T,), dtype=values.dtype)
        ds[T:] = values[T:]
        assert (ds[()] == values).all()
    return "meta.hdf5:doc", f"1 of {N} chunks"


def broken_yml_path(out):
    path = os.path.join(out, "lstm.yml")
    text = open(path, encoding="utf-8").read()
    open(path, "w", encoding="utf-8").write(text.replace("path: states1", "path: states9"))
    return "lstm.yml states.types[0]", "states::states9"


def swapped_words(out):
    with h5py.File(os.path.join(out, "train.hdf5"), "a") as f:
        words = f["words"][()].reshape(N, T)
        words[[0, 1]] = words[[1, 0]]
        f["words"][:] = words.reshape(-1)
    return "train.hdf5:words", "documents 0, 1"


def changed_label(out):
    with h5py.File(os.path.join(out, "meta.hdf5"), "a") as f:
        f["label"][2 * T:3 * T] = (f["label"][2 * T] + 1) % 3
    return "meta.hdf5:label", "documents 2 "


DAMAGES = {
    "dict line removed": (remove_dict_line, {"dict-line-missing"}),
    "dict line with a space": (unreadable_dict_line, {"dict-line-unreadable", "dict-line-missing"}),
    "dataset truncated": (truncate_dataset, {"rows-missing"}),
    "value set to NaN": (set_nan, {"not-finite"}),
    "rows past the last commit": (rows_past_commit, {"rows-extra"}),
    "chunk never written": (unwritten_chunk, {"chunks-unwritten"}),
    "lstm.yml path broken": (broken_yml_path, {"yml-path-missing"}),
    "words of two documents swapped": (swapped_words, {"words-mismatch"}),
    "a label changed": (changed_label, {"meta-mismatch"}),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_each_damage_gives_its_own_finding(good, tmp_path, damage):
    make, expected = DAMAGES[damage]
    out = copy(good["out"], tmp_path / "damaged")
    where, detail = make(out)
    report = verify(out, sample=N)
    assert codes(report) == expected, report["findings"]
    hit = [f for f in report["findings"] if f["where"] == where or f["where"].startswith(where)]
    assert hit and any(detail in f["where"] + " " + f["message"] for f in hit), report["findings"]
    info = inspect(out)  # inspect still describes a damaged project
    assert info["complete"] and info["documents"] == N


def make_virtual(out, split=4 * T):
    """Replace states1 by an HDF5 virtual dataset joining two part files in parts/ (relative paths)."""
    path = os.path.join(out, "states.hdf5")
    with h5py.File(path, "a") as f:
        values = f["states1"][()]
        del f["states1"]
        os.makedirs(os.path.join(out, "parts"))
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype, maxshape=(None, values.shape[1]))
        for name, rows in (("parts/p0.h5", slice(0, split)), ("parts/p1.h5", slice(split, None))):
            with h5py.File(os.path.join(out, name), "w") as part:
                part["states1"] = values[rows]
            layout[rows] = h5py.VirtualSource(name, "states1", shape=values[rows].shape)
        f.create_virtual_dataset("states1", layout, fillvalue=0)
    return values


def test_virtual_dataset_sources(good, tmp_path):
    out = copy(good["out"], tmp_path / "vds")
    values = make_virtual(out)
    np.testing.assert_array_equal(read(out, "states.hdf5", "states1"), values)
    assert verify(out, sample=N)["findings"] == []
    info = inspect(out)
    ds = next(d for d in info["datasets"] if d["path"] == "states1")
    assert ds["virtual"] and ds["sources"] == ["parts/p0.h5::states1", "parts/p1.h5::states1"]

    os.remove(os.path.join(out, "parts", "p1.h5"))
    assert (read(out, "states.hdf5", "states1")[4 * T:] == 0).all()  # silently zeros, as FORMAT.md says
    report = verify(out, sample=N)
    assert codes(report) == {"vds-source-missing"}
    assert report["findings"][0]["where"] == "states.hdf5:states1"
    assert "parts/p1.h5" in report["findings"][0]["message"]


def test_changed_model_weight_is_caught_by_the_rerun(models, good, tmp_path):
    import keras

    model_path = str(tmp_path / "model.keras")
    shutil.copyfile(good["model"], model_path)
    out = export(model_path, good["corpus"], tmp_path / "proj")
    assert verify(out, sample=3)["ok"]
    model = keras.models.load_model(model_path, compile=False)
    kernel, recurrent, bias = model.get_layer("lstm").get_weights()
    bias[:5] += 1.0  # the input gates of all 5 units
    model.get_layer("lstm").set_weights([kernel, recurrent, bias])
    model.save(model_path)
    report = verify(out, sample=N)
    assert codes(report) == {"model-changed", "states-mismatch"}
    mismatch = next(f for f in report["findings"] if f["code"] == "states-mismatch")
    assert mismatch["where"] == "states.hdf5:states1"
    assert report["max_abs_error"]["states1"] > 1e-3


def test_incomplete_export_is_reported_as_such(models, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=8)
    bad = [[1, 2, 99]]  # a token id outside the model's embedding: the export stops at this shard
    from conftest import write_shard

    write_shard(os.path.join(corpus["dir"], "c.parquet"), bad, [0], ["bad"])
    out = str(tmp_path / "proj")
    assert main(["export", "--quiet", "--model", models["classic"], "--input", corpus["dir"], "--out", out,
                 "--batch-size", "2", "--commit-every", "1", "--label-column", "label", "--id-column", "id"]) == 3
    info = inspect(out)
    assert not info["complete"] and not info["lstm_yml"]
    assert info["committed"]["documents"] == 8 and info["totals"]["documents"] == 9
    report = verify(out, sample=4)
    assert codes(report) == {"export-incomplete"}
    assert "stream-export resume" in report["findings"][0]["message"]


def test_folder_without_journal_or_yml(tmp_path):
    report = verify(str(tmp_path), sample=3)
    assert codes(report) == {"journal-missing", "yml-missing"}


def test_datasets_of_later_exporters_pass(good, tmp_path):
    """float16 gzip states, extra state types and a prediction track declared in lstm.yml: verify is
    driven by lstm.yml and the files, so these pass when they are right and are checked like the rest."""
    out = copy(good["out"], tmp_path / "later")
    with h5py.File(os.path.join(out, "states.hdf5"), "a") as f:
        values = f["states1"][()]
        del f["states1"]
        f.create_dataset("states1", data=values.astype(np.float16), maxshape=(None, 5), chunks=(16, 5),
                         compression="gzip", compression_opts=1)
        f.create_dataset("cells1", data=values * 3, maxshape=(None, 5), chunks=(16, 5), compression="lzf")
    with h5py.File(os.path.join(out, "meta.hdf5"), "a") as f:
        f.create_dataset("p1", data=np.linspace(0, 1, N * T), maxshape=(None,), chunks=(32,))
    with open(os.path.join(out, "lstm.yml"), "a", encoding="utf-8") as f:
        f.write("  p_positive: {file: meta, path: p1, vis: {type: scalar, range: [0, 1]}}\n")
    text = open(os.path.join(out, "lstm.yml"), encoding="utf-8").read()
    text = text.replace("    - {type: state, layer: 1, path: states1}",
                        "    - {type: state, layer: 1, path: states1}\n    - {type: cell, layer: 1, path: cells1}")
    open(os.path.join(out, "lstm.yml"), "w", encoding="utf-8").write(text)
    report = verify(out, sample=N)
    assert report["findings"] == []
    assert 0 < report["max_abs_error"]["states1"] <= np.abs(values).max() * 2 ** -11  # float16 rounding

    with h5py.File(os.path.join(out, "meta.hdf5"), "a") as f:
        f["p1"][7] = np.inf
    with h5py.File(os.path.join(out, "states.hdf5"), "a") as f:
        f["cells1"].resize(N * T - 1, axis=0)
    report = verify(out, sample=0)
    assert {(f["code"], f["where"]) for f in report["findings"]} == {("not-finite", "meta.hdf5:p1"),
                                                                      ("rows-missing", "states.hdf5:cells1")}


def test_project_reached_through_a_symlink(good, tmp_path):
    link = tmp_path / "linked"
    link.symlink_to(good["out"])
    assert codes(verify(str(link), sample=0)) == {"project-symlink"}
    assert codes(verify(str(tmp_path / "nothing"), sample=0)) == {"folder-missing"}
