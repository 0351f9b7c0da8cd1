"""Measure what the reader's per-document validation costs: documents/s and tokens/s of iter_batches over a
synthetic corpus, clean or with bad documents, with and without a vocabulary, stop or skip.

    .venv/bin/python tools/reader_throughput.py [--docs 100000] [--tokens 250] [--repeat 3]

Prints the best of --repeat runs per setting. Compare with the model's ~100k tokens/s (LSTM 256, 2 cores,
/work/shared/FACTS.md): the reader must stay far ahead of it."""

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stream_export.reader import Columns, SkipLog, iter_batches, open_shards


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--tokens", type=int, default=250)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 2 * a.tokens, a.docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(1, 20_000, int(lengths.sum())).astype(np.int32)
    clean = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    dirty_values = values.copy()
    dirty_values[rng.choice(len(values), a.docs // 100, replace=False)] = 25_000  # ~1% of documents bad
    dirty = pa.ListArray.from_arrays(pa.array(offsets), pa.array(dirty_values))
    known = np.ones(20_000, dtype=bool)
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, column in (("clean", clean), ("dirty", dirty)):
            paths[name] = os.path.join(d, f"{name}.parquet")
            pq.write_table(pa.table({"tokens": column}), paths[name], row_group_size=10_000)
        settings = [("clean", None, False), ("clean", ("v", known), False), ("dirty", None, True),
                    ("dirty", ("v", known), True)]
        for name, vocab, skip in settings:
            shards = open_shards([paths[name]], Columns())
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                n = sum(len(b.tokens) for b in iter_batches(shards, Columns(), a.tokens, 128, max_token=24_999 if not
                                                            skip else 19_999, vocab=vocab,
                                                            skipped=SkipLog() if skip else None))
                best = min(best, time.perf_counter() - t0)
            print(f"{name:5} vocab={'yes' if vocab else 'no ':3} {'skip' if skip else 'stop'}: {n:,} documents "
                  f"kept, {a.docs / best:,.0f} documents/s, {lengths.sum() / best / 1e6:,.1f} M tokens/s read")


if __name__ == "__main__":
    main()
