"""One frozen ExportConfig: what to export and how, validated, and round-tripped through the journal."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from stream_export.errors import ConfigError

PADDING_CHOICES = ("pre", "post")
ON_ERROR_CHOICES = ("stop", "skip")
DTYPE_CHOICES = ("float32", "float16")
COMPRESSION_CHOICES = ("none", "gzip", "lzf")


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides the content of an export. Two exports with equal configs, models and
    inputs write identical files."""

    model: str
    """Path of the Keras model: a .keras or .h5 file (Keras 3, or Keras 2 as tf.keras saved it)."""
    inputs: tuple[str, ...]
    """Parquet files, directories of them, or glob patterns, as the user gave them."""
    out: str
    """The project folder to write (LSTMVis names the project after its basename)."""
    vocab: str | None = None
    """Token file (line i = id i) or JSON token->id mapping; None means each id stands for itself."""
    tokens_column: str = "tokens"
    label_column: str | None = None
    id_column: str | None = None
    label_names: tuple[str, ...] | None = None
    """Class names, index = class id; strings in the label column are looked up here."""
    max_len: int | None = None
    """Timesteps per document; None takes the model's fixed input length."""
    padding: str = "pre"
    truncating: str = "pre"
    pad_value: int = 0
    layers: tuple[str, ...] | None = None
    """Names of the recurrent layers to export; None exports all of them."""
    cell_states: bool = False
    """Also export the LSTM cell state c at every timestep (cells{k})."""
    predictions: bool = False
    """Also export the model's own per-timestep output: a meta track per class and the predicted class."""
    skip_padding: bool = False
    """Write only the rows of real tokens, not the padding."""
    batch_size: int = 128
    commit_rows: int = 1_000_000
    """Commit (flush + journal) at least every this many rows ..."""
    commit_seconds: float = 60.0
    """... and at least every this many seconds."""
    sample_docs: int = 0
    """When positive, also write a project of this many sampled documents beside OUT (see sample.py)."""
    sample_seed: int = 0
    on_error: str = "stop"
    """What a bad document does: 'stop' the export at the first one, or 'skip' it (left out, counted and
    listed in skipped.tsv). File-level problems stop the export either way."""
    num_workers: int | None = None
    """Split the export into this many parts (see sharding.py); None exports everything into `out`."""
    worker_index: int | None = None
    """Which part this run exports (0-based), written to out/parts/part-IIIII-of-NNNNN."""
    dtype: str = "float32"
    """Storage type of the states and cells datasets; float16 halves them (values beyond its range are an error)."""
    compression: str = "none"
    """HDF5 filter of every row dataset: none, gzip or lzf (all read by h5py, and so LSTMVis, without plugins)."""
    compression_level: int | None = None
    """gzip level 0-9 (None: h5py's default, 4)."""
    chunk_rows: int | None = None
    """Rows per HDF5 chunk of the states and cells datasets; None: about 1 MiB of rows."""

    def __post_init__(self):
        if not self.inputs:
            raise ConfigError("no --input given: name at least one Parquet file, directory or glob")
        for name in ("padding", "truncating"):
            value = getattr(self, name)
            if value not in PADDING_CHOICES:
                raise ConfigError(f"--{name} must be one of {', '.join(PADDING_CHOICES)}; got {value!r}")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"--max-len must be at least 1; got {self.max_len}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1; got {self.batch_size}")
        if self.commit_rows < 1 or self.commit_seconds <= 0:
            raise ConfigError("--commit-every must be positive")
        if self.label_names is not None:
            blank = [i for i, name in enumerate(self.label_names) if not name.strip()]
            if blank:
                raise ConfigError(f"--label-names has an empty name for class {blank[0]}: give every class "
                                  "a name (LSTMVis drops a dict line without one)")
            twice = sorted({n for n in self.label_names if self.label_names.count(n) > 1})
            if twice:
                raise ConfigError(f"--label-names gives {twice[0]!r} to two classes: names must differ")
        if self.label_names is not None and self.label_column is None:
            raise ConfigError("--label-names needs --label-column (the column holding each document's class)")
        if self.sample_docs < 0:
            raise ConfigError(f"--sample-docs must be 0 (no sample) or more; got {self.sample_docs}")
        if self.on_error not in ON_ERROR_CHOICES:
            raise ConfigError(f"--on-error must be one of {', '.join(ON_ERROR_CHOICES)}; got {self.on_error!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}; got {self.dtype!r}")
        if self.compression not in COMPRESSION_CHOICES:
            raise ConfigError(f"--compression must be one of {', '.join(COMPRESSION_CHOICES)} (gzip:LEVEL for "
                              f"a gzip level); got {self.compression!r}")
        if self.compression_level is not None and (self.compression != "gzip"
                                                   or not 0 <= self.compression_level <= 9):
            raise ConfigError(f"a compression level is for gzip only, 0-9; got {self.compression}:"
                              f"{self.compression_level}")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ConfigError(f"--chunk-rows must be at least 1; got {self.chunk_rows}")
        if self.layers is not None and not self.layers:
            raise ConfigError("--layers is empty: name at least one recurrent layer")
        if self.num_workers is not None:
            if self.num_workers < 1:
                raise ConfigError(f"--num-workers must be at least 1; got {self.num_workers}")
            if self.worker_index is None or not 0 <= self.worker_index < self.num_workers:
                raise ConfigError(f"--worker-index must be in 0..{self.num_workers - 1}; got {self.worker_index}")
            if self.sample_docs:
                raise ConfigError("--sample-docs cannot be combined with --num-workers: run `stream-export "
                                  "sample OUT` after `stream-export merge OUT`")
            if self.on_error == "skip":
                raise ConfigError("--on-error skip cannot be combined with --num-workers yet: the parts would "
                                  "number their documents on their own; export in one process, or fix the "
                                  "bad documents first")
        elif self.worker_index is not None:
            raise ConfigError("--worker-index needs --num-workers (how many parts the export is split into)")

    @property
    def name(self) -> str:
        """The LSTMVis project name: the output folder's basename."""
        return os.path.basename(os.path.normpath(self.out))

    def replace(self, **changes) -> ExportConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ExportConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}: written by a newer stream_export?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
