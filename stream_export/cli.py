"""Command line: argparse -> ExportConfig -> pipeline, and exit codes. Imports no TensorFlow until it runs."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

from stream_export.config import ExportConfig
from stream_export.errors import ConfigError, ExportError

EXIT_CODES = """exit codes:
  0   done (or already complete)        4   model file unusable
  1   unexpected error (a bug: report)  5   output folder unusable (held open, read-only, full, ...)
  2   bad options                       6   cannot resume as asked
  3   bad input data or vocabulary      7   verify found problems (listed)
  8   merge: a part is missing,         75  interrupted by SIGINT/SIGTERM: work committed, resume it
      incomplete or incompatible
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-export", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES,
        description="Export per-timestep hidden states of a Keras recurrent model over Parquet shards "
                    "into an LSTMVis project folder, streaming, with resumable commits.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("export", help="export a corpus through a model into an LSTMVis project",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    e.add_argument("--model", required=True,
                   help="Keras model: .keras, .h5 (Keras 3, or Keras 2 as saved by tf.keras)")
    e.add_argument("--input", required=True, action="append", metavar="PATH",
                   help="Parquet file, directory of them, or glob; repeatable. Shards go in sorted path order")
    e.add_argument("--out", required=True, help="project folder to write (LSTMVis names the project after it)")
    e.add_argument("--vocab", help="token file (line i = id i) or JSON token->id mapping / Keras Tokenizer "
                                   "JSON; without it each id stands for itself")
    e.add_argument("--tokens-column", default="tokens", help="list<int> column of token ids (default: tokens)")
    e.add_argument("--label-column", help="column with each document's class (int id or name)")
    e.add_argument("--label-names", help="comma-separated class names, index = class id")
    e.add_argument("--id-column", help="column with each document's id, stored in meta.hdf5 documents/id")
    e.add_argument("--max-len", type=int, help="timesteps per document (default: the model's fixed input length)")
    e.add_argument("--padding", choices=("pre", "post"), default="pre", help="as pad_sequences (default: pre)")
    e.add_argument("--truncating", choices=("pre", "post"), default="pre", help="as pad_sequences (default: pre)")
    e.add_argument("--pad-value", type=int, default=0, help="token id used for padding (default: 0)")
    e.add_argument("--layers", help="comma-separated recurrent layer names to export (default: all)")
    e.add_argument("--cell-states", action="store_true",
                   help="also export the LSTM cell state c at every timestep as cells{k} (slower: no cuDNN)")
    e.add_argument("--predictions", action="store_true",
                   help="also export the model's per-timestep output: a meta track per class, and the "
                        "predicted class")
    e.add_argument("--skip-padding", action="store_true",
                   help="write only the rows of real tokens; meta.hdf5 documents/start maps documents to rows")
    e.add_argument("--batch-size", type=int, default=128, help="documents per batch (default: 128)")
    e.add_argument("--commit-every", default="1000000", metavar="N|Ns",
                   help="commit (flush and journal) every N rows, or every N seconds with an s suffix; "
                        "both bounds apply: default 1000000 rows and at most 60 s")
    e.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    e.add_argument("--resume", action="store_true", help="continue the export already in --out")
    e.add_argument("--sample-docs", type=int, default=0, metavar="K",
                   help="also write a project of K randomly sampled documents to OUT_sample, small enough "
                        "for LSTMVis's pattern search (default: none)")
    e.add_argument("--sample-seed", type=int, default=0, help="seed of --sample-docs' choice (default: 0)")
    e.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="a bad document (null, null or out-of-range token ids, unknown vocabulary ids, bad "
                        "label, NaN/Inf states) stops the export (default), or is left out, counted and "
                        "listed in OUT/skipped.tsv; bad files stop it either way")
    e.add_argument("--num-workers", metavar="N|auto",
                   help="split the export into N parts (balanced by rows) under OUT/parts; join them with "
                        "`stream-export merge OUT`; auto: N from SLURM_ARRAY_TASK_COUNT")
    e.add_argument("--worker-index", type=int, metavar="I",
                   help="export part I of --num-workers (default: from SLURM_ARRAY_TASK_ID or "
                        "JOB_COMPLETION_INDEX)")
    e.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="dask: run all --num-workers parts as Dask tasks, then merge (needs stream_export[dask])")
    e.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster of "
                        "--num-workers processes)")
    e.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="storage type of states and cells (default: float32); float16 halves the files and "
                        "stops with an error at a value beyond its range (65504)")
    e.add_argument("--compression", default="none", metavar="none|gzip[:LEVEL]|lzf",
                   help="HDF5 compression of the row datasets (default: none, the fastest; see BENCHMARKS.md)")
    e.add_argument("--chunk-rows", type=int, metavar="N",
                   help="rows per HDF5 chunk of the states and cells datasets (default: about 1 MiB of rows)")
    _common(e)

    r = sub.add_parser("resume", help="continue an interrupted export with its saved config")
    r.add_argument("out", help="the project folder of the interrupted export")
    _common(r)

    s = sub.add_parser("status", help="show how far an export got")
    s.add_argument("out")
    s.add_argument("--json", action="store_true", help="print the status as JSON")

    i = sub.add_parser("inspect", help="describe a project: datasets, documents, layers, labels, config, state")
    i.add_argument("out")
    i.add_argument("--json", action="store_true", help="print the description as JSON")

    v = sub.add_parser("verify", help="check a project against LSTMVis's rules and re-run the model on a sample",
                       description="Check every LSTMVis invariant (lstm.yml references, lengths, dict lines, "
                                   "finite values, unwritten rows, virtual-dataset parts) and re-run the model "
                                   "on K seeded random documents; exit 7 with the findings if any.")
    v.add_argument("out")
    v.add_argument("--sample", type=int, default=20, metavar="K",
                   help="documents to re-run through the model (default: 20; 0: structure only)")
    v.add_argument("--seed", type=int, default=0, help="seed of the document sample (default: 0)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    w = sub.add_parser("preview", help="draw one document's states as a PNG heatmap (needs matplotlib)")
    w.add_argument("out")
    w.add_argument("--doc", type=int, required=True, metavar="N", help="document index (0-based)")
    w.add_argument("--layer", default="1", help="layer number or state dataset path, e.g. states2 (default: 1)")
    w.add_argument("--cells", help="cells to show, e.g. 0-15,40 (default: all)")
    w.add_argument("--padding", action="store_true", help="also show the padding timesteps")
    w.add_argument("--raw", action="store_true", help="colour the state itself, not tanh(state) as LSTMVis does")
    w.add_argument("--png", required=True, metavar="FILE", help="the picture to write")

    m = sub.add_parser("sample", help="write a project of K sampled documents of a finished export beside it")
    m.add_argument("out")
    m.add_argument("--docs", type=int, required=True, metavar="K", help="documents to sample")
    m.add_argument("--seed", type=int, default=0, help="seed of the choice (default: 0)")
    m.add_argument("--to", metavar="DIR", help="the sample folder (default: OUT_sample)")

    g = sub.add_parser("merge", help="join the complete parts of a sharded export into one LSTMVis project")
    g.add_argument("out", help="the folder given as --out to every worker (holds parts/)")
    g.add_argument("--copy", action="store_true",
                   help="write physical files instead of HDF5 virtual datasets over the parts")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _common(p):
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--summary-json", metavar="FILE", help="also write the final summary as JSON to FILE")


def _config(a) -> ExportConfig:
    commit_rows, commit_seconds = 1_000_000, 60.0
    spec = a.commit_every.strip()
    try:
        if spec.endswith("s"):
            commit_seconds = float(spec[:-1])
        else:
            commit_rows = int(spec)
    except ValueError:
        raise ConfigError(f"--commit-every takes N (rows) or Ns (seconds); got {spec!r}") from None
    compression, _, level = a.compression.strip().partition(":")
    try:
        level = int(level) if level else None
    except ValueError:
        raise ConfigError(f"--compression takes none, gzip, gzip:LEVEL (0-9) or lzf; got {a.compression!r}") from None
    split = lambda text: tuple(x.strip() for x in text.split(",")) if text is not None else None  # noqa: E731
    from stream_export.remote import is_uri

    def absolute(path, option):
        if path is not None and not path.strip():  # abspath('') would quietly mean the current folder
            raise ConfigError(f"{option} is empty: give a path")
        return os.path.abspath(path) if path is not None else None

    return ExportConfig(
        model=absolute(a.model, "--model"),
        inputs=tuple(i if is_uri(i) else absolute(i, "--input") for i in a.input),
        out=absolute(a.out, "--out"), vocab=absolute(a.vocab, "--vocab"), tokens_column=a.tokens_column,
        label_column=a.label_column,
        id_column=a.id_column, label_names=split(a.label_names), max_len=a.max_len, padding=a.padding,
        truncating=a.truncating, pad_value=a.pad_value, layers=split(a.layers), batch_size=a.batch_size,
        commit_rows=commit_rows, commit_seconds=commit_seconds, cell_states=a.cell_states,
        predictions=a.predictions, skip_padding=a.skip_padding, sample_docs=a.sample_docs,
        sample_seed=a.sample_seed, on_error=a.on_error, dtype=a.dtype, compression=compression,
        compression_level=level, chunk_rows=a.chunk_rows, **_worker(a))


def _worker(a) -> dict:
    """num_workers and worker_index: from the options, else from the batch system (said on stderr)."""
    count = a.num_workers
    if count not in (None, "auto"):
        try:
            count = int(count)
        except ValueError:
            raise ConfigError(f"--num-workers takes a number or auto; got {count!r}") from None
    if a.engine == "dask":
        if a.worker_index is not None or count in (None, "auto"):
            raise ConfigError("--engine dask runs every part itself: give --num-workers N and no --worker-index")
        a.num_workers = count
        return {}
    if a.scheduler is not None:
        raise ConfigError("--scheduler needs --engine dask")
    if count is None and a.worker_index is None:
        return {}
    from stream_export.sharding import worker_from_env

    index, count, source = worker_from_env(None if count == "auto" else count, a.worker_index)
    if not a.quiet:
        print(f"stream-export: part {index} of {count} (from {source})", file=sys.stderr)
    return {"num_workers": count, "worker_index": index}


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our output
    try:
        if a.command == "status":
            return _status(a.out, a.json)
        if a.command in ("export", "resume", "verify"):
            _start_tensorflow()
        if a.command in _TOOLS:
            return _TOOLS[a.command](a)
        if a.command == "export" and a.engine == "dask":
            if a.overwrite and a.resume:
                raise ConfigError("--overwrite and --resume contradict each other: choose one")
            from stream_export.distributed import run_dask

            summary = run_dask(_config(a), a.num_workers, a.scheduler, overwrite=a.overwrite, quiet=a.quiet)
            return _done(a, summary)
        from stream_export import pipeline

        if a.command == "resume":
            _check_summary_path(a.summary_json)
            summary = pipeline.resume(os.path.abspath(a.out), quiet=a.quiet)
        else:
            if a.overwrite and a.resume:
                raise ConfigError("--overwrite and --resume contradict each other: choose one")
            config = _config(a)
            _check_summary_path(a.summary_json)
            summary = pipeline.export(config, overwrite=a.overwrite, resume=a.resume, quiet=a.quiet)
    except ExportError as e:
        print(f"stream-export: error: {e}", file=sys.stderr)
        if getattr(e, "hdf5_broken", False) and argv is None:  # the HDF5 library cannot be shut down
            sys.stderr.flush()                                  # cleanly after a failed write
            os._exit(e.exit_code)
        return e.exit_code
    return _done(a, summary)


def _done(a, summary) -> int:
    if a.summary_json:
        os.makedirs(os.path.dirname(os.path.abspath(a.summary_json)), exist_ok=True)
        with open(a.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    if not a.quiet:
        print(_describe(summary), file=sys.stderr)
    return 0


TF_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IW]\d{4} |E\d{4} .*cuInit"
                        r"|To enable the following instructions")
