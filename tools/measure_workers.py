"""Measure what splitting an export between workers gains, and what `stream-export merge` costs.

    .venv/bin/python tools/measure_workers.py [--docs 6000] [--len 100] [--units 128] [--parts 100] [DIR]

1. scaling: the same export as 1 process, then as 2 worker processes started together (--num-workers 2
   --worker-index 0/1, as a job array would), wall time from start to the last worker's exit, then merge;
   and with --dask, through --engine dask (a LocalCluster of 2 processes; merge included).
2. merge: a corpus split into --parts parts (exported in this process, the model loaded once), then
   `stream-export merge` timed with virtual datasets and with --copy.
Prints one JSON object. The models and corpora are synthetic (random weights, random tokens).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def corpus(folder, docs, length, shards=8, row_group=250, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    per = -(-docs // shards)
    for k in range(shards):
        n = min(per, docs - k * per)
        toks = [rng.integers(1, 1000, size=rng.integers(length // 2, length + 1)).tolist() for _ in range(n)]
        pq.write_table(pa.table({"tokens": pa.array(toks, type=pa.list_(pa.int32()))}),
                       os.path.join(folder, f"s{k:03d}.parquet"), row_group_size=row_group)
    return folder


def model(path, length, units):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(length,), dtype="int32")
    x = keras.layers.Embedding(1000, 64)(inp)
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    keras.Model(inp, x).save(path)
    return path


def cli(*args):
    return [sys.executable, "-m", "stream_export", *map(str, args)]


def timed(commands):
    """Start the commands together; seconds until the last one exits."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands]
    for p, c in zip(procs, commands):
        err = p.communicate()[1]
        if p.returncode:
            raise SystemExit(f"{' '.join(c)} failed ({p.returncode}):\n{err[-2000:]}")
    return time.monotonic() - t0


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("dir", nargs="?")
    a.add_argument("--docs", type=int, default=6000)
    a.add_argument("--len", type=int, default=100)
    a.add_argument("--units", type=int, default=128)
    a.add_argument("--parts", type=int, default=100)
    a.add_argument("--dask", action="store_true", help="also time --engine dask with a LocalCluster of 2")
    a.add_argument("--skip-scaling", action="store_true")
    args = a.parse_args()
    d = args.dir or tempfile.mkdtemp(prefix="measure_workers_")
    os.makedirs(d, exist_ok=True)
    m = model(os.path.join(d, "m.keras"), args.len, args.units)
    result = {"machine": f"{os.cpu_count()} cores", "docs": args.docs, "len": args.len, "units": args.units}
    if not args.skip_scaling:
        inputs = corpus(os.path.join(d, "in"), args.docs, args.len)
        base = ["export", "--quiet", "--model", m, "--input", inputs, "--batch-size", 128]
        one = timed([cli(*base, "--out", os.path.join(d, "one", "out"))])
        two_out = os.path.join(d, "two", "out")
        two = timed([cli(*base, "--out", two_out, "--num-workers", 2, "--worker-index", i) for i in range(2)])
        merge = timed([cli("merge", "--quiet", two_out)])
        rows = args.docs * args.len
        result["scaling"] = {"one_process_s": round(one, 2), "two_workers_s": round(two, 2),
                             "merge_s": round(merge, 2), "speedup": round(one / (two + merge), 2),
                             "speedup_without_merge": round(one / two, 2),
                             "rows_per_s_one": round(rows / one), "rows_per_s_two": round(rows / (two + merge))}
        if args.dask:
            dask_s = timed([cli(*base, "--out", os.path.join(d, "dask", "out"), "--engine", "dask",
                                "--num-workers", 2)])
            result["scaling"]["dask_local_cluster_2_s"] = round(dask_s, 2)
    # merge of many parts: 100 row groups of 50 documents, one per part
    from stream_export import pipeline
    from stream_export.config import ExportConfig
    from stream_export.merge import merge as do_merge

    inputs = corpus(os.path.join(d, "many"), args.parts * 50, 50, shards=4, row_group=50, seed=1)
    small = model(os.path.join(d, "small.keras"), 50, 32)
    out = os.path.join(d, "parts", "out")
    t0 = time.monotonic()
    for i in range(args.parts):
        config = ExportConfig(model=small, inputs=(inputs,), out=out, batch_size=50, num_workers=args.parts,
                              worker_index=i)
        pipeline.export(config, quiet=True, log=lambda msg: None, cache_model=True)
    exported = time.monotonic() - t0
    t0 = time.monotonic()
    do_merge(out)
    vds = time.monotonic() - t0
    t0 = time.monotonic()
    do_merge(out, copy=True)
    copy = time.monotonic() - t0
    size = sum(os.path.getsize(os.path.join(out, f)) for f in ("states.hdf5", "train.hdf5", "meta.hdf5"))
    result["merge"] = {"parts": args.parts, "documents": args.parts * 50, "rows": args.parts * 50 * 50,
                       "export_parts_in_one_process_s": round(exported, 2), "merge_virtual_s": round(vds, 2),
                       "merge_copy_s": round(copy, 2), "copied_mib": round(size / 2**20, 1)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
