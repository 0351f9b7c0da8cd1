"""`stream-export merge OUT`: join the parts of a sharded export (OUT/parts/part-IIIII-of-NNNNN, each a
complete export of a contiguous run of documents) into one LSTMVis project in OUT, in global document order.

Every dataset the parts' HDF5 files hold is merged, whatever it is: one with a row per token (as long as
the part's committed rows) is joined row-wise, by default as an HDF5 virtual dataset over the parts'
files (relative source paths, so OUT can be moved whole), with --copy as a physical dataset with the
parts' dtype, chunks, filters and maxshape; one under documents/ (a value per document) is always written
physically, documents/start shifted by the rows before the part. `doc` needs no shift: parts store each
document's global index. The parts are checked first: all present, complete, made with the same config,
model, shards and layers, and contiguous; any problem is a MergeError naming the part.
"""

from __future__ import annotations

import os
import re
import time
from types import SimpleNamespace

import numpy as np

from stream_export import checkpoint
from stream_export.config import ExportConfig
from stream_export.errors import MergeError
from stream_export.sharding import PARTS, part_name
from stream_export.writer import FILES

HDF5_KEYS = ("states", "train", "meta")
ROW_OFFSET = ("documents/start",)
"""Per-document datasets holding row numbers: shifted by the rows of the parts before."""
BLOCK_BYTES = 1 << 25
_PART = re.compile(r"^part-(\d{5})-of-(\d{5})$")


def merge(out: str, copy: bool = False, log=None) -> dict:
    """Merge OUT/parts/* into OUT and return a summary; running it again rewrites the same project."""
    log = log or (lambda msg: None)
    started = time.monotonic()
    out = os.path.abspath(out)
    parts = check_parts(out)
    journal = checkpoint.load(out)
    if journal is not None and "merged" not in journal:
        raise MergeError(f"{out} holds an export of its own ({checkpoint.JOURNAL} is not a merge's); merge "
                         "into the folder given as --out to the workers only")
    base = parts[0][1]
    with checkpoint.FolderLock(out):
        for name in ("lstm.yml", checkpoint.JOURNAL):  # first: a half-merged folder is never a project
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        for key in HDF5_KEYS:
            _merge_file(out, key, parts, copy)
            log(f"merged {FILES[key]} from {len(parts)} parts")
        config = ExportConfig.from_dict(base["config"]).replace(out=out, num_workers=None, worker_index=None)
        committed = {k: sum(j["committed"][k] for _, j in parts) for k in ("documents", "rows", "tokens", "truncated")}
        merged = {"config": config.to_dict(), "fingerprints": base["fingerprints"], "complete": False,
                  "max_len": base["max_len"], "layers": base["layers"], "outputs": base["outputs"],
                  "totals": {"documents": committed["documents"], "rows": base["max_len"] * committed["documents"]},
                  "committed": dict(committed, next_shard=None, next_row=None),
                  "merged": {"parts": [os.path.relpath(d, out) for d, _ in parts],
                             "mode": "copy" if copy else "virtual"}}
        checkpoint.save(out, merged)
        classes = _merge_dicts(out, parts, config)
        from stream_export.writer import write_lstm_yml

        outputs = [SimpleNamespace(**o) for o in base["outputs"]]
        write_lstm_yml(out, config.name, outputs, config.label_column is not None, committed["documents"], classes)
        seconds = time.monotonic() - started
        merged["complete"] = True
        merged["summary"] = {"out": out, "documents": committed["documents"], "rows": committed["rows"],
                             "tokens": committed["tokens"], "truncated_documents": committed["truncated"],
                             "layers": [layer["name"] for layer in base["layers"]], "parts": len(parts),
                             "seconds": round(seconds, 3)}
        checkpoint.save(out, merged)
    return dict(merged["summary"])


