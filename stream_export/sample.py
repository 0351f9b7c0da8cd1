"""A small LSTMVis project of K sampled documents, cut from a finished export (no second model run).

LSTMVis's fast pattern search covers only the first 500,000 rows and its precise search fails beyond about
2.5 million, so a big export is paired with a sample project that is searchable end to end. The sample of
OUT is written beside it as OUT + "_sample": a different basename, so LSTMVis lists both projects (two
folders with the same basename hide each other). It holds the same files and datasets, with the sampled
documents' rows copied unchanged in document order (documents/start
renumbered for the sample); the `doc` track keeps the documents' indices in the
full export, and its export.json records the source and the sampled indices, so `verify` re-checks it.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from stream_export import checkpoint
from stream_export.config import ExportConfig
from stream_export.errors import OutputError
from stream_export.project import HDF5_SUFFIXES, YML, Project, open_hdf5, visit_datasets

SUFFIX = "_sample"
SEARCH_ROWS = 500_000
"""LSTMVis's fast pattern search looks at no more rows than this."""


def sample_path(out: str) -> str:
    return os.path.normpath(out) + SUFFIX


def sample_documents(documents: int, k: int, seed: int) -> list[int]:
    """min(k, documents) distinct document indices, sorted, drawn reproducibly from the seed."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(documents, size=min(k, documents), replace=False).tolist())


def write_sample(out: str, k: int, seed: int = 0, dest: str | None = None, log=None) -> dict:
    """Write the sample project of K documents of the finished export in OUT; return what was written."""
    import h5py
    import yaml

    p = Project(out)
    if p.journal is None or not p.journal["complete"] or p.yml is None:
        raise OutputError(f"{out} is not a finished export; finish it (stream-export resume {out}) before "
                          "sampling it")
    if k < 1:
        raise OutputError(f"a sample needs at least one document; got {k}")
    dest = os.path.normpath(dest or sample_path(out))
    if os.path.basename(dest) == os.path.basename(os.path.normpath(out)):
        raise OutputError(f"the sample folder {dest} has the same basename as {out}; LSTMVis would show only "
                          "one of them: choose another name")
    _make_room(dest)
    t, n = p.max_len, p.documents
    docs = sample_documents(n, k, seed)
    rows, total_rows = p.doc_rows(docs), p.journal["committed"]["rows"]
    sizes = [b - a for a, b in rows]
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for key, name in p.files.items():
        target = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not str(name).endswith(HDF5_SUFFIXES):
            shutil.copyfile(p.path(key), target)
            continue
        with open_hdf5(p.path(key)) as src, h5py.File(target, "w") as dst:
            dst.attrs.update(src.attrs)
            for path, ds in visit_datasets(src):
                if path == "documents/start":  # the sampled documents' first rows, in the sample
                    _copy_ranges(ds, dst, path, [(0, len(docs))])
                    dst[path][:] = np.cumsum([0] + sizes[:-1])
                elif path.startswith("documents/") and ds.shape[0] == n:
                    _copy_ranges(ds, dst, path, [(d, d + 1) for d in docs])
                elif ds.ndim and ds.shape[0] == total_rows:
                    _copy_ranges(ds, dst, path, rows)
                else:
                    dst.create_dataset(path, data=ds[()])
                dst[path].attrs.update(ds.attrs)
    yml = dict(p.yml, name=os.path.basename(dest),
               description=f"{len(docs)} of {n} documents of {p.yml.get('name')}, sampled with seed {seed}")
    journal = _journal(p.journal, dest, docs, seed, out, os.path.join(tmp, p.files["meta"]), t, sum(sizes))
    checkpoint.save(tmp, journal)
    with open(os.path.join(tmp, YML), "w", encoding="utf-8") as f:
        yaml.safe_dump(yml, f, sort_keys=False, allow_unicode=True)
    os.replace(tmp, dest)
    if sum(sizes) > SEARCH_ROWS and log:
        log(f"note: the sample has {sum(sizes):,} rows; LSTMVis's fast pattern search covers only the first "
            f"{SEARCH_ROWS:,} (use --sample-docs {SEARCH_ROWS // t} or fewer to search it all)")
    return {"out": dest, "documents": len(docs), "rows": sum(sizes), "source_documents": docs}


def _make_room(dest):
    """Remove an earlier sample at dest; refuse to touch anything else."""
    if not os.path.exists(dest):
        return
    if os.path.isdir(dest) and not os.listdir(dest):
        os.rmdir(dest)
        return
    try:
        journal = checkpoint.load(dest)
    except Exception:
        journal = None
    if not journal or "sample" not in journal:
        raise OutputError(f"{dest} exists and is not a stream_export sample; move it away or choose another "
                          "sample folder")
    shutil.rmtree(dest)


def _copy_ranges(ds, dst, path, ranges):
    """Copy the given row ranges (sorted [start, stop) pairs) of ds, one after another, into a new dataset of
    the same type, chunking and compression, reading runs of adjacent ranges at once."""
    total = sum(b - a for a, b in ranges)
    out = dst.create_dataset(path, shape=(total, *ds.shape[1:]), maxshape=(None, *ds.shape[1:]),
                             dtype=ds.dtype, chunks=ds.chunks or True, compression=ds.compression,
                             compression_opts=ds.compression_opts, shuffle=ds.shuffle, fletcher32=ds.fletcher32)
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    most = max(1, (1 << 24) // row_bytes)  # rows per read, so memory stays bounded
    j, at = 0, 0
    while j < len(ranges):
        start, stop = ranges[j]
        while j + 1 < len(ranges) and ranges[j + 1][0] == stop and ranges[j + 1][1] - start <= most:
            j += 1
            stop = ranges[j][1]
        for first in range(start, stop, most):
            last = min(first + most, stop)
            out[at:at + last - first] = ds[first:last]
            at += last - first
        j += 1


def _journal(full, dest, docs, seed, out, meta, t, rows):
    """The sample's journal: the full export's, for the sampled documents, marked as a sample."""
    config = ExportConfig.from_dict(full["config"]).replace(out=os.path.abspath(dest), sample_docs=0).to_dict()
    with open_hdf5(meta) as f:
        lengths = f["documents/length"][()] if "documents/length" in f else np.full(len(docs), t)
    committed = {"documents": len(docs), "rows": rows, "tokens": int(np.minimum(lengths, t).sum()),
                 "truncated": int((lengths > t).sum())}
    return {**{k: v for k, v in full.items() if k != "summary"}, "config": config, "committed": committed,
            "totals": {"documents": len(docs), "rows": len(docs) * t},
            "sample": {"source": os.path.abspath(out), "seed": seed, "documents": docs}}
