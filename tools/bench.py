"""Benchmark stream_export against the bare forward pass, the classic recipe and keract, side by side.

    .venv/bin/python tools/bench.py [--docs 512] [--max-len 500] [--repeat 2] [--markdown FILE] [--json FILE]
    .venv/bin/python tools/bench.py --tiny --no-keract     # about a minute: the smoke test's size
    .venv/bin/python tools/bench.py --from-json FILE      # the table of an earlier run's --json again

One run on one machine, on generated Parquet input (random token ids, 100-600 tokens per document, padded
or truncated to --max-len) and two models with random weights: the classic one (Embedding(20000, 128) ->
LSTM(256) -> TimeDistributed Dense softmax, batch 128) and a small one (LSTM 16) where I/O dominates. The
corpus at scale s is s x --docs documents (shards of --docs documents each).

Every measurement runs in a fresh child process; its peak RSS is the child's own ru_maxrss from os.wait4
(as the OS counts it). Timed measurements are repeated --repeat times, interleaved (forward, export,
forward, export, ...) and the best time is kept, because the machine may be shared; ratios come from the
same run. Rows:
  1. bare forward: the compiled state model over in-memory batches (no I/O): the ceiling;
  2. stream_export end to end (the real CLI in a child) on the same model, batch and data, at --ratio-scale;
     its loop throughput (the streaming loop, from the first batch read to the last commit) and the whole
     command's own time (model loading included), each as a ratio to (1);
  3. the classic recipe: model.predict on the whole padded array, reshape, h5py create_dataset;
  4. keract.get_activations on the same data, in a separate venv (.cache/bench-keract-venv, made once:
     keract 4.5.2 needs tf-keras and TF_USE_LEGACY_KERAS=1, which must not enter the project's venv);
  5. stream_export's peak RSS at 1x, 4x and 16x;
  6. writer only: states from memory through ProjectWriter, against a plain sequential write of the same
     bytes in the same pieces;
  7. --dtype float16, --compression gzip/lzf, --chunk-rows, --commit-every, on the small model.
No timing is asserted anywhere: this prints figures, docs/BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's package, in the children too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = {  # name: (vocab, embedding, units)
    "classic": (20000, 128, 256),
    "small": (20000, 128, 16),
}
TINY_MODELS = {"classic": (200, 8, 8), "small": (200, 8, 4)}
KERACT_VENV = os.path.join(ROOT, ".cache", "bench-keract-venv")
KERACT_PINS = ["keract==4.5.2", "tf-keras=={tf}"]
OPTIONS = [  # row 7: extra export options, on the small model
    ("default (float32, no compression, ~1 MiB chunks, commit 1M rows / 60 s)", []),
    ("--dtype float16", ["--dtype", "float16"]),
    ("--compression lzf", ["--compression", "lzf"]),
    ("--compression gzip:1", ["--compression", "gzip:1"]),
    ("--compression gzip (level 4)", ["--compression", "gzip"]),
    ("--dtype float16 --compression gzip:1", ["--dtype", "float16", "--compression", "gzip:1"]),
    ("--chunk-rows 1024 (64 KiB chunks)", ["--chunk-rows", "1024"]),
    ("--chunk-rows 65536 (4 MiB chunks)", ["--chunk-rows", "65536"]),
    ("--commit-every 100000", ["--commit-every", "100000"]),
    ("--commit-every 2s", ["--commit-every", "2s"]),
]


# ---------------------------------------------------------------------------------------------- children

def child_setup(spec):
    """Write the models (.keras, plus their weights as .npz for keract) and the Parquet shards."""
    import keras
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    for name, (vocab, emb, units) in spec["models"].items():
        keras.utils.set_random_seed(1)
        inp = keras.Input(shape=(spec["max_len"],), dtype="int32")
        x = keras.layers.Embedding(vocab, emb, name="embedding")(inp)
        x = keras.layers.LSTM(units, return_sequences=True, name="lstm")(x)
        x = keras.layers.TimeDistributed(keras.layers.Dense(2, activation="softmax"), name="head")(x)
        model = keras.Model(inp, x)
        model.save(os.path.join(spec["dir"], f"{name}.keras"))
        np.savez(os.path.join(spec["dir"], f"{name}.npz"), *model.get_weights())
    vocab = min(v for v, _, _ in spec["models"].values())
    lo, hi = spec["doc_len"]
    for i in range(spec["shards"]):
        lengths = rng.integers(lo, hi + 1, size=spec["docs"])
        values = rng.integers(1, vocab, size=int(lengths.sum()), dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        labels = pa.array(rng.integers(0, 2, size=spec["docs"]).astype(np.int32))
        pq.write_table(pa.table({"tokens": tokens, "label": labels}),
                       os.path.join(spec["dir"], f"shard{i:03d}.parquet"), row_group_size=256)
    return {}


def _device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    return f"CPU ({os.cpu_count()} cores)"


def child_forward(spec):
    """The ceiling: the same compiled state model stream_export builds, over batches already in memory."""
    import tensorflow as tf

    from stream_export import model as modelmod
    from stream_export.reader import Columns, iter_batches, open_shards

    model = modelmod.load_model(spec["model"])
    built = modelmod.build_state_model(model, None, timesteps=spec["max_len"])
    state_model = built.model
    shards = open_shards(spec["inputs"], Columns())
    batches = [tf.constant(b.tokens) for b in iter_batches(shards, Columns(), spec["max_len"], spec["batch"])]
    run = tf.function(lambda x: state_model(x, training=False))
    run(batches[0]).numpy()  # trace and warm up once
    t0, cpu = time.perf_counter(), time.process_time()
    for b in batches:
        run(b).numpy()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": sum(int(b.shape[0]) * int(b.shape[1]) for b in batches),
            "device": _device()}


def _read_padded(spec):
    import numpy as np
    import pyarrow.parquet as pq
    from keras.utils import pad_sequences

    docs = []
    for path in spec["inputs"]:
        docs += pq.read_table(path, columns=["tokens"]).column("tokens").to_pylist()
    return np.asarray(pad_sequences(docs, maxlen=spec["max_len"]), dtype=np.int32)


def _write_rows(out, states, padded):
    import h5py

    os.makedirs(out, exist_ok=True)
    with h5py.File(os.path.join(out, "states.hdf5"), "w") as f:
        f.create_dataset("states1", data=states.reshape(-1, states.shape[-1]))
    with h5py.File(os.path.join(out, "train.hdf5"), "w") as f:
        f.create_dataset("words", data=padded.reshape(-1))


def child_recipe(spec):
    """What users run without stream_export: predict over the whole array, reshape, one h5py write."""
    import keras

    t0 = time.perf_counter()
    model = keras.models.load_model(spec["model"], compile=False)
    state_model = keras.Model(model.inputs, model.get_layer("lstm").output)
    padded = _read_padded(spec)
    states = state_model.predict(padded, batch_size=spec["batch"], verbose=0)
    _write_rows(spec["out"], states, padded)
    return {"seconds": time.perf_counter() - t0, "rows": int(padded.size), "device": _device()}


def child_keract(spec):
    """keract.get_activations on the same model (rebuilt under tf-keras with the same weights)."""
    import numpy as np
    import tf_keras as k2

    import keract

    t0 = time.perf_counter()
    vocab, emb, units = spec["shape"]
    inp = k2.Input(shape=(spec["max_len"],), dtype="int32")
    x = k2.layers.Embedding(vocab, emb, name="embedding")(inp)
    x = k2.layers.LSTM(units, return_sequences=True, name="lstm")(x)
    x = k2.layers.TimeDistributed(k2.layers.Dense(2, activation="softmax"), name="head")(x)
    model = k2.Model(inp, x)
    weights = np.load(spec["weights"])
    model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    padded = _read_padded(spec)
    states = keract.get_activations(model, padded, layer_names="lstm")["lstm"]
    _write_rows(spec["out"], states, padded)
    return {"seconds": time.perf_counter() - t0, "rows": int(padded.size), "device": _device()}


def child_writer(spec):
    """Writer only: ProjectWriter fed from memory, then the same bytes written plainly, in the same pieces."""
    import numpy as np

    from stream_export.model import Output
    from stream_export.reader import Batch
    from stream_export.writer import ProjectWriter

    n, t, cells, count = spec["batch"], spec["max_len"], spec["cells"], spec["batches"]
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20000, size=(n, t), dtype=np.int32)
    states = np.tanh(rng.normal(size=(n, t, cells))).astype(np.float32)
    labels = rng.integers(0, 2, size=n).astype(np.int32)
    lengths = np.full(n, t, dtype=np.int64)
    out = spec["out"]
    os.makedirs(out, exist_ok=True)
    outputs = [Output("states", "states1", cells, "float32", "state", 1, "lstm")]
    writer = ProjectWriter(out, outputs, t, labels=True, doc_ids=False, create=True, batch_rows=n * t)  # as export
    t0 = time.perf_counter()
    for i in range(count):
        writer.append(Batch(i * n, tokens, lengths, labels, None), [states])
    writer.flush()
    writer.close()
    hdf5 = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(out, f)) for f in ("states.hdf5", "train.hdf5", "meta.hdf5"))
    shutil.rmtree(out)
    # the same payload a batch adds (states, words, label and doc per row, documents/length and start)
    pieces = [states.tobytes(), tokens.tobytes(), np.repeat(labels, t).tobytes(),
              np.repeat(np.arange(n, dtype=np.int64), t).tobytes(), lengths.tobytes(), lengths.tobytes()]
    t0 = time.perf_counter()
    with open(os.path.join(spec["dir"], "plain.bin"), "wb") as f:
        for i in range(count):
            for piece in pieces:
                f.write(piece)
    plain = time.perf_counter() - t0
    plain_size = os.path.getsize(os.path.join(spec["dir"], "plain.bin"))
    os.remove(os.path.join(spec["dir"], "plain.bin"))
    return {"seconds": hdf5, "bytes": size, "plain_seconds": plain, "plain_bytes": plain_size,
            "rows": n * t * count}


CHILDREN = {"setup": child_setup, "forward": child_forward, "recipe": child_recipe, "keract": child_keract,
            "writer": child_writer}


# ---------------------------------------------------------------------------------------------- parent

def run_child(argv, env=None, result_file=None):
    """Run argv as a child process; return (its JSON result or None, peak RSS in MiB, wall seconds, error)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        rss = usage.ru_maxrss / 1024  # KiB on Linux
        if proc.returncode != 0:
            err.seek(0)
            last = (err.read().strip().splitlines() or [""])[-1]
            return None, rss, wall, f"failed (exit {proc.returncode}): {last[:200]}"
    if result_file is not None:
        with open(result_file, encoding="utf-8") as f:
            return json.load(f), rss, wall, None
    return json.loads(out.strip().splitlines()[-1]), rss, wall, None


