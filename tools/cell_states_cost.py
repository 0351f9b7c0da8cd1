"""Measure what --cell-states costs: the same export with and without it, alternated, best of N each.

    .venv/bin/python tools/cell_states_cost.py [--docs 2048] [--len 250] [--units 256] [--runs 3]

Builds an Embedding(5000, 128) -> LSTM(units) model with random weights and a Parquet shard of random
documents of exactly --len tokens in a temporary folder, exports it through the real pipeline (tf.data,
state model, HDF5), and prints tokens/s for both and the ratio. Hidden states alone run the LSTM layer as
Keras runs it (cuDNN on a GPU); cell states run its cell in a generic keras.layers.RNN loop.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's package


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=2048)
    p.add_argument("--len", type=int, default=250)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()

    import keras
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stream_export.config import ExportConfig
    from stream_export.pipeline import export

    with tempfile.TemporaryDirectory() as tmp:
        keras.utils.set_random_seed(0)
        inp = keras.Input(shape=(a.len,), dtype="int32")
        x = keras.layers.Embedding(5000, 128)(inp)
        x = keras.layers.LSTM(a.units, return_sequences=True)(x)
        keras.Model(inp, x).save(os.path.join(tmp, "m.keras"))
        docs = np.random.default_rng(0).integers(1, 5000, size=(a.docs, a.len)).tolist()
        pq.write_table(pa.table({"tokens": pa.array(docs, type=pa.list_(pa.int32()))}),
                       os.path.join(tmp, "c.parquet"))
        best = {False: float("inf"), True: float("inf")}
        for run in range(a.runs):
            for cells in (False, True) if run % 2 else (True, False):  # alternate, so drift hits both
                config = ExportConfig(model=os.path.join(tmp, "m.keras"), inputs=(os.path.join(tmp, "c.parquet"),),
                                      out=os.path.join(tmp, "out"), cell_states=cells)
                t0 = time.perf_counter()
                export(config, overwrite=True, quiet=True, log=lambda msg: None)
                best[cells] = min(best[cells], time.perf_counter() - t0)
        tokens = a.docs * a.len
        for cells in (False, True):
            print(f"{'with' if cells else 'without'} --cell-states: {tokens / best[cells]:,.0f} tokens/s "
                  f"(best of {a.runs}: {best[cells]:.2f} s for {tokens:,} tokens)")
        print(f"--cell-states takes {best[True] / best[False]:.2f}x the time")


if __name__ == "__main__":
    main()
