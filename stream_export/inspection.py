"""`stream-export inspect OUT`: what a project folder holds, at a glance, for people (text) and scripts (JSON).

Read-only and tolerant: a damaged or unfinished project is described as it is (`verify` judges it).
"""

from __future__ import annotations

import os

import numpy as np

from stream_export.errors import OutputError
from stream_export.project import Project, dataset_info, open_hdf5, read_dict, visit_datasets


def inspect(out: str) -> dict:
    """Describe the project in OUT: completion, datasets, documents, layers, vocabulary, labels, config."""
    if not os.path.isdir(out):
        raise OutputError(f"{out} is not a folder; give the project folder of an export")
    p = Project(out)
    j = p.journal
    info = {"out": out, "project": os.path.basename(os.path.normpath(out)),
            "lstm_yml": p.yml is not None, "lstm_yml_error": p.yml_error,
            "complete": bool(j and j["complete"]), "journal": j is not None}
    if j:
        info.update(committed=j["committed"], totals=j["totals"], updated=j.get("updated"),
                    max_len=j["max_len"], config=j["config"], sample=j.get("sample"))
    info["files"], info["datasets"] = _files_and_datasets(p)
    info["documents"] = p.documents
    info["tokens_per_document"] = _lengths(p)
    info["layers"] = _layers(p, info["datasets"])
    info["meta_tracks"] = sorted(p.meta_tracks())
    info["vocabulary"] = _dict_size(p, (p.yml or {}).get("word_sequence", {}).get("dict_file", "words"))
    info["labels"] = _label_counts(p)
    return info


def _files_and_datasets(p):
    files, datasets = [], []
    for key, name in p.files.items():
        path = os.path.join(p.out, name)
        files.append({"key": key, "file": name, "exists": os.path.isfile(path),
                      "bytes": os.path.getsize(path) if os.path.isfile(path) else None})
    for key in p.hdf5_keys():
        try:
            with open_hdf5(p.path(key)) as f:
                for path, ds in visit_datasets(f):
                    datasets.append({"key": key, "file": p.files[key], "path": path, **dataset_info(ds)})
        except OSError as e:
            files[[x["key"] for x in files].index(key)]["error"] = str(e)
    return files, datasets


def _lengths(p):
    """min/median/max tokens per document before truncation, from meta documents/length."""
    if "meta" not in p.files:
        return None
    try:
        with open_hdf5(p.path("meta")) as f:
            if "documents/length" not in f:
                return None
            n = f["documents/length"][: p.documents] if p.documents is not None else f["documents/length"][()]
    except OSError:
        return None
    if not len(n):
        return {"min": None, "median": None, "max": None, "truncated": 0}
    t = p.max_len
    return {"min": int(n.min()), "median": float(np.median(n)), "max": int(n.max()),
            "truncated": int((n > t).sum()) if t else None}


def _layers(p, datasets):
    """One entry per state type of lstm.yml (or per states dataset before it exists), with the cells
    from the dataset and the Keras layer it came from (journal)."""
    shapes = {(d["key"], d["path"]): d for d in datasets}
    journal_layers = p.journal["layers"] if p.journal else []
    types = p.state_types() or [{"type": "state", "layer": k, "path": f"states{k}", "file": "states"}
                                for k in range(1, len(journal_layers) + 1)]
    out = []
    for t in types:
        d = shapes.get((t.get("file"), t.get("path")))
        entry = {"type": t.get("type"), "layer": t.get("layer"), "path": t.get("path"), "file": t.get("file"),
                 "cells": d["shape"][1] if d and len(d["shape"]) == 2 else None,
                 "dtype": d["dtype"] if d else None}
        k = t.get("layer")
        if isinstance(k, int) and 1 <= k <= len(journal_layers):
            entry.update(name=journal_layers[k - 1]["name"], kind=journal_layers[k - 1]["kind"])
        out.append(entry)
    return out


def _dict_size(p, key):
    if key not in p.files or not os.path.isfile(p.path(key)):
        return None
    try:
        entries, bad = read_dict(p.path(key))
    except (OSError, UnicodeDecodeError):
        return None
    return {"file": p.files[key], "entries": len(entries), "unreadable_lines": len(bad)}


