"""export(config) -> summary: wires reader, model, tf.data and writer; owns progress, commits and signals."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np

from stream_export import checkpoint
from stream_export.config import ExportConfig
from stream_export.errors import ConfigError, InputError, Interrupted, OutputError, ResumeError
from stream_export.reader import Columns, SkipLog, Skipped, iter_batches, locate, open_shards, resolve_inputs
from stream_export.vocab import PAD_TOKEN, load_vocab, write_dict
from stream_export.writer import FILES, DiskFull, ProjectWriter, all_finite, write_lstm_yml

SKIPPED = "skipped.tsv"
"""The report of documents left out under --on-error skip: a header, then source, shard, row, reason."""
SKIPPED_HEADER = "source\tshard\trow\treason\n"
OUR_FILES = (*FILES.values(), "lstm.yml", SKIPPED, checkpoint.JOURNAL)


def export(config: ExportConfig, *, overwrite: bool = False, resume: bool = False, quiet: bool = False,
           log=None, cache_model: bool = False) -> dict:
    """Run the export described by config and return its summary. With resume=True, continue the export
    already in config.out (or start it, when the folder holds none). With config.num_workers, export only
    part worker_index, into config.out/parts/part-IIIII-of-NNNNN (see sharding.py). cache_model keeps the
    loaded model in this process for the next call (one load per Dask worker process)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    columns = Columns(config.tokens_column, config.label_column, config.id_column, config.label_names)
    paths = resolve_inputs(config.inputs)
    shards = open_shards(paths, columns)
    vocab = load_vocab(config.vocab) if config.vocab else None
    part = None
    if config.num_workers is not None:
        from stream_export import sharding

        part = sharding.part_of(shards, config.worker_index, config.num_workers)

    from stream_export import model as modelmod

    model, max_len, built = _state_model(config, cache_model)
    max_token = modelmod.max_token_id(model)
    if config.pad_value < 0 or (max_token is not None and config.pad_value > max_token):
        raise ConfigError(f"--pad-value {config.pad_value} is not a token id the model accepts (0..{max_token}, "
                          "its embedding's input_dim - 1)" if max_token is not None else
                          f"--pad-value {config.pad_value} is negative: give the padding token's id")
    state_model, layers, outputs = built.model, built.layers, built.outputs
    if config.dtype != "float32":  # the storage type of the states and cells; the model still computes float32
        outputs = [dataclasses.replace(o, dtype=config.dtype) if o.file == "states" else o for o in outputs]
    for note in built.notes:
        log(note)
    fingerprints = {"model": checkpoint.file_fingerprint(config.model, whole=True),
                    "shards": {p: checkpoint.file_fingerprint(p) for p in paths}}
    total_docs = part.documents if part else sum(s.num_rows for s in shards)
    out = sharding.part_dir(config.out, part.index, part.count) if part else config.out
    first_doc = part.first_doc if part else 0
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        if part:
            log(f"worker {part.index} of {part.count}: documents {part.first_doc:,}..{part.stop_doc - 1:,} "
                f"(row groups {part.units[0]}..{part.units[1] - 1}) into {out}")
    except OSError as e:
        raise OutputError(f"output folder {out} cannot be created: {e}") from e
    with checkpoint.FolderLock(out):
        journal = checkpoint.load(out)
        if resume and journal is not None:
            _check_compatible(journal, config, fingerprints)
            if journal["complete"]:
                log(f"{out} is already complete ({journal['committed']['documents']} documents); nothing to do")
                return journal["summary"]
            log(f"resuming {out} at document {journal['committed']['documents']:,} of {total_docs:,}")
        else:
            if not resume:
                _clear(out, journal, overwrite)
            journal = {"config": config.to_dict(), "fingerprints": fingerprints, "complete": False,
                       "max_len": max_len, "layers": [vars(l) for l in layers],
                       "outputs": [vars(o) for o in outputs],
                       "totals": {"documents": total_docs, "rows": total_docs * max_len},
                       "committed": {"documents": 0, "rows": 0, "tokens": 0, "truncated": 0, "source": 0,
                                     "skipped": 0}}
            if part:
                journal["part"] = dict(part.to_dict(), corpus_documents=sum(s.num_rows for s in shards))
            _save(out, journal)
        committed = journal["committed"]
        # documents = written (rows of the datasets), source = Parquet documents consumed (where to go on)
        committed.setdefault("source", committed["documents"])
        committed.setdefault("skipped", 0)
        skips = SkipLog() if config.on_error == "skip" else None
        if skips is not None:
            _truncate_report(out, committed["skipped"])
        _warn_if_short_of_space(out, outputs, journal, log)
        # Nothing committed means nothing to keep: (re)create the files, whatever a kill left of them.
        writer = ProjectWriter(out, outputs, max_len, labels=config.label_column is not None,
                               doc_ids=config.id_column is not None, create=committed["documents"] == 0,
                               skip_padding=config.padding if config.skip_padding else None,
                               source=skips is not None,
                               compression=None if config.compression == "none" else config.compression,
                               compression_level=config.compression_level, chunk_rows=config.chunk_rows,
                               batch_rows=None if config.skip_padding or skips is not None else config.batch_size * max_len)
        try:
            writer.truncate(committed["documents"], committed["rows"])
            batches = iter_batches(shards, columns, max_len, config.batch_size, padding=config.padding,
                                   truncating=config.truncating, pad_value=config.pad_value,
                                   start_doc=first_doc + committed["source"], max_token=max_token,
                                   stop_doc=part.stop_doc if part else None, align=skips is None,
                                   vocab=_known(vocab, config) if vocab is not None else None, skipped=skips)
            loop_started, loop_cpu = time.monotonic(), time.process_time()
            _Run(config, journal, writer, shards, quiet, log, out, first_doc, skips, outputs).loop(
                batches, state_model, with_labels=columns.label is not None, with_ids=columns.doc_id is not None)
            loop_seconds, loop_cpu = time.monotonic() - loop_started, time.process_time() - loop_cpu
            writer.close()
            _pause_for_tests("finish")
            _finish(out, config, journal, vocab, outputs, name=os.path.basename(out) if part else config.name)
        except Exception as e:
            if not getattr(e, "hdf5_broken", False):  # roll back to the last commit: the folder holds it exactly
                try:
                    writer.truncate(journal["committed"]["documents"], journal["committed"]["rows"])
                    writer.flush()
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    pass
            writer.close(check=False)
            if not journal["committed"]["source"] and not isinstance(e, Interrupted):
                _remove_ours(out, remove_folder=created)  # a failed fresh export leaves nothing behind
                _restore_previous(out, log)
            raise
        journal["summary"] = _summary(out, journal, time.monotonic() - started)
        journal["summary"].update(loop_seconds=round(loop_seconds, 3),  # streaming alone: no model loading
                                  loop_cpu_seconds=round(loop_cpu, 3))  # all threads, for shared machines
        _save(out, journal)
        shutil.rmtree(os.path.join(out, PREVIOUS), ignore_errors=True)  # replaced for good now
        if config.sample_docs:  # cut from the finished files: no second model run
            from stream_export.sample import write_sample

            journal["summary"]["sample"] = write_sample(out, config.sample_docs, config.sample_seed, log=log)["out"]
            _save(out, journal)
    return journal["summary"]