"""TensorFlow's C++ start-up lines on a machine without a GPU, which TF_CPP_MIN_LOG_LEVEL no longer silences."""


def _start_tensorflow():
    """Import TensorFlow and look for GPUs with file descriptor 2 sent to a temporary file, then show what
    it wrote except the usual start-up chatter, so that our one-line messages are not buried under it."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if not TF_CHATTER.match(line):
                    print(line, file=sys.stderr)


def _check_summary_path(path):
    """Refuse a --summary-json that cannot be written before the export runs, not after. Its folder may
    not exist yet (it is made when the summary is written), but the nearest one that does must be writable."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ConfigError(f"--summary-json {path} cannot be written: give a file path in a writable folder")


def _describe(s) -> str:
    return (f"exported {s['documents']:,} documents, {s['rows']:,} rows ({s['tokens']:,} tokens, "
            f"{s['truncated_documents']:,} documents truncated"
            + (f", {s['skipped_documents']:,} bad documents skipped, listed in {s['out']}/skipped.tsv"
               if s.get("skipped_documents") else "") + f") of layers {', '.join(s['layers'])} "
            f"in {s['seconds']:.1f} s ({s['rows_per_second'] or 0:,.0f} rows/s), "
            f"{s['bytes'] / 2**20:,.1f} MiB in {s['out']}")


