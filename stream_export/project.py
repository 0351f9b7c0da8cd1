"""Read an exported project back: its journal, lstm.yml, HDF5 datasets and .dict files, as LSTMVis would.

Everything here is read-only and data-driven: the files come from lstm.yml (or, before lstm.yml is written,
from the writer's default layout), and every dataset found in them is described, whatever its name, so
datasets added by later exporters are covered without changes here.
"""

from __future__ import annotations

import os

import numpy as np

from stream_export import checkpoint
from stream_export.vocab import unescape
from stream_export.writer import FILES

HDF5_SUFFIXES = (".h5", ".hdf5")
DICT_SUFFIXES = (".dict", ".txt")
YML = "lstm.yml"
BLOCK_BYTES = 1 << 25
"""Datasets are scanned in row blocks of about this many bytes, so memory stays flat on any size."""


class Project:
    """A project folder opened for reading. `journal` and `yml` are None when absent; `yml_error` says why
    lstm.yml could not be parsed."""

    def __init__(self, out: str):
        self.out = out
        self.journal = checkpoint.load(out)  # ResumeError when unreadable
        self.yml, self.yml_error = None, None
        path = os.path.join(out, YML)
        if os.path.exists(path):
            import yaml

            try:
                with open(path, encoding="utf-8") as f:
                    self.yml = yaml.safe_load(f)
                if not isinstance(self.yml, dict):
                    self.yml, self.yml_error = None, "it is not a YAML mapping"
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
                self.yml_error = str(e).replace("\n", " ")

    @property
    def files(self) -> dict[str, str]:
        """files key -> file name relative to the folder (lstm.yml's, else the writer's layout)."""
        files = self.yml.get("files") if self.yml else None
        return dict(files) if isinstance(files, dict) else dict(FILES)

    @property
    def max_len(self) -> int | None:
        return self.journal["max_len"] if self.journal else None

    @property
    def documents(self) -> int | None:
        """Committed documents according to the journal."""
        return self.journal["committed"]["documents"] if self.journal else None

    @property
    def skip_padding(self) -> bool:
        """Whether only the rows of real tokens were written (--skip-padding)."""
        return bool(self.journal and self.journal["config"].get("skip_padding"))

    def doc_rows(self, docs) -> list[tuple[int, int]]:
        """Each document's row range [start, stop): d*T..(d+1)*T, or with --skip-padding its real tokens,
        from meta's documents/start and documents/length."""
        t = self.max_len
        if not self.skip_padding:
            return [(d * t, (d + 1) * t) for d in docs]
        with open_hdf5(self.path("meta")) as f:
            start, length = f["documents/start"], f["documents/length"]
            return [(int(start[d]), int(start[d]) + min(int(length[d]), t)) for d in docs]

    def path(self, key: str) -> str:
        return os.path.join(self.out, self.files[key])

    def hdf5_keys(self) -> list[str]:
        """files keys naming HDF5 files (the only ones LSTMVis opens as HDF5), in lstm.yml order."""
        return [k for k, name in self.files.items() if str(name).endswith(HDF5_SUFFIXES)]

    def state_types(self) -> list[dict]:
        """lstm.yml's states.types, each with its file key filled in from states.file."""
        states = (self.yml or {}).get("states") or {}
        default = states.get("file")
        return [dict(t, file=t.get("file", default)) for t in states.get("types") or [] if isinstance(t, dict)]

    def meta_tracks(self) -> dict[str, dict]:
        meta = (self.yml or {}).get("meta") or {}
        return {name: spec for name, spec in meta.items() if isinstance(spec, dict)}

    def words_source(self) -> tuple[str, str]:
        ws = (self.yml or {}).get("word_sequence") or {"file": "train", "path": "words"}
        return ws.get("file"), ws.get("path")


def open_hdf5(path: str):
    import h5py

    return h5py.File(path, "r")


def visit_datasets(f) -> list:
    """Every dataset of an open HDF5 file, as (path, h5py.Dataset), in a stable (sorted) order."""
    import h5py

    found = []
    f.visititems(lambda path, obj: found.append((path, obj)) if isinstance(obj, h5py.Dataset) else None)
    return sorted(found, key=lambda item: item[0])


def row_blocks(ds, start: int = 0, stop: int | None = None):
    """Yield (first row, array) blocks of a dataset's rows, about BLOCK_BYTES each."""
    stop = ds.shape[0] if stop is None else stop
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    step = max(1, BLOCK_BYTES // row_bytes)
    for first in range(start, stop, step):
        yield first, ds[first:min(first + step, stop)]


def unique_ids(ds) -> np.ndarray:
    """Sorted distinct values of a 1-D integer dataset, read block by block."""
    seen = np.empty(0, dtype=np.int64)
    for _, block in row_blocks(ds):
        seen = np.union1d(seen, np.unique(block))
    return seen


def read_dict(path: str) -> tuple[dict[int, str], list[tuple[int, str]]]:
    """Parse a .dict like the LSTMVis server: ({id: escaped token}, [(line number, line) it would drop or
    fail on]). A line LSTMVis drops is one that does not split into exactly two fields; a line whose
    second field is not an integer makes its loader fail."""
    entries, bad = {}, []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2:
                bad.append((number, line.rstrip("\n")))
                continue
            try:
                entries[int(fields[1])] = fields[0]
            except ValueError:
                bad.append((number, line.rstrip("\n")))
    return entries, bad


def tokens(path: str) -> dict[int, str]:
    """A .dict as {id: token}, unescaped."""
    return {i: unescape(t) for i, t in read_dict(path)[0].items()}


def dataset_info(ds) -> dict:
    """Shape, type, layout and size of one dataset, for people and scripts."""
    info = {"shape": list(ds.shape), "dtype": str(ds.dtype), "maxshape": list(ds.maxshape or ()),
            "chunks": list(ds.chunks) if ds.chunks else None, "compression": ds.compression,
            "compression_opts": ds.compression_opts, "bytes_on_disk": int(ds.id.get_storage_size()),
            "virtual": bool(ds.is_virtual)}
    if ds.is_virtual:
        info["sources"] = sorted({f"{m.file_name}::{m.dset_name}" for m in ds.virtual_sources()})
    return info
