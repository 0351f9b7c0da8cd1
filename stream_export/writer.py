"""The LSTMVis project on disk: resizable HDF5 datasets grown batch by batch, .dict files and lstm.yml
(h5py only here).

Layout, for N documents of T timesteps (row r = document r // T, timestep r % T; with --skip-padding only
the rows of real tokens, R rows in all, document d starting at row documents/start[d]):
  train.hdf5  words            (R,)          int32   token ids, document-major
  states.hdf5 states{k}        (R, cells)    float32 hidden state of recurrent layer k (1 = nearest input);
                                                     states{k}_fw / states{k}_bw for a Bidirectional layer
              cells{k}         (R, cells)    float32 LSTM cell state (with --cell-states), _fw / _bw likewise
  meta.hdf5   label            (R,)          int32   the document's class at every timestep (with labels)
              doc              (R,)          int64   the document's index at every timestep
              predictions/p{j} (R,)          float32 the model's output for class j (with --predictions)
              predictions/class (R,)         int32   the predicted class
              documents/length (N,)          int64   tokens per document before truncation
              documents/start  (N,)          int64   the document's first row
              documents/id     (N,)          str     the document's id column (with --id-column)
              documents/source (N,)          int64   the document's global index in the Parquet input
                                                     (with --on-error skip, where some are left out)
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np

from stream_export.errors import OutputError

CHUNK_BYTES = 1 << 20
FILES = {"states": "states.hdf5", "train": "train.hdf5", "meta": "meta.hdf5",
         "words": "words.dict", "labels": "labels.dict", "classes": "classes.dict"}


class ProjectWriter:
    """Appends batches to a project's HDF5 datasets. Created empty and flushed before the first batch, so
    a killed export always leaves files that reopen; `truncate` rolls back to a committed row count."""

    def __init__(self, out: str, outputs: list, max_len: int, labels: bool, doc_ids: bool, create: bool,
                 skip_padding: str | None = None, source: bool = False, compression: str | None = None,
                 compression_level: int | None = None, chunk_rows: int | None = None,
                 batch_rows: int | None = None):
        """outputs: the state model's model.Output list, in its order (an output's dtype is its dataset's
        storage type: a float32 state stored as float16 is cast here). skip_padding: None to write every
        timestep, or the padding side ('pre'/'post') to write only the rows of real tokens. source: also
        store each document's global input index (documents/source). compression (None, 'gzip' or 'lzf')
        applies to every row dataset; chunk_rows to the states and cells datasets (default about
        CHUNK_BYTES per chunk). batch_rows: the rows every batch but the last appends, when they are always
        the same; chunks then divide a batch where a divisor near CHUNK_BYTES exists, so a batch fills whole
        chunks, which HDF5 writes without copying them through its chunk cache."""
        self.out, self.max_len, self.outputs, self.skip_padding = out, max_len, outputs, skip_padding
        filters = {"compression": compression, "compression_opts": compression_level} if compression else {}
        self.files = {}
        try:
            for key in ("states", "train", "meta"):
                self.files[key] = _open(os.path.join(out, FILES[key]), "w" if create else "r+")
        except BaseException:
            self.close()
            raise
        if create:
            for o in outputs:
                _dataset(self.files[o.file], o.path, (o.cells,) if o.cells else (), np.dtype(o.dtype),
                         chunk_rows=chunk_rows if o.cells else None, batch_rows=batch_rows, **filters)
            _dataset(self.files["train"], "words", (), np.int32, batch_rows=batch_rows, **filters)
            if labels:
                _dataset(self.files["meta"], "label", (), np.int32, batch_rows=batch_rows, **filters)
            _dataset(self.files["meta"], "doc", (), np.int64, batch_rows=batch_rows, **filters)
            _dataset(self.files["meta"], "documents/length", (), np.int64)
            _dataset(self.files["meta"], "documents/start", (), np.int64)
            if doc_ids:
                import h5py
                _dataset(self.files["meta"], "documents/id", (), h5py.string_dtype("utf-8"), chunk_rows=4096)
            if source:
                _dataset(self.files["meta"], "documents/source", (), np.int64)
            self.flush()
        self.fds = [f.id.get_vfd_handle() for f in self.files.values()]
        self.row_sets = [self.files[o.file][o.path] for o in outputs] + [self.files["train"]["words"]]
        meta = self.files["meta"]
        self.row_sets += [meta[k] for k in ("label", "doc") if k in meta]
        self.doc_sets = [meta["documents/length"], meta["documents/start"]]
        self.doc_sets += [meta["documents/id"]] if "documents/id" in meta else []
        self.doc_sets += [meta["documents/source"]] if "documents/source" in meta else []

    @property
    def rows(self) -> int:
        return self.files["train"]["words"].shape[0]

    def append(self, batch, values: list[np.ndarray]) -> int:
        """Write one batch: its words, the state model's values (n, T, ...) per output and its meta tracks.
        Returns the number of rows written."""
        n, t = batch.tokens.shape
        # Cast to each dataset's storage type; pipeline._Run.finite has already refused (or skipped) every
        # document with NaN or Inf, or with values beyond that type's range.
        values = [v.astype(o.dtype) if v.dtype.kind == "f" and v.dtype != np.dtype(o.dtype) else v
                  for o, v in zip(self.outputs, values)]
        if self.skip_padding:
            keep = real_tokens(batch.lengths, t, self.skip_padding).reshape(-1)
            counts = np.minimum(batch.lengths, t).astype(np.int64)
        else:
            keep, counts = slice(None), np.full(n, t, dtype=np.int64)
        start, stop = self.rows, self.rows + int(counts.sum())
        self._check_space(start, stop, n, batch.doc_ids)
        doc_index = np.arange(batch.first_doc, batch.first_doc + n, dtype=np.int64)
        rows = [v.reshape(n * t, *v.shape[2:])[keep] for v in values] + [batch.tokens.reshape(-1)[keep]]
        if batch.labels is not None:
            rows.append(np.repeat(batch.labels, counts))
        rows.append(np.repeat(doc_index, counts))
        per_doc = [batch.lengths, start + np.cumsum(counts) - counts]
        per_doc += [batch.doc_ids] if batch.doc_ids is not None else []
        per_doc += [batch.source] if len(self.doc_sets) > len(per_doc) else []
        d0 = self.doc_sets[0].shape[0]
        try:
            for ds, v in zip(self.row_sets, rows):
                ds.resize(stop, axis=0)
                ds[start:stop] = v
            for ds, v in zip(self.doc_sets, per_doc):
                ds.resize(d0 + n, axis=0)
                ds[d0:d0 + n] = v
        except (OSError, RuntimeError) as e:  # h5py raises RuntimeError for some failed writes
            raise _io_error(f"writing rows {start}..{stop} to {self.out}", e) from e
        return stop - start

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

    def truncate(self, docs: int, rows: int | None = None):
        """Cut every dataset back to `docs` documents and `rows` rows (default docs * T), dropping what was
        written after the last commit."""
        rows = docs * self.max_len if rows is None else rows
        for ds in self.row_sets:
            ds.resize(rows, axis=0)
        for ds in self.doc_sets:
            ds.resize(docs, axis=0)

    def flush(self):
        """Hand everything written so far, HDF5's own caches included, to the kernel (not to the disk: see
        sync)."""
        try:
            for f in self.files.values():
                f.flush()
        except (OSError, RuntimeError) as e:
            raise _io_error(f"flushing the HDF5 files in {self.out}", e) from e

    def sync(self):
        """fsync the files, so that what the last flush handed over survives a power loss too. Makes no
        HDF5 call, so it may run in another thread while the next batches are appended."""
        try:
            for fd in self.fds:
                os.fsync(fd)
        except OSError as e:
            raise _io_error(f"syncing the HDF5 files in {self.out} to disk", e) from e

    def close(self, check: bool = True):
        """Close every file; with check=False (cleaning up after another error) failures are ignored."""
        files, self.files, self.fds = self.files, {}, []
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


def all_finite(v: np.ndarray) -> bool:
    """True when v holds no NaN or Inf: its sum (accumulated in float32 at least) is finite then, in one
    pass without a temporary array; only a sum that overflows needs the element-wise check."""
    total = v.sum(dtype=np.promote_types(v.dtype, np.float32))
    return bool(np.isfinite(total)) or bool(np.isfinite(v).all())


def real_tokens(lengths: np.ndarray, max_len: int, padding: str) -> np.ndarray:
    """(n, max_len) bool: True at the positions that hold one of the document's tokens after padding or
    truncating to max_len ('pre' padding puts them at the end)."""
    keep = np.minimum(np.asarray(lengths), max_len)[:, None]
    pos = np.arange(max_len)[None, :]
    return pos >= max_len - keep if padding == "pre" else pos < keep


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


def _dataset(f, name, row_shape, dtype, chunk_rows=None, batch_rows=None, **filters):
    """A resizable dataset chunked by whole rows of about CHUNK_BYTES (or chunk_rows rows), aligned with
    batches of batch_rows rows where that keeps the chunks between an eighth and all of CHUNK_BYTES."""
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize if row_shape else 4
    rows = chunk_rows or max(1, CHUNK_BYTES // max(row_bytes, np.dtype(dtype).itemsize))
    if chunk_rows is None and batch_rows:
        rows = _aligned(rows, batch_rows)
    return f.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype,
                            chunks=(rows, *row_shape), **filters)


def _aligned(target: int, batch_rows: int) -> int:
    """The largest divisor of batch_rows (a batch itself included) of at most target rows, if it is at
    least target / 8; else target."""
    for parts in range(-(-batch_rows // target), batch_rows // max(1, target // 8) + 1):
        if batch_rows % parts == 0:
            return batch_rows // parts
    return target


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


def value_range(out: str, key: str, path: str, block: int = 1 << 24) -> tuple[float, float]:
    """(min, max) of a 1-D dataset, read block by block; (0, 0) when it is empty."""
    import h5py

    lo, hi = np.inf, -np.inf
    with h5py.File(os.path.join(out, FILES[key]), "r") as f:
        ds = f[path]
        for start in range(0, ds.shape[0], block):
            part = ds[start:start + block]
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def track_name(text: str) -> str:
    """A class name as a meta track key: letters, digits, '_' and '-' only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in text)


