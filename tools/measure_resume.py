"""Measure what a kill costs: rows redone after SIGKILL (bounded by the commit interval) and the time
from `stream-export resume` to its first new commit when most of a large export is already done, at two
output sizes. Prints a markdown table for the README.

    .venv/bin/python tools/measure_resume.py [--docs 20000] [--scale 4] [--dir /tmp/measure_resume]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T, CELLS, BATCH = 100, 64, 64


def committed(out):
    try:
        with open(os.path.join(out, "export.json")) as f:
            return json.load(f)["committed"]["rows"]
    except (OSError, ValueError, KeyError):
        return None


def wait(pred, timeout=600):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--dir", default="/tmp/measure_resume")
    a = ap.parse_args()
    import keras

    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    inp = keras.Input(shape=(T,), dtype="int32")
    x = keras.layers.LSTM(CELLS, return_sequences=True)(keras.layers.Embedding(1000, 32)(inp))
    model_path = os.path.join(a.dir, "model.keras")
    keras.Model(inp, x).save(model_path)
    rng = np.random.default_rng(0)
    commit_rows = 20 * BATCH * T
    rows = ["| documents | output | rows redone after SIGKILL (max of 5) | commit interval (rows) "
            "| resume → first new commit |", "|---|---|---|---|---|"]
    for n in (a.docs, a.docs * a.scale):
        data = os.path.join(a.dir, f"in{n}")
        os.makedirs(data)
        docs = [rng.integers(1, 1000, rng.integers(1, T + 1)).tolist() for _ in range(n)]
        for k in range(4):
            pq.write_table(pa.table({"tokens": docs[k::4]}), os.path.join(data, f"s{k}.parquet"),
                           row_group_size=256)
        out = os.path.join(a.dir, f"out{n}")
        cmd = [sys.executable, "-m", "stream_export", "export", "--model", model_path, "--input", data,
               "--out", out, "--quiet", "--batch-size", str(BATCH), "--commit-every", str(commit_rows)]
        redone = []
        for i in range(5):  # kill at various moments, measure rows written past the last commit
            proc = subprocess.Popen(cmd if committed(out) is None else
                                    [sys.executable, "-m", "stream_export", "resume", out, "--quiet"])
            target = (committed(out) or 0) + commit_rows + (i * commit_rows) // 5
            wait(lambda: (committed(out) or 0) >= target or proc.poll() is not None)
            time.sleep(0.2 + 0.1 * i)
            if proc.poll() is not None:
                sys.exit(f"the export finished before kill {i + 1}; use more --docs")
            proc.kill()
            proc.wait()
            with h5py.File(os.path.join(out, "states.hdf5"), "r") as f:
                redone.append(f["states1"].shape[0] - committed(out))
        proc = subprocess.Popen([sys.executable, "-m", "stream_export", "resume", out, "--quiet"])
        wait(lambda: committed(out) >= 0.9 * n * T or proc.poll() is not None)
        proc.kill()
        proc.wait()
        before = committed(out)
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        # first new commit after one batch: resume with the commit interval of a single batch
        journal = json.load(open(os.path.join(out, "export.json")))
        journal["config"]["commit_rows"] = BATCH * T
        with open(os.path.join(out, "export.json"), "w") as f:
            json.dump(journal, f)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "stream_export", "resume", out, "--quiet"])
        wait(lambda: committed(out) > before)
        elapsed = time.monotonic() - t0
        proc.wait()
        rows.append(f"| {n:,} | {size / 2**20:,.0f} MiB at {100 * before / (n * T):.0f}% done | {max(redone):,} "
                    f"| {commit_rows:,} | {elapsed:.2f} s |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
