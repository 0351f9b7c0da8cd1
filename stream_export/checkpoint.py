"""The journal: what is committed under which config and inputs, saved atomically; and the folder lock."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time

from stream_export.errors import OutputError, ResumeError

JOURNAL = "export.json"
LOCK = ".stream_export.lock"
FORMAT = "stream_export/1"


def save(out: str, journal: dict):
    """Replace OUT/export.json atomically: write a temporary file, fsync it, rename, fsync the folder.
    A crash at any moment leaves either the old or the new journal, never a mix."""
    path = os.path.join(out, JOURNAL)
    tmp = path + ".tmp"
    journal = dict(journal, format=FORMAT, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(journal, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(out: str) -> dict | None:
    """The journal of OUT, or None when OUT holds no export."""
    path = os.path.join(out, JOURNAL)
    try:
        with open(path, encoding="utf-8") as f:
            journal = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ResumeError(f"journal {path} cannot be read ({e}); start again with --overwrite") from e
    if journal.get("format") != FORMAT:
        raise ResumeError(f"journal {path} has format {journal.get('format')!r}, expected {FORMAT!r}")
    return journal


def file_fingerprint(path: str, whole: bool = False) -> dict:
    """Size, modification time and a SHA-256 of the file (whole, or for Parquet the footer only). A URI
    (s3://...) is read through its pyarrow filesystem."""
    from stream_export import remote

    if remote.is_uri(path):
        return remote.fingerprint(path)
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if whole:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:  # a Parquet footer: metadata length (4 bytes) + "PAR1" at the end, metadata before them
            f.seek(max(0, st.st_size - 8))
            tail = f.read(8)
            length = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
            f.seek(max(0, st.st_size - 8 - length))
            h.update(f.read())
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}


def holder(out: str) -> str | None:
    """Who holds OUT's folder lock ('pid N on HOST'), or None when no live process does."""
    try:
        fd = os.open(os.path.join(out, LOCK), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.read(fd, 200).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive flock on OUT/.stream_export.lock; the file names the holder for the next one asking."""

    def __init__(self, out: str):
        self.path = os.path.join(out, LOCK)
        self.fd = None

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"{os.path.dirname(self.path)} cannot be written ({e.strerror}: {self.path}); "
                              "export to a writable folder, or make this one writable (a read-only "
                              "mount?)") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{os.path.dirname(self.path)} is being exported by {holder}; wait for it "
                                  "or stop it (a killed exporter releases the lock)") from e
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the flock; the file stays (removing it would race)