def _status(out, as_json) -> int:
    from stream_export import checkpoint

    journal = checkpoint.load(out)
    if journal is None and os.path.isdir(os.path.join(out, "parts")):
        return _parts_status(out, as_json)
    if journal is None:
        print(f"stream-export: error: {out} holds no export", file=sys.stderr)
        return 6
    c, t = journal["committed"], journal["totals"]
    read = c.get("source", c["documents"])  # Parquet documents consumed; documents = those written
    running = checkpoint.holder(out)
    info = {"out": out, "complete": journal["complete"], "running": running,
            "resumable": not journal["complete"] and running is None,
            "committed_documents": c["documents"], "total_documents": t["documents"],
            "committed_rows": c["rows"], "total_rows": t["rows"],
            "read_documents": read, "skipped_documents": c.get("skipped", 0),
            "percent": round(100 * read / t["documents"], 2) if t["documents"] else 100.0,
            "updated": journal.get("updated"), "config": journal["config"]}
    if as_json:
        print(json.dumps(info, indent=1))
    else:
        state = ("complete" if info["complete"] else f"running, exported by {running}" if running
                 else f"incomplete, resume with: stream-export resume {out}")
        skipped = f" ({read:,} read, {info['skipped_documents']:,} skipped)" if info["skipped_documents"] else ""
        config = journal["config"]
        fewer = config.get("skip_padding") or config.get("on_error") == "skip"  # rows written: not known ahead
        total = f"{c['rows']:,}" if info["complete"] else f"at most {t['rows']:,}" if fewer else f"{t['rows']:,}"
        print(f"{out}: {state}\n  documents {c['documents']:,} / {t['documents']:,}{skipped} ({info['percent']}%)\n"
              f"  rows {c['rows']:,} / {total}\n  last commit {info['updated']}")
    return 0


