"""Parquet shards -> fixed-size batches of padded documents, from any document position (pyarrow only here)."""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass

import numpy as np

from stream_export import remote
from stream_export.errors import InputError, VocabError
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
    source: np.ndarray | None = None
    """(n,) int64 global source index of each document (with --on-error skip they are not consecutive)."""

    def take(self, keep: np.ndarray) -> Batch:
        """The documents where keep is True, as a Batch of their own (first_doc still the batch's)."""
        pick = lambda v: None if v is None else v[keep]  # noqa: E731
        return Batch(self.first_doc, self.tokens[keep], self.lengths[keep], pick(self.labels),
                     pick(self.doc_ids), pick(self.source))


@dataclass(frozen=True)
class Skipped:
    """A bad document left out under --on-error skip."""

    source: int
    """Global source index (documents numbered across shards in sorted order)."""
    shard: str
    row: int
    """Row within the shard."""
    reason: str


class SkipLog:
    """Bad documents seen but not yet reported; filled from the reader's thread and the writer's, drained
    at each commit up to the committed source position."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[Skipped] = []

    def add(self, entry: Skipped):
        with self._lock:
            self._pending.append(entry)

    def take_before(self, source: int) -> list[Skipped]:
        """Remove and return, in source order, the entries of documents before `source`."""
        with self._lock:
            done = sorted((e for e in self._pending if e.source < source), key=lambda e: e.source)
            self._pending = [e for e in self._pending if e.source >= source]
        return done


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
        kinds = {c: _kind(schema.field(c).type) for c in columns.names}
        if first_schema is None:
            first_schema = (path, kinds)
        for c in columns.names:
            if kinds[c] != first_schema[1][c]:
                raise InputError(f"shard {path} has column {c!r} as {kinds[c]} but shard {first_schema[0]} "
                                 f"as {first_schema[1][c]}: every shard must give a column the same kind of "
                                 "values; rewrite one of them")
        shards.append(Shard(path, tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))))
    return shards


def _kind(t) -> str:
    """What a column holds, as far as the export cares: integer widths, list or large_list, string or
    large_string and nullability may differ between shards."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        return "integers"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "strings"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"lists of {_kind(t.value_type)}"
    return str(t)


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
                 align=False, vocab=None, skipped: SkipLog | None = None):
    """Yield Batch objects of exactly batch_size documents (the last may be smaller), starting at global
    document start_doc and ending before stop_doc (default: the end). With align=True batches end on
    multiples of batch_size in global numbering instead, so a start between them gives a smaller first
    batch, and any run of documents is batched as the whole corpus is (see tfdata.state_batches: a
    document's states are then bit-identical). Skips whole row groups before start_doc without reading
    them, and converts nothing from stop_doc on.

    A bad document (null, a null or out-of-range token id, a kept token id missing from `vocab`, a bad
    label) raises InputError naming shard, row and column, unless `skipped` is given: then it is left out
    of the batches and added there (not with align: batches of good documents cannot keep the global
    grid). vocab: (path, bool array, True at the ids it gives a token)."""
    pending, pending_n, next_doc = [], 0, start_doc
    bases = np.cumsum([0] + [s.num_rows for s in shards])
    base = {s.path: int(b) for s, b in zip(shards, bases)}
    for shard, first_row, table in _iter_tables(shards, columns, start_doc, batch_size, stop_doc):
        chunk = _convert(shard, first_row, table, columns, max_len, padding, truncating, pad_value,
                         max_token, vocab, skipped, base[shard.path])
        if not len(chunk[0]):
            continue
        pending.append(chunk)
        pending_n += len(chunk[0])
        while pending_n >= (size := batch_size - next_doc % batch_size if align else batch_size):
            parts = [np.concatenate(p) if p[0] is not None else None for p in zip(*pending)]
            yield _batch(p[:size] if p is not None else None for p in parts)
            next_doc += size
            rest = [p[size:] if p is not None else None for p in parts]
            pending_n -= size
            pending = [tuple(rest)] if pending_n else []
    if pending_n:
        yield _batch(np.concatenate(p) if p[0] is not None else None for p in zip(*pending))


def _batch(parts) -> Batch:
    tokens, lengths, labels, doc_ids, source = parts
    return Batch(int(source[0]), tokens, lengths, labels, doc_ids, source)


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
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(e, InputError):
                raise
            raise InputError(f"shard {shard.path}: reading rows from {row} failed ({type(e).__name__}: {e}); "
                             "the file is damaged: rewrite or remove it and run again") from e


