"""Parquet shards -> fixed-size batches of padded documents, from any document position (pyarrow only here)."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

from stream_export import remote
from stream_export.errors import InputError
from stream_export.remote import is_uri, open_input


def pad(offsets: np.ndarray, values: np.ndarray, max_len: int, padding: str = "pre",
        truncating: str = "pre", value: int = 0) -> np.ndarray:
    """Pad/truncate ragged documents given as Arrow-style offsets and flat values, exactly like
    `keras.utils.pad_sequences(..., maxlen=max_len, dtype="int32")`, without a Python loop per document."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    out = np.full((n, max_len), value, dtype=np.int32)
    lengths = np.diff(offsets)
    keep = np.minimum(lengths, max_len)
    src_start = offsets[:-1] + (lengths - keep if truncating == "pre" else 0)
    dst_start = max_len - keep if padding == "pre" else np.zeros(n, dtype=np.int64)
    total = int(keep.sum())
    if total:
        rows = np.repeat(np.arange(n), keep)
        within = np.arange(total) - np.repeat(np.cumsum(keep) - keep, keep)
        out[rows, np.repeat(dst_start, keep) + within] = values[np.repeat(src_start, keep) + within]
    return out


def resolve_inputs(patterns) -> list[str]:
    """Expand files, directories (their *.parquet files, recursively) and globs into sorted unique paths.
    A URI (s3://, gs://, hdfs://, file://) is expanded through its pyarrow filesystem and kept as a URI."""
    paths = set()
    for pattern in patterns:
        if is_uri(pattern):
            paths.update(remote.resolve(pattern))
            continue
        if os.path.isdir(pattern):
            found = glob.glob(os.path.join(glob.escape(pattern), "**", "*.parquet"), recursive=True)
            if not found:
                raise InputError(f"input directory {pattern} holds no *.parquet files")
        elif os.path.exists(pattern):
            found = [pattern]
        else:
            found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
            if not found:
                raise InputError(f"input {pattern!r} matches no file: check the path or quote the glob")
        paths.update(os.path.abspath(p) for p in found)
    return sorted(paths)


@dataclass(frozen=True)
class Shard:
    """One Parquet file and the row layout read from its footer."""

    path: str
    row_groups: tuple[int, ...]
    """Rows in each row group, in file order."""

    @property
    def num_rows(self) -> int:
        return sum(self.row_groups)


@dataclass(frozen=True)
class Columns:
    """Which columns to read and how to interpret them."""

    tokens: str = "tokens"
    label: str | None = None
    doc_id: str | None = None
    label_names: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [c for c in (self.tokens, self.label, self.doc_id) if c is not None]


@dataclass(frozen=True)
class Batch:
    """Consecutive documents, padded, with what the writer needs to store beside their states."""

    first_doc: int
    """Global index of the first document (documents are numbered across shards in sorted order)."""
    tokens: np.ndarray
    """(n, max_len) int32, padded/truncated like pad_sequences."""
    lengths: np.ndarray
    """(n,) int64, tokens per document before truncation."""
    labels: np.ndarray | None
    """(n,) int32 class ids, or None without a label column."""
    doc_ids: np.ndarray | None
    """(n,) object array of str, or None without an id column."""