def _first_rows(p, ds, block=65536):
    """Yield, block by block, the values of a per-row dataset at each document's first row (with
    --skip-padding a document without tokens has no rows and is left out)."""
    t, docs = p.max_len, p.documents or 0
    if not p.skip_padding:
        stop = min(ds.shape[0], docs * t)
        for first in range(0, stop, t * block):
            yield ds[first:min(first + t * block, stop):t]
        return
    with open_hdf5(p.path("meta")) as f:
        for first in range(0, docs, block // 16):  # read the rows in between: one read, not one per row
            starts = f["documents/start"][first:first + block // 16]
            starts = starts[(f["documents/length"][first:first + block // 16] > 0) & (starts < ds.shape[0])]
            yield ds[starts[0]:starts[-1] + 1][starts - starts[0]] if len(starts) else np.empty(0, ds.dtype)


def _label_counts(p):
    """Documents per class of the `label` track (its value at each document's first row)."""
    track = p.meta_tracks().get("label") or ({"file": "meta", "path": "label", "dict": "labels"}
                                              if p.yml is None else None)
    if not track or p.max_len is None or track.get("file") not in p.files:
        return None
    try:
        with open_hdf5(p.path(track["file"])) as f:
            if track.get("path") not in f:
                return None
            ds = f[track["path"]]
            counts: dict[int, int] = {}
            for values in _first_rows(p, ds):
                values, n = np.unique(values, return_counts=True)
                for v, c in zip(values.tolist(), n.tolist()):
                    counts[v] = counts.get(v, 0) + c
    except OSError:
        return None
    names = {}
    if track.get("dict") in p.files and os.path.isfile(p.path(track["dict"])):
        try:
            names = read_dict(p.path(track["dict"]))[0]
        except (OSError, UnicodeDecodeError):
            pass
    return [{"id": v, "name": names.get(v), "documents": c} for v, c in sorted(counts.items())]


def describe(info: dict) -> str:
    """The inspect report as text."""
    lines = [f"{info['out']}  (LSTMVis project {info['project']!r})"]
    if not info["journal"]:
        lines.append("  state: no export.json journal: not a stream_export export, or not started")
    elif info["complete"]:
        lines.append(f"  state: complete, last commit {info['updated']}")
    else:
        c, t = info["committed"], info["totals"]
        lines.append(f"  state: INCOMPLETE, {c.get('source', c['documents']):,} of {t['documents']:,} documents "
                     f"committed (last commit {info['updated']}); continue with: stream-export resume {info['out']}")
    if (info.get("committed") or {}).get("skipped"):
        lines.append(f"  skipped: {info['committed']['skipped']:,} bad documents left out (--on-error skip), "
                     "listed in skipped.tsv")
    if info["lstm_yml_error"]:
        lines.append(f"  lstm.yml: cannot be read: {info['lstm_yml_error']}")
    elif not info["lstm_yml"]:
        lines.append("  lstm.yml: not written (it is written when the export completes)")
    if info.get("sample"):
        s = info["sample"]
        lines.append(f"  sample of {s['source']}: {len(s['documents'])} documents, seed {s['seed']}")
    if info["documents"] is not None:
        if (info.get("config") or {}).get("skip_padding"):
            rows = info["committed"]["rows"]
            lines.append(f"  documents: {info['documents']:,} of up to {info['max_len']} timesteps, "
                         f"{rows:,} rows (real tokens only: --skip-padding)")
        else:
            lines.append(f"  documents: {info['documents']:,} x {info['max_len']} timesteps = "
                         f"{info['documents'] * info['max_len']:,} rows")
    n = info["tokens_per_document"]
    if n and n["min"] is not None:
        lines.append(f"  tokens per document: min {n['min']:,}, median {n['median']:,g}, max {n['max']:,}"
                     + (f"; {n['truncated']:,} documents truncated to {info['max_len']}" if n["truncated"] else ""))
    for layer in info["layers"]:
        source = f" ({layer['name']}, {layer['kind']})" if layer.get("name") else ""
        lines.append(f"  layer {layer['layer']} {layer['type']}: {layer['path']}{source}, "
                     f"{layer['cells']} cells, {layer['dtype']}")
    if info["vocabulary"]:
        v = info["vocabulary"]
        lines.append(f"  vocabulary: {v['entries']:,} entries in {v['file']}"
                     + (f", {v['unreadable_lines']} lines LSTMVis cannot read" if v["unreadable_lines"] else ""))
    if info["labels"]:
        without = ", documents without tokens have no rows and are not counted" \
            if (info.get("config") or {}).get("skip_padding") else ""
        lines.append("  labels: " + ", ".join(f"{l['name'] or l['id']} {l['documents']:,}" for l in info["labels"])
                     + without)
    if info["meta_tracks"]:
        lines.append("  meta tracks: " + ", ".join(info["meta_tracks"]))
    lines.append("  datasets:")
    for d in info["datasets"]:
        layout = "virtual <- " + ", ".join(d["sources"]) if d["virtual"] else (
            f"chunks {tuple(d['chunks'])}" if d["chunks"] else "contiguous")
        comp = f", {d['compression']}" + (f" {d['compression_opts']}" if d["compression_opts"] is not None else "") \
            if d["compression"] else ""
        lines.append(f"    {d['file']}:{d['path']}  {tuple(d['shape'])} {d['dtype']}, {layout}{comp}, "
                     f"{_size(d['bytes_on_disk'])} on disk")
    lines.append("  files: " + ", ".join(f"{x['file']} {_size(x['bytes'])}" if x["exists"] else f"{x['file']} MISSING"
                                         for x in info["files"]))
    if info.get("config"):
        c = info["config"]
        shown = {k: v for k, v in c.items() if v is not None and k not in ("out",)}
        lines.append("  config: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return "\n".join(lines)


def _size(n):
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