def resume(out: str, **kwargs) -> dict:
    """Continue the export in OUT with the config saved in its journal."""
    journal = checkpoint.load(out)
    if journal is None:
        if os.path.isdir(os.path.join(out, "parts")):
            raise ResumeError(f"{out} holds the parts of a sharded export, not one export: resume a part with "
                              f"`stream-export resume {os.path.join(out, 'parts', 'part-…')}` (or run its worker "
                              "again with --resume), then `stream-export merge`")
        raise ResumeError(f"{out} holds no export to resume (no {checkpoint.JOURNAL})")
    if journal.get("part"):  # a part of a sharded export: OUT/parts/part-..., its config names OUT
        out = os.path.dirname(os.path.dirname(os.path.abspath(out)))
    return export(ExportConfig.from_dict(journal["config"]).replace(out=out), resume=True, **kwargs)


_MODELS = {}
"""(model path, SHA-256, what is exported) -> (model, max_len, built state model), with cache_model=True."""
_LOADS = [0]


def model_loads() -> int:
    """How many times this process loaded a model file (the Dask tests check one load per worker)."""
    return _LOADS[0]


def _state_model(config, cache):
    from stream_export import model as modelmod

    if cache and os.path.isfile(config.model):  # a changed file is a new key
        key = (config.model, checkpoint.file_fingerprint(config.model, whole=True)["sha256"], config.layers,
               config.cell_states, config.predictions, config.max_len)
        if key in _MODELS:
            return _MODELS[key]
    else:
        cache = False
    model = modelmod.load_model(config.model)
    _LOADS[0] += 1
    max_len = _max_len(config, modelmod.input_length(model))
    built = modelmod.build_state_model(model, config.layers, cell_states=config.cell_states,
                                       predictions=config.predictions, timesteps=max_len)
    if cache:
        _MODELS[key] = (model, max_len, built)
    return model, max_len, built


