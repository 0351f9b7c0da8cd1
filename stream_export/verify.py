"""`stream-export verify OUT`: check a project against what LSTMVis needs (../shared/FORMAT.md) and re-run the
model on a seeded random sample of documents to compare with the stored states.

Every problem becomes a Finding(code, where, message); the codes are stable, so scripts and tests can
tell the problems apart:

  folder-missing, project-symlink                            the project folder
  journal-missing, journal-unreadable, export-incomplete     the export.json journal
  yml-missing, yml-invalid, yml-key-missing, yml-reference,  lstm.yml and what it points at
  yml-file-missing, yml-file-type, yml-path-missing, yml-vis
  dataset-kind                                               a word/meta track not 1-D integer, states not 2-D float
  file-unreadable                                            an HDF5 file that does not open (held open for writing?)
  rows-missing, rows-extra, chunks-unwritten                 datasets shorter/longer than committed, holes
  vds-source-missing, filter-unsupported                     virtual-dataset parts, plugin-only compression
  not-finite                                                 NaN or Inf in a float dataset
  dict-unreadable, dict-line-unreadable, dict-line-missing   .dict files as LSTMVis parses them
  model-missing, model-changed, input-missing, input-changed the files the export was made from
  words-mismatch, meta-mismatch, states-mismatch             the re-run against the stored rows
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from stream_export import checkpoint
from stream_export.errors import ExportError
from stream_export.project import (DICT_SUFFIXES, HDF5_SUFFIXES, Project, open_hdf5, read_dict, row_blocks,
                                   unique_ids, visit_datasets)

SUPPORTED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 5: "nbit", 6: "scaleoffset", 32000: "lzf"}
"""HDF5 filters h5py (and so LSTMVis) reads without plugins."""
ATOL = 1e-4
"""Allowed |stored - re-run| beyond the storage type's rounding (eps * |value|): batch composition changes
float32 results in the last bits only."""


@dataclass(frozen=True)
class Finding:
    code: str
    """Stable identifier of the kind of problem (see the module docstring)."""
    where: str
    """The file, dataset (file:path) or document concerned."""
    message: str
    """What is wrong and how to fix it."""

    def __str__(self):
        return f"[{self.code}] {self.where}: {self.message}"


def verify(out: str, sample: int = 20, seed: int = 0) -> dict:
    """Check the project in OUT; return {"findings": [...], "sampled_documents": [...],
    "max_abs_error": {dataset: error}, ...}. No findings means LSTMVis will show what the model computes."""
    v = _Verifier(out)
    v.run(sample, seed)
    return {"out": out, "ok": not v.findings, "findings": [asdict(f) for f in v.findings],
            "sampled_documents": v.sampled, "max_abs_error": v.errors, "tolerance": v.tolerances}


class _Verifier:
    def __init__(self, out):
        self.out = out
        self.findings: list[Finding] = []
        self.sampled: list[int] = []
        self.errors: dict[str, float] = {}
        self.tolerances: dict[str, float] = {}
        self.broken: set[tuple[str, str]] = set()  # (files key, path) whose values are known bad already

    def add(self, code, where, message):
        self.findings.append(Finding(code, where, message))

    def run(self, sample, seed):
        if not os.path.isdir(self.out):
            self.add("folder-missing", self.out, "there is no such folder")
            return
        if os.path.islink(os.path.normpath(self.out)):
            self.add("project-symlink", self.out, "is a symbolic link, and LSTMVis ignores project folders "
                     "reached through one; move the project itself into the LSTMVis data directory")
        try:
            self.p = Project(self.out)
        except ExportError as e:
            self.add("journal-unreadable", checkpoint.JOURNAL, str(e))
            return
        p = self.p
        if p.journal is None:
            self.add("journal-missing", checkpoint.JOURNAL, "no export.json: the project was not written by "
                     "stream_export (or it was removed), so rows cannot be checked against the commits nor "
                     "the model re-run; checking the LSTMVis invariants only")
        elif not p.journal["complete"]:
            c, t = p.journal["committed"], p.journal["totals"]
            self.add("export-incomplete", checkpoint.JOURNAL,
                     f"{c['documents']} of {t['documents']} documents committed and lstm.yml not written yet, so "
                     f"LSTMVis cannot load it; finish it with: stream-export resume {self.out}")
        self.check_yml()
        self.expected = self.expected_rows()
        self.check_datasets()
        self.check_dicts()
        if p.journal is not None and sample > 0:
            self.rerun(sample, seed)

    # lstm.yml -------------------------------------------------------------------------------------------

    def check_yml(self):
        p = self.p
        if p.yml_error:
            self.add("yml-invalid", "lstm.yml", f"cannot be parsed ({p.yml_error}); LSTMVis would serve no "
                     "project at all; re-export with --overwrite or fix the file")
            return
        if p.yml is None:
            if p.journal is None or p.journal["complete"]:
                self.add("yml-missing", "lstm.yml", "missing: LSTMVis does not see the folder as a project; "
                         "re-export with --overwrite")
            return
        y = p.yml
        for key in ("name", "files", "word_sequence", "states"):
            if key not in y:
                self.add("yml-key-missing", "lstm.yml", f"has no {key!r} key, which LSTMVis requires")
        files = y.get("files") if isinstance(y.get("files"), dict) else {}
        for key, name in files.items():
            if not os.path.isfile(os.path.join(self.out, str(name))):
                self.add("yml-file-missing", f"lstm.yml files.{key}", f"names {name}, which is not in {self.out}")
        ws = y.get("word_sequence") or {}
        self.check_source("word_sequence", ws, "word")
        self.check_dict_key("word_sequence.dict_file", ws.get("dict_file"))
        states = y.get("states") or {}
        if "states" in y and "file" not in states:
            self.add("yml-key-missing", "lstm.yml states", "has no default 'file', which LSTMVis requires")
        for i, t in enumerate(p.state_types()):
            self.check_source(f"states.types[{i}]", t, "state")
        for name, track in p.meta_tracks().items():
            self.check_source(f"meta.{name}", track, "meta")
            if "dict" in track:
                self.check_dict_key(f"meta.{name}.dict", track["dict"])
            vis = track.get("vis")
            if not isinstance(vis, dict) or not (isinstance(vis.get("range"), list) or vis.get("range") == "dict"):
                self.add("yml-vis", f"lstm.yml meta.{name}", "needs vis with an explicit range (a list, or "
                         "'dict'); without it LSTMVis silently drops the track")

    def check_source(self, where, spec, kind):
        """A <files key>::<path> reference of lstm.yml: resolvable, an HDF5 file, the right kind of dataset."""
        key, path = spec.get("file"), spec.get("path")
        files = self.p.files
        if key not in files:
            self.add("yml-reference", f"lstm.yml {where}", f"file key {key!r} is not one of files: "
                     f"{', '.join(files)}")
            return
        name = str(files[key])
        if not name.endswith(HDF5_SUFFIXES):
            self.add("yml-file-type", f"lstm.yml {where}", f"file {name} is not *.h5/*.hdf5, so LSTMVis does "
                     "not open it as HDF5")
            return
        if not os.path.isfile(self.p.path(key)):
            return  # yml-file-missing already says so
        try:
            with open_hdf5(self.p.path(key)) as f:
                if path not in f or not hasattr(f[path], "shape"):
                    self.add("yml-path-missing", f"lstm.yml {where}", f"{key}::{path} names no dataset in "
                             f"{name}; fix the path or re-export")
                    return
                ds = f[path]
                integer, floating = np.issubdtype(ds.dtype, np.integer), np.issubdtype(ds.dtype, np.floating)
                if kind == "word" and (ds.ndim != 1 or not integer):
                    problem = f"must be 1-D integer token ids; it is {ds.shape} {ds.dtype}"
                elif kind == "state" and (ds.ndim != 2 or not floating):
                    problem = f"must be 2-D float (rows, cells); it is {ds.shape} {ds.dtype}"
                elif kind == "meta" and (ds.ndim != 1 or not (integer or floating)):
                    problem = f"must be 1-D numbers, one per row; it is {ds.shape} {ds.dtype}"
                else:
                    return
                self.add("dataset-kind", f"{name}:{path}", f"{problem} (referenced by lstm.yml {where}); "
                         "LSTMVis fails on it")
        except OSError:
            pass  # file-unreadable is reported by check_datasets

    def check_dict_key(self, where, key):
        if key is None:
            return
        if key not in self.p.files:
            self.add("yml-reference", f"lstm.yml {where}", f"file key {key!r} is not one of files: "
                     f"{', '.join(self.p.files)}")
        elif not str(self.p.files[key]).endswith(DICT_SUFFIXES):
            self.add("yml-file-type", f"lstm.yml {where}", f"file {self.p.files[key]} is not *.dict/*.txt, "
                     "so LSTMVis does not read it as a dictionary")

    # datasets -------------------------------------------------------------------------------------------

    def expected_rows(self):
        """(rows per row dataset, documents) as committed in the journal, else the word sequence's length."""
        p = self.p
        if p.journal is not None:
            return p.journal["committed"]["rows"], p.journal["committed"]["documents"]
        key, path = p.words_source()
        try:
            with open_hdf5(p.path(key)) as f:
                return f[path].shape[0], None
        except (OSError, KeyError):
            return None, None

    def check_datasets(self):
        rows, docs = self.expected
        for key in self.p.hdf5_keys():
            name = self.p.files[key]
            if not os.path.isfile(self.p.path(key)):
                continue
            try:
                f = open_hdf5(self.p.path(key))
            except OSError as e:
                self.add("file-unreadable", name, f"cannot be opened ({e}); if another process holds it open "
                         "for writing, LSTMVis cannot load it either: stop that process")
                continue
            with f:
                for path, ds in visit_datasets(f):
                    where = f"{name}:{path}"
                    if ds.ndim == 0:
                        continue
                    if ds.is_virtual:
                        self.check_sources(key, path, ds, where)
                    self.check_filters(key, path, ds, where)
                    want = docs if path.startswith("documents/") else rows
                    if want is not None:
                        self.check_length(key, path, ds, where, want)
                    if not ds.is_virtual and ds.chunks:
                        self.check_chunks(ds, where)
                    if np.issubdtype(ds.dtype, np.floating):
                        self.check_finite(key, path, ds, where)

    def check_sources(self, key, path, ds, where):
        folder = os.path.dirname(self.p.path(key))
        for m in ds.virtual_sources():
            source = self.p.path(key) if m.file_name == "." else os.path.join(folder, m.file_name)
            problem = None
            if not os.path.isfile(source):
                problem = f"part file {m.file_name} does not exist"
            else:
                try:
                    with open_hdf5(source) as f:
                        if m.dset_name not in f:
                            problem = f"part file {m.file_name} has no dataset {m.dset_name}"
                except OSError as e:
                    problem = f"part file {m.file_name} cannot be opened ({e})"
            if problem:
                self.broken.add((key, path))
                self.add("vds-source-missing", where, f"virtual dataset source {problem}; its rows read as "
                         "zeros without any error. Restore the part file (or re-export)")

    def check_filters(self, key, path, ds, where):
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _, _, label = plist.get_filter(i)
            if code not in SUPPORTED_FILTERS:
                self.broken.add((key, path))
                self.add("filter-unsupported", where, f"compressed with HDF5 filter {code} "
                         f"({label.decode(errors='replace')}), which needs a plugin LSTMVis's h5py lacks; "
                         "re-export with gzip, lzf or no compression")

    def check_length(self, key, path, ds, where, want):
        n = ds.shape[0]
        what = "documents" if path.startswith("documents/") else "rows"
        if n < want:
            self.add("rows-missing", where, f"has {n:,} {what} but {want:,} are committed; LSTMVis shows "
                     f"nothing past row {n:,} of it. Re-export (or resume an incomplete export)")
        elif n > want:
            self.add("rows-extra", where, f"has {n:,} {what} but only {want:,} are committed: rows past the last "
                     "commit are unwritten or from an interrupted run; `stream-export resume` cuts them back "
                     "(for an incomplete export), otherwise re-export")

    def check_chunks(self, ds, where):
        expected = int(np.prod([-(-n // c) for n, c in zip(ds.shape, ds.chunks)], dtype=np.int64))
        written = ds.id.get_num_chunks()
        if written < expected:
            self.add("chunks-unwritten", where, f"{expected - written} of {expected} chunks were never written "
                     "(they read as the fill value, 0): the export stopped between growing and filling the "
                     "dataset; re-export")

    def check_finite(self, key, path, ds, where):
        bad, first = 0, None
        for start, block in row_blocks(ds):
            mask = ~np.isfinite(block)
            if mask.any():
                rows = np.flatnonzero(mask.reshape(len(block), -1).any(axis=1))
                bad += len(rows)
                first = start + int(rows[0]) if first is None else first
        if bad:
            self.broken.add((key, path))
            self.add("not-finite", where, f"{bad:,} rows hold NaN or Inf (first: row {first:,}); browsers reject "
                     "them in LSTMVis's JSON. Check the model's weights, or use float32 if float16 overflowed")

    # dicts ----------------------------------------------------------------------------------------------

    def check_dicts(self):
        """Every id in the word sequence and in each dict-backed meta track has a line LSTMVis reads back."""
        p = self.p
        uses = []  # (dict key, files key, path)
        if p.yml is not None:
            ws = p.yml.get("word_sequence") or {}
            uses.append((ws.get("dict_file"), ws.get("file"), ws.get("path")))
            uses += [(t["dict"], t.get("file"), t.get("path")) for t in p.meta_tracks().values() if "dict" in t]
        parsed = {}
        for dict_key, key, path in uses:
            if dict_key not in p.files or not str(p.files[dict_key]).endswith(DICT_SUFFIXES):
                continue  # reported by check_yml
            name = p.files[dict_key]
            if dict_key not in parsed:
                parsed[dict_key] = self.parse_dict(dict_key, name)
            entries = parsed[dict_key]
            if entries is None or key not in p.files or not os.path.isfile(p.path(key)):
                continue
            try:
                with open_hdf5(p.path(key)) as f:
                    if path not in f or f[path].ndim != 1 or not np.issubdtype(f[path].dtype, np.integer):
                        continue
                    used = unique_ids(f[path])
            except OSError:
                continue
            missing = [int(i) for i in used if int(i) not in entries]
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
                self.add("dict-line-missing", name, f"has no line LSTMVis reads for {len(missing)} id(s) used in "
                         f"{p.files[key]}:{path} ({shown}); every request touching them fails with HTTP 500. "
                         "Add a `token id` line for each (or re-export)")

    def parse_dict(self, key, name):
        try:
            entries, bad = read_dict(self.p.path(key))
        except FileNotFoundError:
            return None  # yml-file-missing
        except (OSError, UnicodeDecodeError) as e:
            self.add("dict-unreadable", name, f"cannot be read as UTF-8 text ({e}); re-export it")
            return None
        for number, line in bad[:5]:
            self.add("dict-line-unreadable", f"{name} line {number}", f"{line!r} does not split into `token id` "
                     "with an integer id, so LSTMVis drops it (or fails to load); escape whitespace in the token "
                     "as stream_export.vocab.escape does")
        return entries

    # the re-run -----------------------------------------------------------------------------------------

    def rerun(self, sample, seed):
        """Re-read K sampled documents from the Parquet inputs, run the model, compare with stored rows."""
        from stream_export.config import ExportConfig
        from stream_export.reader import Columns, SkipLog, iter_batches, open_shards
        from stream_export.writer import real_tokens

        p, j = self.p, self.p.journal
        config = ExportConfig.from_dict(j["config"])
        fp = j["fingerprints"]
        ok = True
        if not os.path.isfile(config.model):
            self.add("model-missing", config.model, "the model file the export was made with is gone; the "
                     "states cannot be re-computed")
            ok = False
        elif checkpoint.file_fingerprint(config.model, whole=True)["sha256"] != fp["model"]["sha256"]:
            self.add("model-changed", config.model, "the model file differs from the one the export was made "
                     "with (SHA-256); states-mismatch findings show whether the states differ too")
        from stream_export.remote import exists

        for path, old in sorted(fp["shards"].items()):
            if not exists(path):
                self.add("input-missing", path, "an input shard of the export is gone; documents cannot be "
                         "re-read")
                ok = False
            elif checkpoint.file_fingerprint(path)["sha256"] != old["sha256"]:
                self.add("input-changed", path, "the input shard differs from the one exported (its footer "
                         "changed); re-export if the corpus changed")
        docs = p.documents
        if not ok or not docs:
            return
        t = j["max_len"]
        local = sorted(np.random.default_rng(seed).choice(docs, size=min(sample, docs), replace=False).tolist())
        first = j["part"]["first_doc"] if j.get("part") else 0  # a part of a sharded export
        source = j["sample"]["documents"] if j.get("sample") else list(range(first, first + docs))
        self.sampled = local
        columns = Columns(config.tokens_column, config.label_column, config.id_column, config.label_names)
        rows_in_input = self.input_positions(local, source)
        try:
            shards = open_shards(sorted(fp["shards"]), columns)
            # other documents read alongside may be bad ones an --on-error skip export left out
            batches = [next(iter_batches(shards, columns, t, 1, padding=config.padding,
                                         truncating=config.truncating, pad_value=config.pad_value,
                                         start_doc=rows_in_input[i], skipped=SkipLog()))
                       for i in range(len(local))]
        except (ExportError, StopIteration) as e:
            self.add("input-changed", "inputs", f"the sampled documents cannot be re-read ({e})")
            return
        unreadable = [d for d, b, want in zip(local, batches, rows_in_input) if int(b.source[0]) != want]
        if unreadable:
            self.add("input-changed", "inputs", f"documents {_list(unreadable)} are no longer valid in the "
                     "Parquet input; re-export if the corpus changed")
            return
        lengths = np.concatenate([b.lengths for b in batches])
        # the timesteps written per document: all of them, or with --skip-padding its real tokens
        self.keep = (real_tokens(lengths, t, config.padding) if config.skip_padding
                     else np.ones((len(local), t), dtype=bool))
        try:
            self.rows = p.doc_rows(local)
        except (OSError, KeyError) as e:
            self.add("meta-mismatch", f"{p.files['meta']}:documents/start", f"the documents' rows cannot be "
                     f"found ({e}); re-export")
            return
        self.compare_inputs(local, batches, source, t)
        self.compare_states(config, local, np.concatenate([b.tokens for b in batches]), t)

    def input_positions(self, local, source):
        """Global Parquet index of each sampled document: meta documents/source where bad documents were
        skipped (--on-error skip), else its index in the export."""
        try:
            with open_hdf5(self.p.path("meta")) as f:
                if "documents/source" in f:
                    return [int(f["documents/source"][d]) for d in local]
        except (OSError, KeyError, IndexError, ValueError):
            pass  # a damaged meta file is reported by the structure checks; fall back to the plain indices
        return [source[d] for d in local]

    def compare_inputs(self, local, batches, source, t):
        """Stored words and meta rows of the sampled documents against the Parquet inputs."""
        def rows(per_doc):  # (n, t) values -> the rows each document has in the project
            return [v[k] for v, k in zip(per_doc, self.keep)]

        expected = {"words": rows(np.concatenate([b.tokens for b in batches]).reshape(len(local), t)),
                    "doc": rows(np.repeat(np.array([source[d] for d in local])[:, None], t, axis=1)),
                    "documents/length": np.concatenate([b.lengths for b in batches])}
        if batches[0].labels is not None:
            expected["label"] = rows(np.repeat(np.concatenate([b.labels for b in batches])[:, None], t, axis=1))
        if batches[0].doc_ids is not None:
            expected["documents/id"] = np.concatenate([b.doc_ids for b in batches])
        wkey, wpath = self.p.words_source()
        places = {"words": (wkey, wpath), "doc": ("meta", "doc"), "label": ("meta", "label"),
                  "documents/length": ("meta", "documents/length"), "documents/id": ("meta", "documents/id")}
        for what, want in expected.items():
            key, path = places[what]
            got = self.read_docs(key, path, local, per_doc=what.startswith("documents/"), t=t)
            if got is None:
                continue
            if what == "documents/id":
                got = [g.decode() if isinstance(g, bytes) else g for g in got]
            bad = [local[i] for i in range(len(local)) if got[i] is not None and not np.array_equal(got[i], want[i])]
            if bad:
                code = "words-mismatch" if what == "words" else "meta-mismatch"
                self.add(code, f"{self.p.files[key]}:{path}", f"documents {_list(bad)} differ from the Parquet "
                         f"input (the {'padded token ids' if what == 'words' else what} as exported); the "
                         "project does not show the corpus it claims; re-export")

    def compare_states(self, config, local, tokens, t):
        from stream_export import model as modelmod

        try:
            model = modelmod.load_model(config.model)
            built = modelmod.build_state_model(model, config.layers, cell_states=config.cell_states,
                                               predictions=config.predictions, timesteps=t)
        except ExportError as e:
            self.add("model-changed", config.model, f"the model cannot be rebuilt as exported ({e})")
            return
        state_model = built.model
        tokens = tokens.astype(np.dtype(state_model.inputs[0].dtype))
        parts = []
        for start in range(0, len(tokens), config.batch_size):
            out = state_model(tokens[start:start + config.batch_size], training=False)
            out = out if isinstance(out, (list, tuple)) else [out]
            parts.append([np.asarray(o, dtype=np.float64) for o in out])
        outputs = [np.concatenate(layer) for layer in zip(*parts)]
        for o, fresh in zip(built.outputs, outputs):
            if o.file != "states":
                continue  # prediction tracks: the meta checks cover them
            path = o.path
            fresh = [s[k] for s, k in zip(fresh.reshape(len(local), t, -1), self.keep)]
            key = self.states_key(path)
            got = self.read_docs(key, path, local, per_doc=False, t=t)
            if got is None or (key, path) in self.broken:
                continue
            where = f"{self.p.files[key]}:{path}"
            with open_hdf5(self.p.path(key)) as f:
                eps = float(np.finfo(f[path].dtype).eps) if np.issubdtype(f[path].dtype, np.floating) else 0.0
            worst, worst_doc, over = None, None, False
            for d, stored, want in zip(local, got, fresh):
                if stored is None or stored.shape != want.shape:
                    continue
                finite = np.isfinite(stored)  # non-finite values are reported as not-finite
                diff = np.abs(stored.astype(np.float64) - want)[finite]
                if not diff.size:
                    continue
                over |= bool((diff > ATOL + eps * np.abs(want[finite])).any())
                if worst is None or diff.max() > worst:
                    worst, worst_doc = float(diff.max()), d
            if worst is None:
                continue
            self.errors[path], self.tolerances[path] = worst, ATOL + eps
            if over:
                self.add("states-mismatch", where, f"the re-run model differs from the stored states by up to "
                         f"{worst:.3g} (document {worst_doc}; allowed {ATOL:g} + {eps:.2g}*|value|): the "
                         "states were not made by this model on these inputs; re-export")

    def states_key(self, path):
        for t in self.p.state_types():
            if t.get("path") == path and t.get("file") in self.p.files:
                return t["file"]
        return "states"

    def read_docs(self, key, path, local, per_doc, t):
        """The stored rows of each sampled document (None for a document past the dataset's end)."""
        if key not in self.p.files or not os.path.isfile(self.p.path(key)):
            return None
        try:
            with open_hdf5(self.p.path(key)) as f:
                if path not in f:
                    return None
                ds = f[path]
                if per_doc:
                    return [ds[d] if d < ds.shape[0] else None for d in local]
                return [ds[a:b] if b <= ds.shape[0] else None for a, b in self.rows]
        except OSError:
            return None


def _list(docs):
    return ", ".join(map(str, docs[:10])) + (", ..." if len(docs) > 10 else "")