def child(kind, spec, python=sys.executable, env=None):
    return run_child([python, os.path.abspath(__file__), "--child", kind, json.dumps(spec)], env=env)


class Bench:
    def __init__(self, a):
        self.a = a
        self.dir = a.work or tempfile.mkdtemp(prefix="bench-", dir=os.path.join(ROOT, ".cache")
                                              if os.path.isdir(os.path.join(ROOT, ".cache")) else None)
        os.makedirs(self.dir, exist_ok=True)
        self.models = TINY_MODELS if a.tiny else MODELS
        self.results = {"rows": [], "machine": machine(), "command": " ".join(sys.argv)}
        self.log = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    def inputs(self, scale):
        return [os.path.join(self.dir, f"shard{i:03d}.parquet") for i in range(scale)]

    def setup(self):
        spec = {"dir": self.dir, "models": self.models, "max_len": self.a.max_len, "docs": self.a.docs,
                "shards": max(self.a.scales), "doc_len": [max(1, self.a.max_len // 5), self.a.max_len * 6 // 5]}
        _, _, wall, error = child("setup", spec)
        if error:
            raise SystemExit(f"bench: setup failed: {error}")
        self.log(f"setup: models and {max(self.a.scales)} shards of {self.a.docs} documents in {wall:.0f} s")

    def export(self, name, scale, extra=()):
        out = os.path.join(self.dir, f"out-{name}")
        summary = os.path.join(self.dir, "summary.json")
        argv = [sys.executable, "-m", "stream_export", "export", "--quiet", "--overwrite", "--model",
                os.path.join(self.dir, f"{name}.keras"), "--label-column", "label", "--out", out,
                "--batch-size", str(self.a.batch), "--summary-json", summary, *extra]
        for path in self.inputs(scale):
            argv += ["--input", path]
        if os.path.exists(summary):
            os.remove(summary)
        result, rss, wall, error = run_child(argv, result_file=summary)
        shutil.rmtree(out, ignore_errors=True)
        if error:
            return {"error": error, "rss": rss}
        return {"seconds": result["seconds"], "loop_seconds": result["loop_seconds"],
                "loop_cpu_seconds": result["loop_cpu_seconds"], "rows": result["rows"],
                "bytes": result["bytes"], "rss": rss, "wall": wall}

    def spec(self, name, scale, **more):
        return {"model": os.path.join(self.dir, f"{name}.keras"), "inputs": self.inputs(scale),
                "max_len": self.a.max_len, "batch": self.a.batch, "out": os.path.join(self.dir, f"out-{name}"),
                **more}

    def timed(self, kind, name, scale, **more):
        result, rss, wall, error = child(kind, self.spec(name, scale, **more))
        shutil.rmtree(os.path.join(self.dir, f"out-{name}"), ignore_errors=True)
        return {"error": error, "rss": rss} if error else dict(result, rss=rss, wall=wall)

    def best(self, runs):
        good = [r for r in runs if "error" not in r]
        if not good:
            return runs[-1]
        best = min(good, key=lambda r: r["seconds"])
        return dict(best, rss=max(r["rss"] for r in good), repeats=len(good))

    def run(self):
        a = self.a
        self.setup()
        r = self.results
        for name in self.models:
            self.log(f"{name}: forward and export at {a.ratio_scale}x, interleaved, {a.repeat} times")
            forward, export = [], []
            for i in range(a.repeat):
                forward.append(self.timed("forward", name, a.ratio_scale))
                export.append(self.export(name, a.ratio_scale))
            r[f"{name}/forward"], r[f"{name}/export"] = self.best(forward), self.best(export)
            self.log(f"{name}: classic recipe at {', '.join(map(str, a.recipe_scales))}x")
            for s in a.recipe_scales:
                r[f"{name}/recipe{s}"] = self.best([self.timed("recipe", name, s) for _ in range(a.repeat)])
            r[f"{name}/keract"] = self.keract(name)
            for s in a.scales:
                self.log(f"{name}: export at {s}x for its peak RSS")
                r[f"{name}/scale{s}"] = (r[f"{name}/export"] if s == a.ratio_scale
                                         else self.best([self.export(name, s)]))
            self.log(f"{name}: writer only, and a plain write")
            cells = self.models[name][2]
            r[f"{name}/writer"] = self.best([self.timed("writer", name, 1, cells=cells, dir=self.dir,
                                                        batches=a.writer_batches) for _ in range(a.repeat)])
        self.log(f"options on the small model at {a.options_scale}x")
        runs = {label: [] for label, _ in a.options}
        for i in range(a.repeat):
            for label, extra in a.options:
                runs[label].append(self.export("small", a.options_scale, extra))
        for label, _ in a.options:
            r[f"option/{label}"] = self.best(runs[label])
        return r

    def keract(self, name):
        if self.a.no_keract:
            return {"error": "not measured: --no-keract"}
        python, reason = keract_python(self.log)
        if python is None:
            return {"error": f"not measured: {reason}"}
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=ROOT)
        scale = self.a.recipe_scales[0]
        runs = []
        for _ in range(self.a.repeat):
            result, rss, wall, error = child("keract", self.spec(
                name, scale, shape=self.models[name], weights=os.path.join(self.dir, f"{name}.npz")),
                python=python, env=env)
            shutil.rmtree(os.path.join(self.dir, f"out-{name}"), ignore_errors=True)
            runs.append({"error": error, "rss": rss} if error else dict(result, rss=rss, wall=wall, scale=scale))
        return self.best(runs)


def keract_python(log):
    """The python of a venv that sees the project venv's packages (TensorFlow) and has tf-keras and keract
    installed on top, made once in .cache; (None, reason) when that cannot be done."""
    python = os.path.join(KERACT_VENV, "bin", "python")
    marker = os.path.join(KERACT_VENV, ".ready")
    if os.path.exists(marker):
        return python, None
    try:
        import importlib.metadata as md

        tf_version = md.version("tensorflow") if _has("tensorflow") else md.version("tensorflow-cpu")
        log(f"making {KERACT_VENV} (tf-keras {tf_version}, keract, --no-deps) once")
        subprocess.run([sys.executable, "-m", "venv", KERACT_VENV], check=True, capture_output=True)
        site = [p for p in sys.path if p.endswith("site-packages")]
        own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
        with open(os.path.join(own, "project-venv.pth"), "w") as f:  # TensorFlow etc. from the project venv
            f.write("\n".join(site) + "\n")
        pins = [p.format(tf=tf_version) for p in KERACT_PINS]
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", *pins], check=True,
                       capture_output=True, text=True)
        open(marker, "w").close()
        return python, None
    except (subprocess.CalledProcessError, OSError, ImportError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        return None, f"cannot make the keract venv ({str(detail).strip().splitlines()[-1:]})"


def _has(dist):
    import importlib.metadata as md

    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def machine():
    import importlib.metadata as md

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = float("nan")
    versions = {}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "h5py", "numpy", "pyarrow"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(ram, 1), "python": platform.python_version(),
            "versions": versions}


# ---------------------------------------------------------------------------------------------- report

def fmt(x, spec=",.0f"):
    return "n/a" if x is None else format(x, spec)


def table(r, a) -> str:
    m = r["machine"]
    device = next((v.get("device") for k, v in r.items() if isinstance(v, dict) and v.get("device")), "?")
    lines = [f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, device {device}; Python "
             f"{m['python']}, " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
             f"Corpus 1x = {a.docs} documents x {a.max_len} timesteps; batch {a.batch}; best of {a.repeat}, "
             "interleaved; peak RSS = the child process's ru_maxrss.", ""]
    for name, (vocab, emb, units) in (TINY_MODELS if a.tiny else MODELS).items():
        fw = r[f"{name}/forward"]
        ceiling = fw["rows"] / fw["seconds"] if "error" not in fw else None
        lines += [f"### {name}: Embedding({vocab}, {emb}) -> LSTM({units}), {units * 4} bytes of states per row",
                  "", "| # | measurement | corpus | tokens/s | × bare forward | seconds | peak RSS MiB | notes |",
                  "|---|---|---|---|---|---|---|---|"]
        cpu_ceiling = fw["rows"] / fw["cpu_seconds"] if "error" not in fw else None

        def row(num, what, key, scale, seconds_key="seconds", note=""):
            v = r[key]
            if "error" in v:
                lines.append(f"| {num} | {what} | {scale} | – | – | – | {fmt(v.get('rss'))} | {v['error']} |")
                return
            rate = v["rows"] / v[seconds_key]
            ratio = f"{rate / ceiling:.2f}" if ceiling else "n/a"
            if seconds_key == "loop_seconds" and cpu_ceiling:  # CPU time: less disturbed by other load
                ratio += f" (CPU time: {v['rows'] / v['loop_cpu_seconds'] / cpu_ceiling:.2f})"
            elif key.endswith("/forward"):
                ratio += f" ({v['cpu_seconds']:.1f} CPU s)"
            lines.append(f"| {num} | {what} | {scale} | {rate:,.0f} | {ratio} | {v[seconds_key]:.2f} | "
                         f"{v['rss']:,.0f} | {note} |")

        row(1, "bare forward (compiled state model, in-memory batches)", f"{name}/forward", f"{a.ratio_scale}x",
            note=fw.get("device", ""))
        row(2, "stream_export, streaming loop", f"{name}/export", f"{a.ratio_scale}x", "loop_seconds",
            "first batch read to last commit")
        row(2, "stream_export, the whole command", f"{name}/export", f"{a.ratio_scale}x", "wall",
            "process start to exit: Python, TensorFlow import, model loading")
        for s in a.recipe_scales:
            row(3, "classic recipe (predict, reshape, create_dataset)", f"{name}/recipe{s}", f"{s}x", "wall",
                "process start to exit")
        k = r[f"{name}/keract"]
        row(4, "keract.get_activations (+ reshape, create_dataset)", f"{name}/keract",
            f"{k.get('scale', a.recipe_scales[0])}x", "wall", "process start to exit")
        base = r[f"{name}/scale{a.scales[0]}"]
        for s in a.scales:
            v = r[f"{name}/scale{s}"]
            rel = f"RSS {v['rss'] / base['rss']:.3f}× the {a.scales[0]}x run" if "error" not in v and "error" not in base else ""
            row(5, "stream_export, whole export", f"{name}/scale{s}", f"{s}x", "wall", note=rel)
        lo, hi = r[f"{name}/scale{a.ratio_scale}"], r[f"{name}/scale{a.scales[-1]}"]
        if (a.scales[-1] > a.ratio_scale and "error" not in lo and "error" not in hi and ceiling
                and hi["loop_seconds"] - lo["loop_seconds"] > 1):  # else too short to tell
            rate = (hi["rows"] - lo["rows"]) / max(hi["loop_seconds"] - lo["loop_seconds"], 1e-9)
            cpu = (hi["rows"] - lo["rows"]) / max(hi["loop_cpu_seconds"] - lo["loop_cpu_seconds"], 1e-9)
            lines.append(f"| 5 | stream_export, marginal rate (streaming loop, {a.scales[-1]}x minus "
                         f"{a.ratio_scale}x) | | {rate:,.0f} | {rate / ceiling:.2f} (CPU time: {cpu / cpu_ceiling:.2f}) "
                         f"| | | the steady state: fixed costs (tracing the model, the first batch) cancel |")
        w = r[f"{name}/writer"]
        if "error" in w:
            lines.append(f"| 6 | writer only | | – | – | – | – | {w['error']} |")
        else:
            hdf5, plain = w["bytes"] / w["seconds"] / 2**20, w["plain_bytes"] / w["plain_seconds"] / 2**20
            lines.append(f"| 6 | writer only (ProjectWriter from memory) | {w['rows']:,} rows | "
                         f"{w['rows'] / w['seconds']:,.0f} | | {w['seconds']:.2f} | {w['rss']:,.0f} | "
                         f"{hdf5:,.0f} MiB/s = {hdf5 / plain:.2f}× a plain sequential write ({plain:,.0f} MiB/s, "
                         f"{w['plain_seconds']:.2f} s) |")
        lines.append("")
    lines += [f"### 7. options, small model at {a.options_scale}x (whole export)", "",
              "| option | tokens/s (loop) | × default | seconds (loop) | output MiB | peak RSS MiB |",
              "|---|---|---|---|---|---|"]
    default = r[f"option/{OPTIONS[0][0]}"]
    for label, _ in a.options:
        v = r[f"option/{label}"]
        if "error" in v:
            lines.append(f"| `{label}` | – | – | – | – | {v['error']} |")
            continue
        rate = v["rows"] / v["loop_seconds"]
        rel = f"{default['loop_seconds'] / v['loop_seconds']:.2f}" if "error" not in default else "n/a"
        lines.append(f"| `{label}` | {rate:,.0f} | {rel} | {v['loop_seconds']:.2f} | {v['bytes'] / 2**20:,.1f} | "
                     f"{v['rss']:,.0f} |")
    return "\n".join(lines) + "\n"


def targets(r, a) -> str:
    out = []
    if "error" not in r["classic/forward"] and "error" not in r["classic/export"]:
        fw = r["classic/forward"]["rows"] / r["classic/forward"]["seconds"]
        ex = r["classic/export"]
        cpu = r["classic/forward"]["cpu_seconds"] / ex["loop_cpu_seconds"]
        out.append(f"- classic, end to end ≥ 0.95 × bare forward: streaming loop "
                   f"{ex['rows'] / ex['loop_seconds'] / fw:.2f} (by CPU time {cpu:.2f}), the whole command "
                   f"{ex['rows'] / ex['wall'] / fw:.2f}")
    for name in (TINY_MODELS if a.tiny else MODELS):
        lo, hi = r[f"{name}/scale{a.scales[0]}"], r[f"{name}/scale{a.scales[-1]}"]
        if "error" not in lo and "error" not in hi:
            out.append(f"- {name}, peak RSS at {a.scales[-1]}x ≤ 1.05 × at {a.scales[0]}x: {hi['rss'] / lo['rss']:.3f}")
    w = r["small/writer"]
    if "error" not in w:
        out.append(f"- small, writer ≥ 0.8 × plain sequential write: "
                   f"{(w['bytes'] / w['seconds']) / (w['plain_bytes'] / w['plain_seconds']):.2f}")
    for name in (TINY_MODELS if a.tiny else MODELS):
        ex = r[f"{name}/scale{a.recipe_scales[-1]}"] if f"{name}/scale{a.recipe_scales[-1]}" in r else None
        for key, what in ((f"recipe{a.recipe_scales[-1]}", "classic recipe"), ("keract", "keract")):
            v = r[f"{name}/{key}"]
            if "error" in v or ex is None or "error" in ex:
                continue
            scale = v.get("scale", a.recipe_scales[-1])
            ex = r.get(f"{name}/scale{scale}", ex)
            out.append(f"- {name}, against {what} at {scale}x: peak RSS {ex['rss'] / v['rss']:.2f}×, "
                       f"time {ex['wall'] / v['wall']:.2f}× (whole processes, start to exit)")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    p.add_argument("--docs", type=int, default=512, help="documents at 1x (default: 512)")
    p.add_argument("--max-len", type=int, default=500, help="timesteps per document (default: 500)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--scales", default="1,4,16", help="corpus sizes for the peak RSS rows (default: 1,4,16)")
    p.add_argument("--ratio-scale", type=int, default=4, help="corpus size of rows 1-2 (default: 4)")
    p.add_argument("--recipe-scales", default="1,4", help="corpus sizes of the classic recipe (default: 1,4); "
                                                         "keract runs at the first")
    p.add_argument("--options-scale", type=int, default=4, help="corpus size of the option rows (default: 4)")
    p.add_argument("--writer-batches", type=int, default=32, help="batches of the writer-only row (default: 32)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each timed measurement, best kept (default: 2)")
    p.add_argument("--tiny", action="store_true", help="smoke-test size: tiny models, 8 documents x 20, 1 run")
    p.add_argument("--no-keract", action="store_true", help="skip the keract row (it needs a venv made once)")
    p.add_argument("--work", help="folder for the generated input and outputs (default: a new one, removed)")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--from-json", metavar="FILE", help="print the table of an earlier run's --json (same size flags)")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(CHILDREN[a.child[0]](json.loads(a.child[1]))))
        return 0
    a.scales = [int(s) for s in a.scales.split(",")]
    a.recipe_scales = [int(s) for s in a.recipe_scales.split(",")]
    a.options = OPTIONS
    if a.tiny:  # every row once, as fast as it goes: a smoke test of the tool, not a measurement
        a.docs, a.max_len, a.batch, a.repeat, a.writer_batches = 8, 20, 4, 1, 4
        a.scales, a.ratio_scale, a.recipe_scales, a.options_scale = [1, 2], 1, [1], 1
        a.options = OPTIONS[:1] + OPTIONS[5:6]
    a.scales = sorted(set(a.scales) | {a.ratio_scale, a.options_scale, *a.recipe_scales})
    if a.from_json:
        with open(a.from_json, encoding="utf-8") as f:
            results = json.load(f)
    else:
        bench = Bench(a)
        try:
            results = bench.run()
        finally:
            if not a.work:
                shutil.rmtree(bench.dir, ignore_errors=True)
    text = table(results, a) + "\nTargets (ratios from this run):\n\n" + targets(results, a)
    print(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