def _save(out, journal):
    try:
        checkpoint.save(out, journal)
    except OSError as e:
        raise OutputError(f"saving the journal in {out} failed: {e}; the previous commit is intact, resume "
                          "once the cause (disk full?) is fixed") from e


def _warn_if_short_of_space(out, outputs, journal, log):
    row_bytes = sum(np.dtype(o.dtype).itemsize * (o.cells or 1) for o in outputs) + 4 + 8 + 4  # + words, doc, label
    rows_left = journal["totals"]["rows"] - journal["committed"]["rows"]  # at most: --skip-padding writes fewer
    need, free = rows_left * row_bytes, shutil.disk_usage(out).free
    if need > free:
        log(f"warning: the export needs about {need / 2**30:,.2f} GiB more but {out} has "
            f"{free / 2**30:,.2f} GiB free; it will stop when the disk is full and can be resumed then")


def _pause_for_tests(step):
    """Sleep at a named step when STREAM_EXPORT_PAUSE_AT=step:seconds, so crash tests can kill there."""
    at, _, seconds = os.environ.get("STREAM_EXPORT_PAUSE_AT", "").partition(":")
    if at == step:
        time.sleep(float(seconds))


def _max_len(config, fixed):
    if fixed is None:
        if config.max_len is None:
            raise ConfigError("the model accepts documents of any length: give --max-len (timesteps per "
                              "document; longer documents are truncated, shorter ones padded)")
        return config.max_len
    if config.max_len is not None and config.max_len != fixed:
        raise ConfigError(f"--max-len {config.max_len} conflicts with the model's fixed input length {fixed}; "
                          "drop --max-len or use a model built for that length")
    return fixed


PREVIOUS = ".stream_export-previous"
"""Where --overwrite keeps the export it replaces until the new one is complete."""


def _clear(out, journal, overwrite):
    """Make way for a new export. With overwrite, a complete export (or a project that is not ours) is
    moved aside into PREVIOUS (its lstm.yml renamed, so LSTMVis does not see it), to be restored if the new
    export fails before its first commit, and deleted once the new one is complete. An incomplete export
    is simply replaced."""
    present = [f for f in OUR_FILES if os.path.exists(os.path.join(out, f))]
    if present and not overwrite:
        if journal:
            advice = f"use `stream-export resume {out}` to continue it, or --overwrite to replace it"
        else:
            advice = "choose another --out, or --overwrite to replace them"
        what = "an export" if journal else f"files of an LSTMVis project ({', '.join(present)})"
        raise OutputError(f"{out} already holds {what}; {advice}")
    if present and (journal is None or journal.get("complete")):
        keep = os.path.join(out, PREVIOUS)
        shutil.rmtree(keep, ignore_errors=True)
        os.makedirs(keep)
        for name in present:
            os.replace(os.path.join(out, name), os.path.join(keep, name + (".off" if name == "lstm.yml" else "")))
    _remove_ours(out, remove_folder=False)