def _convert(shard, first_row, rb, columns, max_len, padding, truncating, pad_value, max_token, vocab,
             skipped, base):
    """One RecordBatch -> (tokens, lengths, labels, doc_ids, source) numpy arrays of its good documents.
    The first bad document raises, or with `skipped` every bad one is logged there and left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = rb.num_rows
    problems = {}  # row within rb -> (exception class, message): the first problem found for it

    def flag(rows, message, error=InputError):
        for r in map(int, rows):
            if r not in problems:
                problems[r] = (error, f"shard {shard.path}, row {first_row + r}{message(r)}")

    tokens = rb.column(columns.tokens)
    null_docs = tokens.is_null().to_numpy(zero_copy_only=False)
    flag(np.flatnonzero(null_docs), lambda r: f": column {columns.tokens!r} is null (a missing document); "
                                              "drop or fill it")
    values = tokens.flatten()  # respects the slice offset, unlike .values; leaves out null documents' slots
    offsets = tokens.offsets.to_numpy() - tokens.offsets[0].as_py()
    lengths = np.where(null_docs, 0, np.diff(offsets)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    null_values = values.is_null().to_numpy(zero_copy_only=False)
    values = values.fill_null(0).to_numpy() if values.null_count else values.to_numpy()
    owner = np.repeat(np.arange(n), lengths)  # the row of each value
    first_pos = {}
    for pos in np.flatnonzero(null_values)[::-1]:
        first_pos[int(owner[pos])] = int(pos - offsets[owner[pos]])
    flag(sorted(first_pos), lambda r: f", position {first_pos[r]}: column {columns.tokens!r} holds a null "
                                      "token id; drop or replace it")
    limit = max_token if max_token is not None else np.iinfo(np.int32).max  # words are stored as int32
    bad = ((values < 0) | (values > limit)) & ~null_values
    if bad.any():
        where = {}
        for pos in np.flatnonzero(bad)[::-1]:
            where[int(owner[pos])] = int(pos)
        allowed = f"0..{limit}" + (" (the model's embedding size)" if max_token is not None else " (int32)")
        flag(sorted(where), lambda r: f", position {where[r] - offsets[r]}: token id {values[where[r]]} in "
                                      f"column {columns.tokens!r} is outside {allowed}; fix the tokenisation "
                                      "or the vocabulary")
    padded = pad(offsets, np.clip(values, 0, limit).astype(np.int32) if bad.any() else values, max_len,
                 padding, truncating, pad_value)
    if vocab is not None:
        _check_vocab(padded, lengths, max_len, padding, truncating, vocab, columns, flag)
    labels = doc_ids = None
    if columns.label is not None:
        labels = _labels(rb.column(columns.label), columns, flag)
    if columns.doc_id is not None:
        col = rb.column(columns.doc_id)
        flag(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False)),
             lambda r: f": id column {columns.doc_id!r} is null; give every document an id")
        doc_ids = np.array(pc.cast(col, pa.string()).fill_null("").to_pylist(), dtype=object)
    source = base + first_row + np.arange(n, dtype=np.int64)
    if problems:
        if skipped is None:
            error, message = problems[min(problems)]
            raise error(message)
        for r in sorted(problems):
            skipped.add(Skipped(int(source[r]), shard.path, first_row + r, problems[r][1]))
        keep = np.ones(n, dtype=bool)
        keep[list(problems)] = False
        pick = lambda v: None if v is None else v[keep]  # noqa: E731
        return padded[keep], lengths[keep], pick(labels), pick(doc_ids), source[keep]
    return padded, lengths, labels, doc_ids, source


def _check_vocab(padded, lengths, max_len, padding, truncating, vocab, columns, flag):
    """Every kept token id (after truncation) and the padding id must have a vocabulary entry."""
    path, known = vocab
    bad = (padded >= len(known)) | (padded < 0)
    bad[~bad] = ~known[padded[~bad]]
    if not bad.any():
        return
    where = {}
    for doc, step in np.argwhere(bad)[::-1]:
        where[int(doc)] = int(step)
    keep = np.minimum(lengths, max_len)

    def position(r):  # timestep -> position in the document as stored
        first = max_len - keep[r] if padding == "pre" else 0
        return where[r] - first + (lengths[r] - keep[r] if truncating == "pre" else 0)

    flag(sorted(where), lambda r: f", position {position(r)}: token id {padded[r, where[r]]} in column "
                                  f"{columns.tokens!r} has no entry in vocabulary {path}; use the vocabulary "
                                  "the corpus was tokenised with", VocabError)


def _labels(col, columns: Columns, flag) -> np.ndarray:
    import pyarrow as pa

    out = np.zeros(len(col), dtype=np.int32)
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    flag(np.flatnonzero(nulls), lambda r: f": label column {columns.label!r} is null; give every document "
                                          "a class")
    names = columns.label_names
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        index = {name: i for i, name in enumerate(names)}
        values = col.to_pylist()
        unknown = [i for i, name in enumerate(values) if name is not None and name not in index]
        flag(unknown, lambda r: f": label {values[r]!r} in column {columns.label!r} is not one of "
                                f"--label-names {', '.join(names)}")
        for i, name in enumerate(values):
            out[i] = index.get(name, 0)
        return out
    labels = col.fill_null(0).to_numpy().astype(np.int64) if col.null_count else col.to_numpy().astype(np.int64)
    bad = labels < 0 if names is None else (labels < 0) | (labels >= len(names))
    if names is None:
        bad |= labels > np.iinfo(np.int32).max
    allowed = "non-negative" if names is None else f"0..{len(names) - 1} (--label-names)"
    flag(np.flatnonzero(bad & ~nulls), lambda r: f": label {labels[r]} in column {columns.label!r} is not a "
                                                 f"class id {allowed}")
    out[~bad] = labels[~bad]
    return out


def locate(shards: list[Shard], doc: int) -> tuple[str, int]:
    """(shard path, row in shard) of global document index doc."""
    for shard in shards:
        if doc < shard.num_rows:
            return shard.path, doc
        doc -= shard.num_rows
    raise IndexError(doc)