def open_shards(paths, columns: Columns) -> list[Shard]:
    """Read every shard's footer, check the columns, and return the layout. Reads no data pages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards, first_schema = [], None
    for path in paths:
        try:
            meta = pq.ParquetFile(open_input(path)).metadata
        except (OSError, pa.ArrowInvalid) as e:
            raise InputError(f"shard {path} is not a readable Parquet file ({e}); "
                             "replace or remove it and run again") from e
        schema = meta.schema.to_arrow_schema()
        missing = [c for c in columns.names if c not in schema.names]
        if missing:
            raise InputError(f"shard {path} has no column {', '.join(map(repr, missing))}; its columns are "
                             f"{', '.join(schema.names)} (choose with --tokens-column/--label-column/--id-column)")
        _check_types(path, schema, columns)
        selected = pa.schema([schema.field(c) for c in columns.names])
        if first_schema is None:
            first_schema = (path, selected)
        elif not selected.equals(first_schema[1]):
            raise InputError(f"shard {path} has columns {selected} but shard {first_schema[0]} has "
                             f"{first_schema[1]}: all shards must share one schema")
        shards.append(Shard(path, tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))))
    return shards


def _check_types(path, schema, columns: Columns):
    import pyarrow as pa

    t = schema.field(columns.tokens).type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_integer(t.value_type):
        raise InputError(f"shard {path}: column {columns.tokens!r} must be a list of integers "
                         f"(token ids per document); it is {t}")
    if columns.label is not None:
        t = schema.field(columns.label).type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if columns.label_names is None:
                raise InputError(f"shard {path}: label column {columns.label!r} holds strings; give "
                                 "--label-names NAME,... so each name gets its class id")
        elif not pa.types.is_integer(t):
            raise InputError(f"shard {path}: label column {columns.label!r} must hold integer class ids "
                             f"or class names; it is {t}")


def iter_batches(shards: list[Shard], columns: Columns, max_len: int, batch_size: int, *,
                 padding="pre", truncating="pre", pad_value=0, start_doc=0, max_token=None, stop_doc=None,
                 align=False):
    """Yield Batch objects of exactly batch_size documents (the last may be smaller), starting at global
    document start_doc and ending before stop_doc (default: the end). With align=True batches end on
    multiples of batch_size in global numbering instead, so a start between them gives a smaller first
    batch, and any run of documents is batched as the whole corpus is (see tfdata.state_batches: a
    document's states are then bit-identical). Skips whole row groups before
    start_doc without reading them, and converts nothing from stop_doc on."""
    pending, pending_n, next_doc = [], 0, start_doc
    for shard, first_row, table in _iter_tables(shards, columns, start_doc, batch_size, stop_doc):
        chunk = _convert(shard, first_row, table, columns, max_len, padding, truncating, pad_value,
                         max_token)
        pending.append(chunk)
        pending_n += len(chunk[0])
        while pending_n >= (size := batch_size - next_doc % batch_size if align else batch_size):
            parts = [np.concatenate(p) if p[0] is not None else None for p in zip(*pending)]
            yield Batch(next_doc, *(p[:size] if p is not None else None for p in parts))
            next_doc += size
            rest = [p[size:] if p is not None else None for p in parts]
            pending_n -= size
            pending = [tuple(rest)] if pending_n else []
    if pending_n:
        parts = [np.concatenate(p) if p[0] is not None else None for p in zip(*pending)]
        yield Batch(next_doc, *parts)


def _iter_tables(shards, columns, start_doc, batch_size, stop_doc=None):
    """Yield (shard, row of first record in shard, RecordBatch), skipping start_doc documents and
    stopping before stop_doc."""
    import pyarrow.parquet as pq

    skip = start_doc
    left = None if stop_doc is None else stop_doc - start_doc
    for shard in shards:
        if left is not None and left <= 0:
            return
        if skip >= shard.num_rows:
            skip -= shard.num_rows
            continue
        if not shard.row_groups:
            continue  # pyarrow's batch reader fails on files without row groups
        group, row = 0, 0
        while skip >= shard.row_groups[group]:  # skip whole row groups without reading them
            skip -= shard.row_groups[group]
            row += shard.row_groups[group]
            group += 1
        try:
            reader = pq.ParquetFile(open_input(shard.path)).iter_batches(
                batch_size=max(batch_size, 1024), row_groups=range(group, len(shard.row_groups)),
                columns=columns.names)
            for rb in reader:
                if skip >= rb.num_rows:
                    skip, row = skip - rb.num_rows, row + rb.num_rows
                    continue
                if skip:
                    rb, row, skip = rb.slice(skip), row + skip, 0
                if left is not None:
                    if left <= 0:
                        return
                    rb = rb.slice(0, left) if rb.num_rows > left else rb
                    left -= rb.num_rows
                yield shard, row, rb
                row += rb.num_rows
        except OSError as e:
            raise InputError(f"shard {shard.path}: reading rows from {row} failed: {e}") from e


def _convert(shard, first_row, rb, columns, max_len, padding, truncating, pad_value, max_token):
    """One RecordBatch -> (tokens, lengths, labels, doc_ids) numpy arrays, validating as it goes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens = rb.column(columns.tokens)
    if tokens.null_count:
        row = first_row + int(np.flatnonzero(tokens.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"shard {shard.path}, row {row}: column {columns.tokens!r} is null "
                         "(a missing document); drop or fill it")
    values = tokens.flatten()  # respects the slice offset, unlike .values
    offsets = tokens.offsets.to_numpy() - tokens.offsets[0].as_py()
    if values.null_count:
        pos = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        row = int(np.searchsorted(offsets, pos, side="right")) - 1
        raise InputError(f"shard {shard.path}, row {first_row + row}, position {pos - offsets[row]}: "
                         f"column {columns.tokens!r} holds a null token id; drop or replace it")
    values = values.to_numpy()
    _check_ids(shard, first_row, values, offsets, columns.tokens, max_token)
    padded = pad(offsets, values, max_len, padding, truncating, pad_value)
    labels = doc_ids = None
    if columns.label is not None:
        labels = _labels(shard, first_row, rb.column(columns.label), columns)
    if columns.doc_id is not None:
        col = rb.column(columns.doc_id)
        doc_ids = np.array(pc.cast(col, pa.string()).to_pylist(), dtype=object)
    return padded, np.diff(offsets).astype(np.int64), labels, doc_ids


def _check_ids(shard, first_row, values, offsets, column, max_token):
    if not len(values):
        return
    limit = max_token if max_token is not None else np.iinfo(np.int32).max  # words are stored as int32
    bad = (values < 0) | (values > limit)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(offsets, pos, side="right")) - 1
        allowed = f"0..{limit}" + (" (the model's embedding size)" if max_token is not None else " (int32)")
        raise InputError(f"shard {shard.path}, row {first_row + row}, position {pos - offsets[row]}: "
                         f"token id {values[pos]} in column {column!r} is outside {allowed}; "
                         "fix the tokenisation or the vocabulary")


def _labels(shard, first_row, col, columns: Columns) -> np.ndarray:
    import pyarrow as pa

    if col.null_count:
        row = first_row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"shard {shard.path}, row {row}: label column {columns.label!r} is null; "
                         "give every document a class")
    names = columns.label_names
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        index = {name: i for i, name in enumerate(names)}
        out = np.empty(len(col), dtype=np.int32)
        for i, name in enumerate(col.to_pylist()):
            if name not in index:
                raise InputError(f"shard {shard.path}, row {first_row + i}: label {name!r} is not one of "
                                 f"--label-names {', '.join(names)}")
            out[i] = index[name]
        return out
    labels = col.to_numpy().astype(np.int64)
    bad = labels < 0 if names is None else (labels < 0) | (labels >= len(names))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        allowed = "non-negative" if names is None else f"0..{len(names) - 1} (--label-names)"
        raise InputError(f"shard {shard.path}, row {first_row + i}: label {labels[i]} in column "
                         f"{columns.label!r} is not a class id {allowed}")
    return labels.astype(np.int32)


def locate(shards: list[Shard], doc: int) -> tuple[str, int]:
    """(shard path, row in shard) of global document index doc."""
    for shard in shards:
        if doc < shard.num_rows:
            return shard.path, doc
        doc -= shard.num_rows
    raise IndexError(doc)
