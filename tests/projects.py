"""Small finished exports for the inspect/verify/preview/sample tests, and helpers to damage copies of them."""

import os
import shutil

import h5py
import numpy as np

from conftest import random_docs, write_shard
from stream_export.cli import main

LABEL_NAMES = ["neg", "neu", "pos"]


def make_corpus(folder, n=11, seed=7, max_tokens=12):
    """Two shards of n labelled documents with ids; returns the documents, labels and ids in export order."""
    rng = np.random.default_rng(seed)
    docs = random_docs(rng, n, max_tokens=max_tokens)
    docs[0] = [3, 4, 5, 6, 7, 8, 9]  # at least one document longer than the classic model's 6 steps
    labels = rng.integers(0, 3, size=n).tolist()
    ids = [f"doc-{i}" for i in range(n)]
    os.makedirs(folder, exist_ok=True)
    half = n // 2
    write_shard(os.path.join(folder, "a.parquet"), docs[:half], labels[:half], ids[:half], row_group_size=2)
    write_shard(os.path.join(folder, "b.parquet"), docs[half:], labels[half:], ids[half:])
    return {"dir": str(folder), "docs": docs, "labels": labels, "ids": ids}


def export(model, corpus, out, *extra):
    """Export through the CLI with labels, label names and ids; assert it succeeded."""
    code = main(["export", "--quiet", "--model", str(model), "--input", corpus["dir"], "--out", str(out),
                 "--batch-size", "4", "--label-column", "label", "--label-names", ",".join(LABEL_NAMES),
                 "--id-column", "id", *map(str, extra)])
    assert code == 0
    return str(out)


def copy(project, dest):
    shutil.copytree(project, dest)
    return str(dest)


def read(out, file, path):
    with h5py.File(os.path.join(out, file), "r") as f:
        return f[path][()]
