"""export(config) -> summary: wires reader, model, tf.data and writer; owns progress, commits and signals."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import time

import numpy as np

from stream_export import checkpoint
from stream_export.config import ExportConfig
from stream_export.errors import ConfigError, Interrupted, OutputError, ResumeError, VocabError
from stream_export.reader import Columns, iter_batches, locate, open_shards, resolve_inputs
from stream_export.vocab import PAD_TOKEN, load_vocab, write_dict
from stream_export.writer import FILES, DiskFull, ProjectWriter, write_lstm_yml

OUR_FILES = (*FILES.values(), "lstm.yml", checkpoint.JOURNAL)


def export(config: ExportConfig, *, overwrite: bool = False, resume: bool = False, quiet: bool = False,
           log=None) -> dict:
    """Run the export described by config and return its summary. With resume=True, continue the export
    already in config.out (or start it, when the folder holds none)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    columns = Columns(config.tokens_column, config.label_column, config.id_column, config.label_names)
    paths = resolve_inputs(config.inputs)
    shards = open_shards(paths, columns)
    vocab = load_vocab(config.vocab) if config.vocab else None

    from stream_export import model as modelmod

    model = modelmod.load_model(config.model)
    max_len = _max_len(config, modelmod.input_length(model))
    built = modelmod.build_state_model(model, config.layers, cell_states=config.cell_states,
                                       predictions=config.predictions, timesteps=max_len)
    state_model, layers, outputs = built.model, built.layers, built.outputs
    if config.dtype != "float32":  # the storage type of the states and cells; the model still computes float32
        outputs = [dataclasses.replace(o, dtype=config.dtype) if o.file == "states" else o for o in outputs]
    for note in built.notes:
        log(note)
    fingerprints = {"model": checkpoint.file_fingerprint(config.model, whole=True),
                    "shards": {p: checkpoint.file_fingerprint(p) for p in paths}}
    total_docs = sum(s.num_rows for s in shards)
    out = config.out
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
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
                       "committed": {"documents": 0, "rows": 0, "tokens": 0, "truncated": 0}}
            _save(out, journal)
        committed = journal["committed"]
        _warn_if_short_of_space(out, outputs, journal, log)
        # Nothing committed means nothing to keep: (re)create the files, whatever a kill left of them.
        writer = ProjectWriter(out, outputs, max_len, labels=config.label_column is not None,
                               doc_ids=config.id_column is not None, create=committed["documents"] == 0,
                               skip_padding=config.padding if config.skip_padding else None,
                               compression=None if config.compression == "none" else config.compression,
                               compression_level=config.compression_level, chunk_rows=config.chunk_rows,
                               batch_rows=None if config.skip_padding else config.batch_size * max_len)
        try:
            writer.truncate(committed["documents"], committed["rows"])
            batches = iter_batches(shards, columns, max_len, config.batch_size, padding=config.padding,
                                   truncating=config.truncating, pad_value=config.pad_value,
                                   start_doc=committed["documents"], max_token=modelmod.max_token_id(model))
            if vocab is not None:
                batches = _check_vocab(batches, vocab, config.pad_value, shards, config)
            loop_started, loop_cpu = time.monotonic(), time.process_time()
            _Run(config, journal, writer, shards, quiet, log).loop(
                batches, state_model, with_labels=columns.label is not None, with_ids=columns.doc_id is not None)
            loop_seconds, loop_cpu = time.monotonic() - loop_started, time.process_time() - loop_cpu
            writer.close()
            _pause_for_tests("finish")
            _finish(out, config, journal, vocab, outputs)
        except Exception as e:
            writer.close(check=False)
            if journal["committed"]["documents"] == 0 and not isinstance(e, Interrupted):
                _remove_ours(out, remove_folder=created)  # a failed fresh export leaves nothing behind
            raise
        journal["summary"] = _summary(out, journal, time.monotonic() - started)
        journal["summary"].update(loop_seconds=round(loop_seconds, 3),  # streaming alone: no model loading
                                  loop_cpu_seconds=round(loop_cpu, 3))  # all threads, for shared machines
        _save(out, journal)
        if config.sample_docs:  # cut from the finished files: no second model run
            from stream_export.sample import write_sample

            journal["summary"]["sample"] = write_sample(out, config.sample_docs, config.sample_seed, log=log)["out"]
            _save(out, journal)
    return journal["summary"]


