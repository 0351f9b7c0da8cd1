"""verify, sample, inspect and preview on a --skip-padding export, where document d's rows are found through
meta's documents/start and documents/length instead of d*T."""

import os

import h5py
import numpy as np
import pytest

from conftest import write_shard
from projects import copy, export, make_corpus, read
from stream_export import preview as pv
from stream_export.errors import ConfigError
from stream_export.inspection import inspect
from stream_export.verify import verify

N, T, K = 11, 6, 5


@pytest.fixture(scope="module")
def skipped(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("skip")
    corpus = make_corpus(d / "corpus", n=N)
    corpus["docs"][3] = []  # an empty document has no rows at all
    half = N // 2
    write_shard(os.path.join(corpus["dir"], "a.parquet"), corpus["docs"][:half], corpus["labels"][:half],
                corpus["ids"][:half], row_group_size=2)
    out = export(models["classic"], corpus, d / "proj", "--skip-padding", "--cell-states", "--sample-docs", K)
    kept = [min(len(doc), T) for doc in corpus["docs"]]
    return {"out": out, "corpus": corpus, "kept": kept, "starts": np.cumsum([0] + kept[:-1])}


def test_rows_are_the_real_tokens_only(skipped):
    out, kept = skipped["out"], skipped["kept"]
    assert read(out, "train.hdf5", "words").shape == (sum(kept),)
    np.testing.assert_array_equal(read(out, "meta.hdf5", "documents/start"), skipped["starts"])
    words = read(out, "train.hdf5", "words")
    for d, doc in enumerate(skipped["corpus"]["docs"]):
        start = skipped["starts"][d]
        assert words[start:start + kept[d]].tolist() == doc[-T:]  # truncating 'pre' keeps the last T


def test_verify_passes_and_catches_a_changed_word(skipped, tmp_path):
    report = verify(skipped["out"], sample=N)
    assert report["findings"] == [] and sorted(report["sampled_documents"]) == list(range(N))
    assert set(report["max_abs_error"]) == {"states1", "cells1"}
    bad = copy(skipped["out"], tmp_path / "bad")
    row = skipped["starts"][5] + 1  # document 5's second token
    with h5py.File(os.path.join(bad, "train.hdf5"), "a") as f:
        f["words"][row] = f["words"][row] % 40 + 1
    findings = verify(bad, sample=N)["findings"]
    assert [(f["code"], "documents 5" in f["message"]) for f in findings] == [("words-mismatch", True)]


def test_sample_copies_each_documents_own_rows(skipped):
    out, sample = skipped["out"], skipped["out"] + "_sample"
    docs = [skipped["corpus"]["ids"].index(i.decode()) for i in read(sample, "meta.hdf5", "documents/id")]
    assert len(docs) == K
    sizes = [skipped["kept"][d] for d in docs]
    np.testing.assert_array_equal(read(sample, "meta.hdf5", "documents/start"), np.cumsum([0] + sizes[:-1]))
    for file, path in [("train.hdf5", "words"), ("states.hdf5", "states1"), ("states.hdf5", "cells1"),
                       ("meta.hdf5", "label"), ("meta.hdf5", "doc")]:
        full, part = read(out, file, path), read(sample, file, path)
        expected = np.concatenate([full[skipped["starts"][d]:skipped["starts"][d] + skipped["kept"][d]]
                                   for d in docs])
        np.testing.assert_array_equal(part, expected, err_msg=path)
    assert verify(sample, sample=K)["findings"] == []


def test_inspect_counts_labels_of_documents_with_rows(skipped):
    labels = [l for l, k in zip(skipped["corpus"]["labels"], skipped["kept"]) if k]
    counts = {l["id"]: l["documents"] for l in inspect(skipped["out"])["labels"]}
    assert counts == {c: labels.count(c) for c in set(labels)}


def test_preview_shows_the_documents_real_tokens(skipped, tmp_path):
    pytest.importorskip("matplotlib")
    for d in range(N):
        if not skipped["kept"][d]:
            with pytest.raises(ConfigError, match=f"document {d} has no tokens"):
                pv.preview(skipped["out"], d, str(tmp_path / "p.png"))
            continue
        drawn = pv.preview(skipped["out"], d, str(tmp_path / "p.png"))
        assert drawn["steps"] == list(range(skipped["kept"][d]))


def test_status_and_inspect_count_the_rows_written(skipped, capsys):
    from stream_export.cli import main

    rows = sum(skipped["kept"])
    assert main(["status", skipped["out"]]) == 0
    assert f"rows {rows:,} / {rows:,}\n" in capsys.readouterr().out
    assert main(["inspect", skipped["out"]]) == 0
    text = capsys.readouterr().out
    assert f"documents: {N:,} of up to {T} timesteps, {rows:,} rows (real tokens only" in text
    assert "documents without tokens have no rows and are not counted" in text
