"""Inputs named by URI (s3://, gs://, hdfs://, file://...): resolved, listed and opened through pyarrow's
filesystems, so shards are read where they are. Filesystem options go in the URI's query, as pyarrow
reads them, e.g. s3://bucket/corpus/?endpoint_override=127.0.0.1:9000&scheme=http; credentials come
from the usual places (AWS_ACCESS_KEY_ID..., ~/.aws, instance roles, GOOGLE_APPLICATION_CREDENTIALS)."""

from __future__ import annotations

import fnmatch
import re

from stream_export.errors import InputError

_GLOB = re.compile(r"[*?\[]")
_filesystems = {}


def is_uri(path: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", str(path)) is not None


def _split_query(uri):
    base, sep, query = uri.partition("?")
    return base, (sep + query if sep else "")


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) of a URI; filesystems are made once per location and options."""
    from pyarrow import fs

    base, query = _split_query(uri)
    key = (re.match(r"^[^:]+://[^/]*", base).group(0), query)
    try:
        made, path = fs.FileSystem.from_uri(uri)  # parsing is cheap; the first one made is kept and reused
        return _filesystems.setdefault(key, made), path
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError or ValueError depending on the scheme
        raise InputError(f"input {uri!r} cannot be opened: {e}") from e


def resolve(pattern: str) -> list[str]:
    """The Parquet files a URI names: a file, a folder (its *.parquet files, recursively) or a glob."""
    from pyarrow import fs

    base, query = _split_query(pattern)
    scheme_end = base.index("://") + 3
    parts = base[scheme_end:].split("/")
    globbed = next((i for i, p in enumerate(parts) if _GLOB.search(p)), None)
    root = base if globbed is None else base[:scheme_end] + "/".join(parts[:globbed])
    fsys, root_path = filesystem(root + query)
    try:
        info = fsys.get_file_info(root_path)
        if globbed is None and info.type == fs.FileType.File:
            return [pattern]
        if info.type != fs.FileType.Directory:
            raise InputError(f"input {pattern!r} matches no file: check the URI (and, for a glob, quote it)")
        found = fsys.get_file_info(fs.FileSelector(root_path, recursive=True))
    except OSError as e:
        raise InputError(f"input {pattern!r} cannot be listed: {e}") from e
    prefix = root_path.rstrip("/")
    rest = "*.parquet" if globbed is None else "/".join(parts[globbed:])
    uris = []
    for f in found:
        if f.type != fs.FileType.File:
            continue
        relative = f.path[len(prefix):].lstrip("/")
        if (fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], rest) if globbed is None
                else fnmatch.fnmatchcase(relative, rest)):
            uris.append(root.rstrip("/") + "/" + relative + query)
    if not uris:
        raise InputError(f"input {pattern!r} matches no {'*.parquet ' if globbed is None else ''}file")
    return sorted(uris)


def open_input(path: str):
    """What pyarrow.parquet reads: the local path itself, or a random-access file of a URI's filesystem."""
    if not is_uri(path):
        return path
    fsys, inner = filesystem(path)
    try:
        return fsys.open_input_file(inner)
    except OSError as e:
        raise InputError(f"shard {path} cannot be opened: {e}") from e


def exists(path: str) -> bool:
    import os

    from pyarrow import fs

    if not is_uri(path):
        return os.path.isfile(path)
    fsys, inner = filesystem(path)
    try:
        return fsys.get_file_info(inner).type == fs.FileType.File
    except OSError:
        return False


def fingerprint(path: str) -> dict:
    """Size, modification time and SHA-256 of the Parquet footer of a file named by URI."""
    import hashlib

    fsys, inner = filesystem(path)
    info = fsys.get_file_info(inner)
    h = hashlib.sha256()
    with fsys.open_input_file(inner) as f:
        size = f.size()
        f.seek(max(0, size - 8))
        tail = f.read(8)
        length = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
        f.seek(max(0, size - 8 - length))
        h.update(f.read())
    mtime = info.mtime_ns if info.mtime is not None else None
    return {"size": size, "mtime_ns": mtime, "sha256": h.hexdigest()}
