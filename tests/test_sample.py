"""--sample-docs and `stream-export sample`: a separate, consistent LSTMVis project of sampled documents."""

import os

import numpy as np
import pytest
import yaml

from projects import export, make_corpus, read
from stream_export.cli import main
from stream_export.verify import verify

N, T, K = 11, 6, 4


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    corpus = make_corpus(d / "corpus", n=N)
    return {"out": export(models["classic"], corpus, d / "proj", "--sample-docs", K), "corpus": corpus}


def test_sample_project_beside_the_full_one(exported):
    out = exported["out"]
    sample = out + "_sample"
    conf = yaml.safe_load(open(os.path.join(sample, "lstm.yml"), encoding="utf-8"))
    assert conf["name"] == "proj_sample" != os.path.basename(out)  # LSTMVis lists both projects
    docs = list(np.unique(read(sample, "meta.hdf5", "doc")))  # the doc track keeps the full export's indices
    assert len(docs) == K and all(0 <= d < N for d in docs)
    for file, path in [("train.hdf5", "words"), ("states.hdf5", "states1"), ("meta.hdf5", "label"),
                       ("meta.hdf5", "doc")]:
        full, part = read(out, file, path), read(sample, file, path)
        assert part.shape == (K * T, *full.shape[1:]), path
        for j, d in enumerate(docs):
            np.testing.assert_array_equal(part[j * T:(j + 1) * T], full[d * T:(d + 1) * T])
    ids = [s.decode() for s in read(sample, "meta.hdf5", "documents/id")]
    assert ids == [exported["corpus"]["ids"][d] for d in docs]
    assert list(read(sample, "meta.hdf5", "documents/length")) == [len(exported["corpus"]["docs"][d]) for d in docs]
    assert open(os.path.join(sample, "words.dict"), "rb").read() == open(os.path.join(out, "words.dict"), "rb").read()
    report = verify(sample, sample=K)  # re-runs the model on the sampled documents' Parquet rows
    assert report["findings"] == [] and sorted(report["sampled_documents"]) == list(range(K))


def test_sample_command_is_reproducible_and_replaces_only_samples(exported, tmp_path, capsys):
    out = exported["out"]
    first = read(out + "_sample", "meta.hdf5", "doc")
    again = str(tmp_path / "again")
    assert main(["sample", out, "--docs", str(K), "--to", again]) == 0
    np.testing.assert_array_equal(read(again, "meta.hdf5", "doc"), first)  # same seed, same documents
    assert main(["sample", out, "--docs", "50", "--seed", "5", "--to", again]) == 0  # replaces its own sample
    np.testing.assert_array_equal(read(again, "meta.hdf5", "doc"), np.arange(N * T) // T)  # all N documents
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["sample", out, "--docs", "2", "--to", str(other)]) == 5
    assert "not a stream_export sample" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    assert main(["sample", out, "--docs", "2", "--to", str(tmp_path / "x" / "proj")]) == 5
    assert "same basename" in capsys.readouterr().err


def test_journal_from_before_the_sample_options_still_resumes(exported, tmp_path):
    """Options added later (here --sample-docs/--sample-seed) take their defaults for an older journal."""
    import json
    import shutil

    out = shutil.copytree(exported["out"], tmp_path / "old")
    journal = json.loads((out / "export.json").read_text())
    for key in ("sample_docs", "sample_seed"):
        del journal["config"][key]
    (out / "export.json").write_text(json.dumps(journal))
    assert main(["resume", str(out), "--quiet"]) == 0  # complete already: nothing to do, but not refused