def check_parts(out: str) -> list[tuple[str, dict]]:
    """[(part folder, journal)] in index order, after checking that every part is there, complete,
    compatible with part 0 and contiguous with the one before."""
    root = os.path.join(out, PARTS)
    try:
        names = sorted(n for n in os.listdir(root) if _PART.match(n))
    except FileNotFoundError:
        names = []
    if not names:
        raise MergeError(f"{root} holds no part-IIIII-of-NNNNN folders: run the workers (--num-workers N "
                         "--worker-index I, a job array, or --engine dask) first")
    counts = sorted({int(_PART.match(n).group(2)) for n in names})
    if len(counts) > 1:
        raise MergeError(f"{root} holds parts of splits into {', '.join(map(str, counts))}: remove the folders "
                         "of the split you do not want")
    count = counts[0]
    missing = [part_name(i, count) for i in range(count) if part_name(i, count) not in names]
    if missing:
        raise MergeError(f"part{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {count} missing in "
                         f"{root}: run worker{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(str(int(_PART.match(m).group(1))) for m in missing)} (--worker-index) first")
    parts, first, stop = [], None, 0
    for i in range(count):
        folder = os.path.join(root, part_name(i, count))
        journal = checkpoint.load(folder)
        if journal is None:
            raise MergeError(f"part {folder} holds no export ({checkpoint.JOURNAL} missing): run worker {i} "
                             "(--worker-index) into it")
        if not journal.get("part"):
            raise MergeError(f"{folder} is not a part of a sharded export (its journal has no part)")
        if not journal["complete"]:
            c, t = journal["committed"], journal["totals"]
            raise MergeError(f"part {folder} is incomplete ({c['documents']:,} of {t['documents']:,} documents "
                             f"committed): finish it with `stream-export resume {folder}`")
        key = _compatibility(journal)
        if first is None:
            first = (folder, key)
        else:
            differ = [k for k in key if key[k] != first[1][k]]
            if differ:
                detail = "; ".join(_difference(k, first[1][k], key[k]) for k in differ)
                raise MergeError(f"part {folder} differs from {first[0]} in {detail}: the parts must come from "
                                 "one export command; re-run this part with the same options, model and input")
        p = journal["part"]
        if p["first_doc"] != stop or journal["committed"]["documents"] != p["stop_doc"] - p["first_doc"]:
            raise MergeError(f"part {folder} holds documents {p['first_doc']}..{p['stop_doc'] - 1} but the parts "
                             f"before it end at {stop - 1}: the corpus changed between workers; re-run them all")
        stop = p["stop_doc"]
        parts.append((folder, journal))
    if stop != parts[0][1]["part"]["corpus_documents"]:
        raise MergeError(f"the parts end at document {stop - 1} but the corpus has "
                         f"{parts[0][1]['part']['corpus_documents']}: re-run the workers")
    return parts


def _compatibility(journal) -> dict:
    config = ExportConfig.from_dict(journal["config"]).to_dict()
    for k in ("out", "worker_index", "commit_rows", "commit_seconds"):  # where and how often, not what
        config.pop(k)
    return {"config": config, "model": journal["fingerprints"]["model"]["sha256"],
            "shards": {p: fp["sha256"] for p, fp in journal["fingerprints"]["shards"].items()},
            "layers": journal["layers"], "outputs": journal["outputs"], "max_len": journal["max_len"]}


def _difference(key, a, b) -> str:
    if key == "config":
        return "config (" + ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
                                      if a.get(k) != b.get(k)) + ")"
    if key == "shards":
        return "input shards (" + ", ".join(sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))) + ")"
    return {"model": "model file (SHA-256)", "layers": "layers", "outputs": "exported datasets",
            "max_len": f"max_len ({a} vs {b})"}[key]


