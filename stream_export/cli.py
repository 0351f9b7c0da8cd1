"""Command line: argparse -> ExportConfig -> pipeline, and exit codes. Imports no TensorFlow until it runs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from stream_export.config import ExportConfig
from stream_export.errors import ConfigError, ExportError

EXIT_CODES = """exit codes:
  0   done (or already complete)        4   model file unusable
  1   unexpected error (a bug: report)  5   output folder unusable (held open, read-only, full, ...)
  2   bad options                       6   cannot resume as asked
  3   bad input data or vocabulary      7   verify found problems (listed)
                                        75  interrupted by SIGINT/SIGTERM: work committed, resume it
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
    absolute = lambda path: os.path.abspath(path) if path is not None else None  # noqa: E731
    return ExportConfig(
        model=absolute(a.model), inputs=tuple(absolute(i) for i in a.input), out=absolute(a.out),
        vocab=absolute(a.vocab), tokens_column=a.tokens_column, label_column=a.label_column,
        id_column=a.id_column, label_names=split(a.label_names), max_len=a.max_len, padding=a.padding,
        truncating=a.truncating, pad_value=a.pad_value, layers=split(a.layers), batch_size=a.batch_size,
        commit_rows=commit_rows, commit_seconds=commit_seconds, cell_states=a.cell_states,
        predictions=a.predictions, skip_padding=a.skip_padding, sample_docs=a.sample_docs,
        sample_seed=a.sample_seed, dtype=a.dtype, compression=compression, compression_level=level,
        chunk_rows=a.chunk_rows)


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our output
    try:
        if a.command == "status":
            return _status(a.out, a.json)
        if a.command in _TOOLS:
            return _TOOLS[a.command](a)
        from stream_export import pipeline

        if a.command == "resume":
            summary = pipeline.resume(os.path.abspath(a.out), quiet=a.quiet)
        else:
            if a.overwrite and a.resume:
                raise ConfigError("--overwrite and --resume contradict each other: choose one")
            summary = pipeline.export(_config(a), overwrite=a.overwrite, resume=a.resume, quiet=a.quiet)
    except ExportError as e:
        print(f"stream-export: error: {e}", file=sys.stderr)
        if getattr(e, "hdf5_broken", False) and argv is None:  # the HDF5 library cannot be shut down
            sys.stderr.flush()                                  # cleanly after a failed write
            os._exit(e.exit_code)
        return e.exit_code
    if a.summary_json:
        with open(a.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    if not a.quiet:
        print(_describe(summary), file=sys.stderr)
    return 0


def _describe(s) -> str:
    return (f"exported {s['documents']:,} documents, {s['rows']:,} rows ({s['tokens']:,} tokens, "
            f"{s['truncated_documents']:,} documents truncated) of layers {', '.join(s['layers'])} "
            f"in {s['seconds']:.1f} s ({s['rows_per_second'] or 0:,.0f} rows/s), "
            f"{s['bytes'] / 2**20:,.1f} MiB in {s['out']}")


def _status(out, as_json) -> int:
    from stream_export import checkpoint

    journal = checkpoint.load(out)
    if journal is None:
        print(f"stream-export: error: {out} holds no export", file=sys.stderr)
        return 6
    c, t = journal["committed"], journal["totals"]
    info = {"out": out, "complete": journal["complete"], "resumable": not journal["complete"],
            "committed_documents": c["documents"], "total_documents": t["documents"],
            "committed_rows": c["rows"], "total_rows": t["rows"],
            "percent": round(100 * c["documents"] / t["documents"], 2) if t["documents"] else 100.0,
            "updated": journal.get("updated"), "config": journal["config"]}
    if as_json:
        print(json.dumps(info, indent=1))
    else:
        state = "complete" if info["complete"] else f"incomplete, resume with: stream-export resume {out}"
        print(f"{out}: {state}\n  documents {c['documents']:,} / {t['documents']:,}\n"
              f"  rows {c['rows']:,} / {t['rows']:,} ({info['percent']}%)\n  last commit {info['updated']}")
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


_TOOLS = {"inspect": _inspect, "verify": _verify, "preview": _preview, "sample": _sample}


if __name__ == "__main__":
    raise SystemExit(main())
