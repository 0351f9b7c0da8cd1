"""The LSTMVis project on disk: resizable HDF5 datasets grown batch by batch, .dict files and lstm.yml
(h5py only here).

Layout, for N documents of T timesteps (row r = document r // T, timestep r % T):
  train.hdf5  words            (N*T,)        int32   padded token ids, document-major
  states.hdf5 states{k}        (N*T, cells)  float32 hidden state of recurrent layer k (1 = nearest input)
  meta.hdf5   label            (N*T,)        int32   the document's class at every timestep (with labels)
              doc              (N*T,)        int64   the document's index at every timestep
              documents/length (N,)          int64   tokens per document before truncation
              documents/id     (N,)          str     the document's id column (with --id-column)
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np

from stream_export.errors import InputError, OutputError

CHUNK_BYTES = 1 << 20
FILES = {"states": "states.hdf5", "train": "train.hdf5", "meta": "meta.hdf5",
         "words": "words.dict", "labels": "labels.dict"}


class ProjectWriter:
    """Appends batches to a project's HDF5 datasets. Created empty and flushed before the first batch, so
    a killed export always leaves files that reopen; `truncate` rolls back to a committed row count."""

    def __init__(self, out: str, layers: list[tuple[str, int]], max_len: int, labels: bool, doc_ids: bool,
                 create: bool):
        """layers: (dataset name, cells) per exported layer, e.g. [("states1", 256)]."""
        self.out, self.max_len, self.layers = out, max_len, layers
        self.files = {}
        try:
            for key in ("states", "train", "meta"):
                self.files[key] = _open(os.path.join(out, FILES[key]), "w" if create else "r+")
        except BaseException:
            self.close()
            raise
        if create:
            for name, cells in layers:
                _dataset(self.files["states"], name, (cells,), np.float32)
            _dataset(self.files["train"], "words", (), np.int32)
            if labels:
                _dataset(self.files["meta"], "label", (), np.int32)
            _dataset(self.files["meta"], "doc", (), np.int64)
            _dataset(self.files["meta"], "documents/length", (), np.int64)
            if doc_ids:
                import h5py
                _dataset(self.files["meta"], "documents/id", (), h5py.string_dtype("utf-8"), chunk_rows=4096)
            self.flush()
        self.row_sets = [self.files["states"][name] for name, _ in layers] + [self.files["train"]["words"]]
        meta = self.files["meta"]
        self.row_sets += [meta[k] for k in ("label", "doc") if k in meta]
        self.doc_sets = [meta["documents/length"]] + ([meta["documents/id"]] if "documents/id" in meta else [])

    @property
    def rows(self) -> int:
        return self.files["train"]["words"].shape[0]

    def append(self, batch, states: list[np.ndarray]):
        """Write one batch: its padded words, its states (n, T, cells) per layer and its meta tracks."""
        n, t = batch.tokens.shape
        for (name, _), s in zip(self.layers, states):
            if not np.isfinite(s).all():
                doc = batch.first_doc + int(np.flatnonzero(~np.isfinite(s).reshape(n, -1).all(axis=1))[0])
                raise InputError(f"document {doc}: layer {name} produced NaN or Inf; nothing of it was "
                                 "written (check the model's weights and the document's tokens)")
        start, stop = self.rows, self.rows + n * t
        self._check_space(start, stop, n, batch.doc_ids)
        doc_index = np.arange(batch.first_doc, batch.first_doc + n, dtype=np.int64)
        values = [s.reshape(n * t, -1) for s in states] + [batch.tokens.reshape(-1)]
        if batch.labels is not None:
            values.append(np.repeat(batch.labels, t))
        values.append(np.repeat(doc_index, t))
        per_doc = [batch.lengths] + ([batch.doc_ids] if batch.doc_ids is not None else [])
        d0 = self.doc_sets[0].shape[0]
        try:
            for ds, v in zip(self.row_sets, values):
                ds.resize(stop, axis=0)
                ds[start:stop] = v
            for ds, v in zip(self.doc_sets, per_doc):
                ds.resize(d0 + n, axis=0)
                ds[d0:d0 + n] = v
        except (OSError, RuntimeError) as e:  # h5py raises RuntimeError for some failed writes
            raise _io_error(f"writing rows {start}..{stop} to {self.out}", e) from e

    def _check_space(self, start, stop, n, doc_ids):
        """Stop before HDF5 meets a full disk: after a failed write its library state is broken (a later
        close or garbage collection can crash the process), so never let it get there from our writes.
        Counts the chunks the batch allocates (HDF5 allocates whole chunks) plus a margin for metadata."""
        d0 = self.doc_sets[0].shape[0]
        spans = [(ds, start, stop) for ds in self.row_sets] + [(ds, d0, d0 + n) for ds in self.doc_sets]
        need = 1 << 20
        for ds, a, b in spans:
            rows = ds.chunks[0]
            chunk_bytes = rows * ds.dtype.itemsize * int(np.prod(ds.chunks[1:], dtype=np.int64))
            need += (-(-b // rows) - -(-a // rows)) * chunk_bytes
        if doc_ids is not None:
            need += sum(len(s.encode()) + 16 for s in doc_ids)
        free = shutil.disk_usage(self.out).free
        if free < need:
            raise DiskFull(f"disk full: {self.out} has {free / 2**20:,.1f} MiB free and the next batch needs "
                           f"about {need / 2**20:,.1f} MiB; free some space and resume")

    def truncate(self, docs: int):
        """Cut every dataset back to `docs` documents (rows written after the last commit are dropped)."""
        for ds in self.row_sets:
            ds.resize(docs * self.max_len, axis=0)
        for ds in self.doc_sets:
            ds.resize(docs, axis=0)

    def flush(self):
        try:
            for f in self.files.values():
                f.flush()
        except (OSError, RuntimeError) as e:
            raise _io_error(f"flushing the HDF5 files in {self.out}", e) from e

    def close(self, check: bool = True):
        """Close every file; with check=False (cleaning up after another error) failures are ignored."""
        files, self.files = self.files, {}
        self.row_sets = self.doc_sets = []  # dataset handles must not outlive their files
        error = None
        for f in files.values():
            try:
                f.close()
            except (OSError, RuntimeError) as e:
                error = error or e
        if error is not None and check:
            raise _io_error(f"closing the HDF5 files in {self.out}", error) from error


class DiskFull(OutputError):
    """Too little space for the next batch; nothing of it was written."""


def _io_error(what, e) -> OutputError:
    error = OutputError(f"{what} failed: {e}; the last commit is intact, resume once the cause "
                        "(disk full?) is fixed")
    error.hdf5_broken = True  # see _check_space: the process should exit without touching HDF5 again
    return error


def _open(path, mode):
    import h5py

    try:
        return h5py.File(path, mode)
    except (OSError, BlockingIOError) as e:
        text = str(e)
        if "errno = 11" in text or "lock" in text.lower() or getattr(e, "errno", None) == errno.EAGAIN:
            raise OutputError(f"{path} is held open by another process (an LSTMVis server?): {text}; "
                              "stop that process and run again") from e
        raise OutputError(f"{path} cannot be opened for writing: {text}") from e


def _dataset(f, name, row_shape, dtype, chunk_rows=None):
    """A resizable dataset chunked by whole rows of about CHUNK_BYTES."""
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize if row_shape else 4
    rows = chunk_rows or max(1, CHUNK_BYTES // max(row_bytes, np.dtype(dtype).itemsize))
    return f.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype,
                            chunks=(rows, *row_shape))


def dataset_lengths(out: str) -> dict[str, int]:
    """First-dimension length of every dataset of the project, as '<file key>::<path>'."""
    import h5py

    lengths = {}
    for key in ("states", "train", "meta"):
        with h5py.File(os.path.join(out, FILES[key]), "r") as f:
            f.visititems(lambda path, obj: lengths.__setitem__(f"{key}::{path}", obj.shape[0])
                         if isinstance(obj, h5py.Dataset) else None)
    return lengths


def unique_values(out: str, key: str, path: str, block: int = 1 << 24) -> np.ndarray:
    """The sorted distinct values of a 1-D dataset, read block by block."""
    import h5py

    seen = np.empty(0, dtype=np.int64)
    with h5py.File(os.path.join(out, FILES[key]), "r") as f:
        ds = f[path]
        for start in range(0, ds.shape[0], block):
            seen = np.union1d(seen, np.unique(ds[start:start + block]))
    return seen


def write_lstm_yml(out: str, name: str, layers: list[str], labels: bool, num_docs: int):
    """Describe the datasets that were written; a meta track or state type is declared only if its
    dataset exists with the same number of rows as the words."""
    lengths = dataset_lengths(out)
    rows = lengths["train::words"]
    for ds in [f"states::{n}" for n in layers] + ["meta::doc"] + (["meta::label"] if labels else []):
        if lengths.get(ds) != rows:
            raise OutputError(f"{out}: dataset {ds} has {lengths.get(ds)} rows but words has {rows}; "
                              "the export is inconsistent, run it again with --overwrite")
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    lines = [f"name: {q(name)}",
             f"description: {q(f'{name}: {num_docs} documents exported by stream_export')}",
             "files:",
             f"  states: {FILES['states']}",
             f"  train: {FILES['train']}",
             f"  words: {FILES['words']}",
             f"  meta: {FILES['meta']}"]
    if labels:
        lines.append(f"  labels: {FILES['labels']}")
    lines += ["word_sequence: {file: train, path: words, dict_file: words}",
              "states:",
              "  file: states",
              "  types:"]
    lines += [f"    - {{type: state, layer: {k}, path: {n}}}" for k, n in enumerate(layers, 1)]
    lines.append("meta:")
    if labels:
        lines.append("  label: {file: meta, path: label, dict: labels, vis: {type: discrete, range: dict}}")
    lines.append(f"  document: {{file: meta, path: doc, vis: {{type: scalar, range: [0, {max(num_docs - 1, 1)}]}}}}")
    path = os.path.join(out, "lstm.yml")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