def _restore_previous(out, log):
    """Put back the export that --overwrite moved aside, if there is one."""
    keep = os.path.join(out, PREVIOUS)
    if not os.path.isdir(keep):
        return
    for name in os.listdir(keep):
        os.replace(os.path.join(keep, name), os.path.join(out, name.removesuffix(".off")))
    os.rmdir(keep)
    log(f"the export that --overwrite was replacing is back in {out}, unchanged")


def _remove_ours(out, remove_folder):
    for name in OUR_FILES:
        for path in (os.path.join(out, name), os.path.join(out, name + ".tmp")):
            if os.path.exists(path):
                os.remove(path)
    if remove_folder:
        shutil.rmtree(out, ignore_errors=True)


def _check_compatible(journal, config, fingerprints):
    saved = ExportConfig.from_dict(journal["config"]).to_dict()  # keys added since then get their defaults
    now = config.to_dict()
    changed = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(now) if saved.get(k) != now.get(k)
               and k != "out"]
    if changed:
        raise ResumeError("cannot resume: the config differs from the saved one (" + "; ".join(changed) +
                          "); resume with the original options or start again with --overwrite")
    old = journal["fingerprints"]
    if old["model"] != fingerprints["model"]:
        raise ResumeError(f"cannot resume: model file {config.model} changed since the export started "
                          f"(was {old['model']}, now {fingerprints['model']})")
    if sorted(old["shards"]) != sorted(fingerprints["shards"]):
        added = sorted(set(fingerprints["shards"]) - set(old["shards"]))
        gone = sorted(set(old["shards"]) - set(fingerprints["shards"]))
        raise ResumeError(f"cannot resume: the input shards changed (added {added}, missing {gone})")
    for path, fp in old["shards"].items():
        if fingerprints["shards"][path] != fp:
            raise ResumeError(f"cannot resume: shard {path} changed since the export started")


def _known(vocab, config):
    """(vocabulary path, bool array True at every id that has a token, the padding id included)."""
    known = np.zeros(max(max(vocab, default=0), config.pad_value) + 1, dtype=bool)
    known[list(vocab)] = True
    known[config.pad_value] = True
    return config.vocab, known


