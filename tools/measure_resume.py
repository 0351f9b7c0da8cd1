"""Measure what a kill costs: the work lost at SIGKILL (computed since the last commit, so redone on resume;
bounded by the commit interval) and the time from `stream-export resume` to its first new commit when most
of a large export is already done, at two output sizes. Prints a markdown table for the README.

Lost work is timed, not counted: rows past the last flush never reach the file's metadata, so after a kill
the datasets end at most one commit past the journal. The tool watches the journal, and at each kill takes
the seconds since the last commit times the rows per second between the last two commits. Dirty pages a
killed run left behind are written out (`sync`) before timing a resume, so the figure is the resume's own cost.

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


def watch(out, proc, target, linger):
    """Poll the journal until target rows are committed, and linger seconds more; return the (time, rows)
    of every commit seen."""
    commits, stop = [], [None]

    def done():
        rows, now = committed(out), time.monotonic()
        if rows is not None and (not commits or commits[-1][1] != rows):
            commits.append((now, rows))
        if stop[0] is None and (rows or 0) >= target:
            stop[0] = now + linger
        return (stop[0] is not None and now >= stop[0]) or proc.poll() is not None

    wait(done)
    return commits


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
    rows = ["| documents | output | work lost at SIGKILL, max of 5 (redone on resume) | commit interval "
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
        lost = []  # (seconds, rows) computed after the last commit, at each kill
        for i in range(5):  # kill at various moments between commits
            proc = subprocess.Popen(cmd if committed(out) is None else
                                    [sys.executable, "-m", "stream_export", "resume", out, "--quiet"])
            commits = watch(out, proc, (committed(out) or 0) + 2 * commit_rows, linger=0.3 * i)
            if proc.poll() is not None:
                sys.exit(f"the export finished before kill {i + 1}; use more --docs")
            proc.kill()
            killed = time.monotonic()
            proc.wait()
            (t1, r1), (t2, r2) = commits[-2:]
            lost.append((killed - t2, (killed - t2) * (r2 - r1) / (t2 - t1)))
            with h5py.File(os.path.join(out, "states.hdf5"), "r") as f:
                assert f["states1"].shape[0] >= committed(out)  # every committed row is there
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
        os.sync()
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "stream_export", "resume", out, "--quiet"])
        wait(lambda: committed(out) > before)
        elapsed = time.monotonic() - t0
        proc.wait()
        seconds, redo = max(lost)
        rows.append(f"| {n:,} | {size / 2**20:,.0f} MiB at {100 * before / (n * T):.0f}% done | {seconds:.2f} s ≈ "
                    f"{redo:,.0f} rows | {commit_rows:,} rows | {elapsed:.2f} s |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