def _parts_status(out, as_json) -> int:
    """The status of each part of a sharded export in OUT/parts, before it is merged."""
    from stream_export import checkpoint

    parts = []
    for name in sorted(os.listdir(os.path.join(out, "parts"))):
        journal = checkpoint.load(os.path.join(out, "parts", name))
        c, t = (journal["committed"], journal["totals"]) if journal else ({"documents": 0}, {"documents": None})
        parts.append({"part": name, "complete": bool(journal and journal["complete"]),
                      "committed_documents": c["documents"], "total_documents": t["documents"]})
    info = {"out": out, "merged": False, "parts": parts}
    if as_json:
        print(json.dumps(info, indent=1))
    else:
        print(f"{out}: sharded export, not merged yet; {sum(p['complete'] for p in parts)} of {len(parts)} parts "
              "complete (`stream-export merge` checks that all N are there)")
        for p in parts:
            state = "complete" if p["complete"] else ("no journal" if p["total_documents"] is None else "incomplete")
            print(f"  {p['part']}: {state}, documents {p['committed_documents']:,} / {p['total_documents'] or 0:,}")
    return 0


def _inspect(a) -> int:
    from stream_export.inspection import describe, inspect

    info = inspect(a.out)
    print(json.dumps(info, indent=1) if a.json else describe(info))
    return 0


def _verify(a) -> int:
    from stream_export.verify import verify

    report = verify(a.out, sample=a.sample, seed=a.seed)
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        for f in report["findings"]:
            print(f"[{f['code']}] {f['where']}: {f['message']}")
        errors = ", ".join(f"{k} {v:.2g}" for k, v in report["max_abs_error"].items())
        print(f"{a.out}: " + ("OK" if report["ok"] else f"{len(report['findings'])} problem(s)") +
              (f"; re-ran {len(report['sampled_documents'])} documents, max abs error {errors}" if errors else ""))
    return 0 if report["ok"] else 7


def _preview(a) -> int:
    from stream_export.preview import preview

    drawn = preview(a.out, a.doc, a.png, layer=a.layer, cells=a.cells, padding=a.padding,
                    transform="none" if a.raw else "tanh")
    print(f"wrote {drawn['png']} ({drawn['width']}x{drawn['height']} px): {drawn['dataset']}, "
          f"{len(drawn['steps'])} timesteps x {len(drawn['cells'])} cells", file=sys.stderr)
    return 0


def _sample(a) -> int:
    from stream_export.sample import write_sample

    done = write_sample(a.out, a.docs, a.seed, dest=a.to, log=lambda m: print(m, file=sys.stderr))
    print(f"wrote {done['documents']} documents ({done['rows']:,} rows) to {done['out']}", file=sys.stderr)
    return 0


def _merge(a) -> int:
    from stream_export.merge import merge

    done = merge(a.out, copy=a.copy, log=(lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr)))
    if not a.quiet:
        print(f"merged {done['parts']} parts: {done['documents']:,} documents, {done['rows']:,} rows "
              f"({'copied' if a.copy else 'virtual datasets'}) in {done['seconds']:.1f} s into {a.out}",
              file=sys.stderr)
    return 0


_TOOLS = {"inspect": _inspect, "verify": _verify, "preview": _preview, "sample": _sample, "merge": _merge}


if __name__ == "__main__":
    raise SystemExit(main())