def _truncate_report(out, entries):
    """Cut skipped.tsv back to its header and the first `entries` lines (those committed), creating it."""
    path = os.path.join(out, SKIPPED)
    lines = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")[1:1 + entries]
    if len(lines) < entries or any(not line for line in lines):
        raise ResumeError(f"{path} lists fewer skipped documents than the journal commits ({entries}); "
                          "start again with --overwrite")
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
        f.write(SKIPPED_HEADER + "".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def _report_line(e: Skipped) -> str:
    reason = " ".join(e.reason.split())  # one line, no tabs
    return f"{e.source}\t{e.shard}\t{e.row}\t{reason}\n"


class _Run:
    """The export loop's state: counters, commits, progress and signal handling."""

    def __init__(self, config, journal, writer, shards, quiet, log, out, first_doc=0, skips=None, outputs=()):
        """first_doc: the global index of the first document of the part exported (0 for a whole export);
        the journal's counters (documents, source) count from there."""
        self.config, self.journal, self.writer, self.shards = config, journal, writer, shards
        self.out, self.quiet, self.log, self.first_doc = out, quiet, log, first_doc
        self.skips, self.outputs = skips, outputs
        self.stop_signal = None

    def loop(self, batches, state_model, with_labels, with_ids):
        from concurrent.futures import ThreadPoolExecutor, wait

        from stream_export.tfdata import state_batches

        self.syncer, self.pending = ThreadPoolExecutor(1, thread_name_prefix="commit"), None
        done = dict(self.journal["committed"])
        max_len = self.journal["max_len"]
        progress = _Progress(self.journal["totals"]["rows"], done["source"] * max_len, self.quiet, self.log)
        last_rows, last_time = done["rows"], time.monotonic()
        # a Dask task runs in a worker thread, where signals cannot be handled
        previous = ({s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                    if threading.current_thread() is threading.main_thread() else {})
        try:
            for batch, states in state_batches(batches, state_model, max_len, with_labels, with_ids,
                                               grid=self.config.batch_size if self.skips is None else None):
                consumed = int(batch.source[-1]) + 1 - self.first_doc
                batch, states = self.finite(batch, states)
                n = len(batch.tokens)
                if n:
                    # the doc track: written order, from the part's first document
                    batch = dataclasses.replace(batch, first_doc=self.first_doc + done["documents"])
                    try:
                        rows = self.writer.append(batch, states)
                    except DiskFull:
                        self.commit(done, wait=True)  # keep what fits; the flush needs far less than the margin
                        raise
                    done["rows"] += rows
                done["documents"] += n
                done["tokens"] += int(np.minimum(batch.lengths, max_len).sum())
                done["truncated"] += int((batch.lengths > max_len).sum())
                progress.update((consumed - done["source"]) * max_len)
                done["source"] = consumed
                _pause_for_tests("batch")
                if (self.stop_signal or done["rows"] - last_rows >= self.config.commit_rows
                        or time.monotonic() - last_time >= self.config.commit_seconds):
                    self.commit(done, wait=bool(self.stop_signal))
                    last_rows, last_time = done["rows"], time.monotonic()
                if self.stop_signal:
                    raise Interrupted(f"stopped by {signal.Signals(self.stop_signal).name} after committing "
                                      f"{done['source']:,} of {self.journal['totals']['documents']:,} "
                                      f"documents; continue with: stream-export resume {self.out}")
            done["source"] = self.journal["totals"]["documents"]  # bad documents after the last good one
            self.commit(done, wait=True)
        finally:
            if self.pending is not None:  # after another error: let the sync end before the files close
                wait([self.pending])
            self.syncer.shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
            progress.close()

    def finite(self, batch, states):
        """Never write NaN or Inf: the first document whose states hold one stops the export, naming its shard,
        row and layer; under --on-error skip every such document is left out and logged."""
        n = len(batch.tokens)
        bad = np.zeros(n, dtype=bool)
        for o, v in zip(self.outputs, states):
            if v.dtype.kind != "f":
                continue
            limit = float(np.finfo(o.dtype).max)  # of the storage type: --dtype float16 overflows at 65504
            if all_finite(v) and (np.finfo(o.dtype).bits >= np.finfo(v.dtype).bits
                                  or max(float(v.max()), -float(v.min())) <= limit):  # no temporary arrays
                continue
            with np.errstate(invalid="ignore"):
                here = ~(np.abs(v.reshape(n, -1)) <= limit).all(axis=1) & ~bad
            for d in np.flatnonzero(here):
                path, row = locate(self.shards, int(batch.source[d]))
                if np.isfinite(v[d]).all():
                    problem = (f"has values beyond the range of {o.dtype} (|x| > {limit:g}) in {o.path}; nothing "
                               "of the document was written: export with --dtype float32")
                else:
                    problem = (f"produced NaN or Inf ({o.path}); nothing of the document was written (check the "
                               "model's weights and the document's tokens)")
                message = f"shard {path}, row {row}: layer {o.source} {problem}"
                if self.skips is None:
                    raise InputError(message)
                self.skips.add(Skipped(int(batch.source[d]), path, row, message))
            bad |= here
        if not bad.any():
            return batch, states
        return batch.take(~bad), [v[~bad] for v in states]

    def commit(self, done, wait=False):
        """Make everything written so far durable: flush the HDF5 files and append the documents skipped
        before the committed position to skipped.tsv; then fsync them and replace the journal, in a
        background thread while the next batches are computed (with wait, before returning). One commit is
        in flight at a time, and its journal is written only once its rows are on disk."""
        self.writer.flush()
        if self.skips is not None:
            entries = self.skips.take_before(self.first_doc + done["source"])
            if entries:
                try:
                    with open(os.path.join(self.out, SKIPPED), "a", encoding="utf-8", newline="") as f:
                        f.write("".join(map(_report_line, entries)))
                except OSError as e:
                    raise OutputError(f"writing {SKIPPED} in {self.out} failed: {e}; the previous commit is "
                                      "intact, resume once the cause is fixed") from e
                done["skipped"] += len(entries)
        position = (locate(self.shards, self.first_doc + done["source"])
                    if done["source"] < self.journal["totals"]["documents"] else None)
        committed = dict(done, next_shard=position[0] if position else None,
                         next_row=position[1] if position else None)
        self.settle()
        self.pending = self.syncer.submit(self._persist, committed)
        if wait:
            self.settle()

    def _persist(self, committed):
        self.writer.sync()
        if self.skips is not None and os.path.exists(report := os.path.join(self.out, SKIPPED)):
            try:
                fd = os.open(report, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                raise OutputError(f"syncing {SKIPPED} in {self.out} failed: {e}; the previous commit is "
                                  "intact, resume once the cause is fixed") from e
        _save(self.out, dict(self.journal, committed=committed))
        self.journal["committed"] = committed

    def settle(self):
        """Wait for the commit in flight, raising its error if it failed."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None and signum == signal.SIGINT:
            sys.stderr.write("\nsecond SIGINT: aborting now; the last commit is intact\n")
            os._exit(130)
        self.stop_signal = signum
        self.log(f"{signal.Signals(signum).name} received: committing and stopping after this batch "
                 "(SIGINT again aborts at once)")


def _finish(out, config, journal, vocab, outputs, name):
    """Write the dicts and lstm.yml for what was written; the HDF5 files are closed already."""
    from stream_export.writer import unique_values

    if not journal["committed"]["documents"] and journal["committed"]["skipped"]:
        raise InputError(f"every one of the {journal['committed']['skipped']:,} documents was bad, so there is "
                         f"nothing to export; {os.path.join(out, SKIPPED)} lists them and why")
    entries = dict(vocab) if vocab is not None else {int(i): str(i) for i in unique_values(out, "train", "words")}
    if vocab is None or config.pad_value not in vocab:
        entries[config.pad_value] = PAD_TOKEN
    write_dict(os.path.join(out, FILES["words"]), entries)
    labels = config.label_column is not None
    if labels:
        names = config.label_names
        write_dict(os.path.join(out, FILES["labels"]),
                   dict(enumerate(names)) if names is not None
                   else {int(i): str(i) for i in unique_values(out, "meta", "label")})
    classes = None
    if config.predictions:
        count = max(2, sum(o.kind == "probability" for o in outputs))  # one sigmoid output: classes 0, 1
        names = config.label_names
        classes = list(names) if names is not None and len(names) == count else [str(j) for j in range(count)]
        write_dict(os.path.join(out, FILES["classes"]), dict(enumerate(classes)))
    write_lstm_yml(out, name, outputs, labels, journal["committed"]["documents"], classes)
    journal["complete"] = True


def _summary(out, journal, seconds):
    c = journal["committed"]
    size = sum(os.path.getsize(os.path.join(out, f)) for f in OUR_FILES if os.path.exists(os.path.join(out, f)))
    return {"out": out, "documents": c["documents"], "rows": c["rows"], "tokens": c["tokens"],
            "truncated_documents": c["truncated"], "skipped_documents": c.get("skipped", 0),
            "layers": [l["name"] for l in journal["layers"]],
            "bytes": size, "seconds": round(seconds, 3),
            "rows_per_second": round(c["rows"] / seconds, 1) if seconds else None,
            "tokens_per_second": round(c["tokens"] / seconds, 1) if seconds else None}


class _Progress:
    """A tqdm bar over rows on a terminal; plain log lines every 30 s otherwise (batch jobs)."""

    def __init__(self, total, initial, quiet, log, every=30.0):
        self.total, self.done, self.log, self.every = total, initial, log, every
        self.bar = None
        self.quiet = quiet
        self.t0 = self.last = time.monotonic()
        self.start = initial
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="export",
                            dynamic_ncols=True)

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            rate = (self.done - self.start) / max(self.last - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            self.log(f"{100 * self.done / max(self.total, 1):5.1f}% {self.done:,}/{self.total:,} tokens, "
                     f"{rate:,.0f} tokens/s, ETA {eta:,.0f} s")

    def close(self):
        if self.bar is not None:
            self.bar.close()