def _datasets(f) -> dict:
    import h5py

    found = {}
    f.visititems(lambda path, obj: found.__setitem__(path, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _merge_file(out, key, parts, copy):
    import h5py

    name = FILES[key]
    path = os.path.join(out, name)
    sources = [h5py.File(os.path.join(folder, name), "r") for folder, _ in parts]
    try:
        layouts = [_datasets(f) for f in sources]
        first = layouts[0]
        for (folder, journal), found in zip(parts, layouts):
            if sorted(found) != sorted(first):
                raise MergeError(f"part {folder}: {name} holds datasets {sorted(found)} but part 0 holds "
                                 f"{sorted(first)}; re-run this part")
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")
        with h5py.File(path + ".tmp", "w") as dst:
            for attr, value in sources[0].attrs.items():
                dst.attrs[attr] = value
            for ds_path in sorted(first):
                _merge_dataset(dst, ds_path, [f[ds_path] for f in layouts], parts, name, copy, out)
        os.replace(path + ".tmp", path)
    finally:
        for f in sources:
            f.close()


def _merge_dataset(dst, path, sets, parts, name, copy, out):
    import h5py

    per_doc = path.startswith("documents/")
    unit = "documents" if per_doc else "rows"
    ref = sets[0]
    for (folder, journal), ds in zip(parts, sets):
        want = journal["committed"][unit]
        if ds.shape[0] != want:
            raise MergeError(f"part {folder}: {name}:{path} has {ds.shape[0]:,} entries but the part committed "
                             f"{want:,} {unit}; re-run this part with --overwrite")
        if ds.dtype != ref.dtype or ds.shape[1:] != ref.shape[1:]:
            raise MergeError(f"part {folder}: {name}:{path} is {ds.dtype} {ds.shape[1:]} but part 0's is "
                             f"{ref.dtype} {ref.shape[1:]}; re-run this part")
    lengths = [ds.shape[0] for ds in sets]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    row_offsets = np.concatenate([[0], np.cumsum([j["committed"]["rows"] for _, j in parts])]).astype(np.int64)
    if copy or per_doc or total == 0:
        target = dst.create_dataset(path, shape=(total, *ref.shape[1:]), dtype=ref.dtype, maxshape=ref.maxshape,
                                    chunks=ref.chunks, compression=ref.compression,
                                    compression_opts=ref.compression_opts, shuffle=ref.shuffle,
                                    fletcher32=ref.fletcher32, scaleoffset=ref.scaleoffset,
                                    fillvalue=ref.fillvalue)
        row_bytes = max(1, ref.dtype.itemsize * int(np.prod(ref.shape[1:], dtype=np.int64)))
        block = max(1, BLOCK_BYTES // row_bytes)
        for k, ds in enumerate(sets):
            for a in range(0, ds.shape[0], block):
                b = min(a + block, ds.shape[0])
                values = ds[a:b]
                if path in ROW_OFFSET:
                    values = values + row_offsets[k]
                target[offsets[k] + a:offsets[k] + b] = values
    else:
        layout = h5py.VirtualLayout(shape=(total, *ref.shape[1:]), dtype=ref.dtype)
        for k, ((folder, _), ds) in enumerate(zip(parts, sets)):
            if ds.shape[0]:
                source = os.path.relpath(os.path.join(folder, name), out)  # resolved against OUT when read
                layout[offsets[k]:offsets[k + 1]] = h5py.VirtualSource(source, path, shape=ds.shape)
        target = dst.create_virtual_dataset(path, layout, fillvalue=ref.fillvalue)
    for attr, value in ref.attrs.items():
        target.attrs[attr] = value


def _merge_dicts(out, parts, config):
    """words.dict, labels.dict and classes.dict of the merged project: the union of the parts' entries
    (each part lists the ids it holds when there is no vocabulary). Returns the class names, if any."""
    from stream_export.vocab import read_dict_like_lstmvis, unescape, write_dict

    classes = None
    for key in ("words", "labels", "classes"):
        entries, seen_in = {}, {}
        present = [folder for folder, _ in parts if os.path.exists(os.path.join(folder, FILES[key]))]
        if not present:
            target = os.path.join(out, FILES[key])
            if os.path.exists(target):
                os.remove(target)
            continue
        for folder in present:
            for i, token in read_dict_like_lstmvis(os.path.join(folder, FILES[key])).items():
                token = unescape(token)
                if entries.get(i, token) != token:
                    raise MergeError(f"part {folder}: {FILES[key]} gives id {i} the token {token!r} but part "
                                     f"{seen_in[i]} gives it {entries[i]!r}; the parts must share one vocabulary")
                entries[i], seen_in[i] = token, folder
        write_dict(os.path.join(out, FILES[key]), entries)
        if key == "classes":
            classes = [entries[i] for i in sorted(entries)]
    return classes