def resume(out: str, **kwargs) -> dict:
    """Continue the export in OUT with the config saved in its journal."""
    journal = checkpoint.load(out)
    if journal is None:
        raise ResumeError(f"{out} holds no export to resume (no {checkpoint.JOURNAL})")
    return export(ExportConfig.from_dict(journal["config"]).replace(out=out), resume=True, **kwargs)


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


def _clear(out, journal, overwrite):
    present = [f for f in OUR_FILES if os.path.exists(os.path.join(out, f))]
    if present and not overwrite:
        what = "an export" if journal else f"files of an LSTMVis project ({', '.join(present)})"
        raise OutputError(f"{out} already holds {what}; use `stream-export resume {out}` to continue it, "
                          "or --overwrite to replace it")
    _remove_ours(out, remove_folder=False)


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


def _check_vocab(batches, vocab, pad_value, shards, config):
    known = np.zeros(max(max(vocab), pad_value) + 1, dtype=bool)
    known[list(vocab)] = True
    known[pad_value] = True
    for batch in batches:
        tokens = batch.tokens
        bad = tokens >= len(known)
        bad[~bad] = ~known[tokens[~bad]]
        if bad.any():
            doc, pos = map(int, np.argwhere(bad)[0])
            path, row = locate(shards, batch.first_doc + doc)
            raise VocabError(f"shard {path}, row {row}: token id {tokens[doc, pos]} has no entry in vocabulary "
                             f"{config.vocab}; use the vocabulary the corpus was tokenised with")
        yield batch


class _Run:
    """The export loop's state: counters, commits, progress and signal handling."""

    def __init__(self, config, journal, writer, shards, quiet, log):
        self.config, self.journal, self.writer, self.shards = config, journal, writer, shards
        self.out, self.quiet, self.log = config.out, quiet, log
        self.stop_signal = None

    def loop(self, batches, state_model, with_labels, with_ids):
        from stream_export.tfdata import state_batches

        done = dict(self.journal["committed"])
        max_len = self.journal["max_len"]
        progress = _Progress(self.journal["totals"]["rows"], done["rows"], self.quiet, self.log)
        last_rows, last_time = done["rows"], time.monotonic()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for batch, states in state_batches(batches, state_model, max_len, with_labels, with_ids):
                try:
                    rows = self.writer.append(batch, states)
                except DiskFull:
                    self.commit(done)  # keep what fits; the flush needs far less than the margin
                    raise
                n = len(batch.tokens)
                done["documents"] += n
                done["rows"] += rows
                done["tokens"] += int(np.minimum(batch.lengths, max_len).sum())
                done["truncated"] += int((batch.lengths > max_len).sum())
                progress.update(n * max_len)
                _pause_for_tests("batch")
                if (self.stop_signal or done["rows"] - last_rows >= self.config.commit_rows
                        or time.monotonic() - last_time >= self.config.commit_seconds):
                    self.commit(done)
                    last_rows, last_time = done["rows"], time.monotonic()
                if self.stop_signal:
                    raise Interrupted(f"stopped by {signal.Signals(self.stop_signal).name} after committing "
                                      f"{done['documents']:,} of {self.journal['totals']['documents']:,} "
                                      f"documents; continue with: stream-export resume {self.out}")
            self.commit(done)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            progress.close()

    def commit(self, done):
        """Make everything written so far durable: flush the HDF5 files, then replace the journal."""
        self.writer.flush()
        position = locate(self.shards, done["documents"]) if done["documents"] < self.journal["totals"]["documents"] else None
        self.journal["committed"] = dict(done, next_shard=position[0] if position else None,
                                         next_row=position[1] if position else None)
        _save(self.out, self.journal)

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None and signum == signal.SIGINT:
            sys.stderr.write("\nsecond SIGINT: aborting now; the last commit is intact\n")
            os._exit(130)
        self.stop_signal = signum
        self.log(f"{signal.Signals(signum).name} received: committing and stopping after this batch "
                 "(SIGINT again aborts at once)")


def _finish(out, config, journal, vocab, outputs):
    """Write the dicts and lstm.yml for what was written; the HDF5 files are closed already."""
    from stream_export.writer import unique_values

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
    write_lstm_yml(out, config.name, outputs, labels, journal["committed"]["documents"], classes)
    journal["complete"] = True


def _summary(out, journal, seconds):
    c = journal["committed"]
    size = sum(os.path.getsize(os.path.join(out, f)) for f in OUR_FILES if os.path.exists(os.path.join(out, f)))
    return {"out": out, "documents": c["documents"], "rows": c["rows"], "tokens": c["tokens"],
            "truncated_documents": c["truncated"], "layers": [l["name"] for l in journal["layers"]],
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