def write_lstm_yml(out: str, name: str, outputs: list, labels: bool, num_docs: int,
                   class_names: list[str] | None = None):
    """Describe the datasets that were written; a meta track or state type is declared only if its
    dataset exists with the same number of rows as the words. outputs: the state model's model.Output
    list; class_names: a name per class of the predictions (written to classes.dict)."""
    lengths = dataset_lengths(out)
    rows = lengths["train::words"]
    for ds in [f"{o.file}::{o.path}" for o in outputs] + ["meta::doc"] + (["meta::label"] if labels else []):
        if lengths.get(ds) != rows:
            raise OutputError(f"{out}: dataset {ds} has {lengths.get(ds)} rows but words has {rows}; "
                              "the export is inconsistent, run it again with --overwrite")
    predictions = [o for o in outputs if o.file == "meta"]
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
    if predictions:
        lines.append(f"  classes: {FILES['classes']}")
    lines += ["word_sequence: {file: train, path: words, dict_file: words}",
              "states:",
              "  file: states",
              "  types:"]
    lines += [f"    - {{type: state, layer: {o.layer}, path: {o.path}}}" for o in outputs if o.file == "states"]
    lines.append("meta:")
    if labels:
        lines.append("  label: {file: meta, path: label, dict: labels, vis: {type: discrete, range: dict}}")
    lines.append(f"  document: {{file: meta, path: doc, vis: {{type: scalar, range: [0, {max(num_docs - 1, 1)}]}}}}")
    probabilities = [o for o in predictions if o.kind == "probability"]
    for j, o in enumerate(probabilities):
        lo, hi = value_range(out, o.file, o.path)
        lo, hi = min(lo, 0.0), max(hi, 1.0)  # probabilities get [0, 1]; logits their own span
        names = class_names or [str(i) for i in range(max(2, len(probabilities)))]
        key = q("p_" + track_name(names[j] if len(probabilities) > 1 else names[-1]))  # sigmoid: P(class 1)
        lines.append(f"  {key}: {{file: meta, path: {o.path}, vis: {{type: scalar, range: [{lo:.6g}, {hi:.6g}]}}}}")
    if predictions:
        lines.append("  predicted: {file: meta, path: predictions/class, dict: classes, "
                     "vis: {type: discrete, range: dict}}")
    path = os.path.join(out, "lstm.yml")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
