"""inspect: what a project holds, against values computed from the corpus and the files themselves."""

import json
import os

import h5py
import numpy as np
import pytest

from projects import LABEL_NAMES, export, make_corpus
from stream_export.cli import main
from stream_export.inspection import inspect

N = 11


@pytest.fixture(scope="module")
def project(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("inspect")
    corpus = make_corpus(d / "corpus", n=N)
    return {"out": export(models["stacked"], corpus, d / "proj", "--layers", "gru,top"), "corpus": corpus,
            "model": models["stacked"]}


def test_inspect_describes_the_export(project):
    info = inspect(project["out"])
    docs, labels = project["corpus"]["docs"], project["corpus"]["labels"]
    lengths = [len(d) for d in docs]
    assert info["complete"] and info["lstm_yml"] and info["project"] == "proj"
    assert info["documents"] == N and info["max_len"] == 6
    assert info["tokens_per_document"] == {"min": min(lengths), "median": float(np.median(lengths)),
                                           "max": max(lengths), "truncated": sum(n > 6 for n in lengths)}
    assert info["labels"] == [{"id": i, "name": LABEL_NAMES[i], "documents": labels.count(i)}
                              for i in sorted(set(labels))]
    used = {t for d in docs for t in d[-6:]} | {0}  # ids kept by pre-truncation, and the padding id
    assert info["vocabulary"]["entries"] == len(used)
    assert [(l["path"], l["cells"], l["name"], l["kind"]) for l in info["layers"]] == [
        ("states1", 4, "gru", "GRU"), ("states2", 3, "top", "LSTM")]
    assert info["config"]["model"] == project["model"] and info["config"]["layers"] == ["gru", "top"]
    by_path = {(d["file"], d["path"]): d for d in info["datasets"]}
    with h5py.File(os.path.join(project["out"], "states.hdf5")) as f:
        ds = f["states2"]
        assert by_path[("states.hdf5", "states2")]["shape"] == [N * 6, 3]
        assert by_path[("states.hdf5", "states2")]["chunks"] == list(ds.chunks)
        assert by_path[("states.hdf5", "states2")]["bytes_on_disk"] == ds.id.get_storage_size() > 0
    assert by_path[("train.hdf5", "words")]["dtype"] == "int32"
    assert by_path[("meta.hdf5", "documents/length")]["shape"] == [N]
    assert by_path[("states.hdf5", "states1")]["compression"] is None
    sizes = {x["file"]: x["bytes"] for x in info["files"]}
    assert sizes["words.dict"] == os.path.getsize(os.path.join(project["out"], "words.dict"))


def test_inspect_cli_text_and_json(project, capsys):
    assert main(["inspect", project["out"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == N and info["complete"]
    assert main(["inspect", project["out"]]) == 0
    text = capsys.readouterr().out
    assert "state: complete" in text
    assert f"documents: {N} x 6 timesteps = {N * 6} rows" in text
    assert "layer 2 state: states2 (top, LSTM), 3 cells, float32" in text
    assert "states.hdf5:states1  (66, 4) float32" in text


def test_inspect_shows_gzip_and_float16_datasets_written_by_others(project, tmp_path):
    """Datasets other exporters may write (other names, compression, float16) are listed as they are."""
    import shutil

    out = shutil.copytree(project["out"], tmp_path / "copy")
    with h5py.File(out / "states.hdf5", "a") as f:
        f.create_dataset("cells1", data=f["states1"][()].astype(np.float16), chunks=(32, 4),
                         maxshape=(None, 4), compression="gzip", compression_opts=1)
    d = next(d for d in inspect(str(out))["datasets"] if d["path"] == "cells1")
    assert (d["dtype"], d["compression"], d["compression_opts"], d["chunks"]) == ("float16", "gzip", 1, [32, 4])


def test_inspect_of_a_missing_folder(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nowhere")]) == 5
    assert "is not a folder" in capsys.readouterr().err
