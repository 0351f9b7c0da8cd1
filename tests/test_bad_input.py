"""Bad input never corrupts an export: each case ends in a clear error naming the shard/row/column (or file,
layer), the documented exit code, and a folder holding exactly the last commit (or nothing, when fresh);
with --on-error skip the bad documents are left out, counted and listed in skipped.tsv."""

import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from keras.utils import pad_sequences

from conftest import VOCAB, random_docs, write_shard
from stream_export.cli import main
from stream_export.vocab import read_dict_like_lstmvis, unescape

T = 6  # the classic model's fixed input length


def run(*args):
    return main(["export", "--quiet", *map(str, args)])


def datasets(out):
    """Every dataset of the project's HDF5 files, and its text files (the journal's commit, not its times)."""
    found = {}
    for name in ("states.hdf5", "train.hdf5", "meta.hdf5"):
        if os.path.exists(os.path.join(out, name)):
            with h5py.File(os.path.join(out, name), "r") as f:
                f.visititems(lambda p, o: found.__setitem__(f"{name}/{p}", o[()])
                             if isinstance(o, h5py.Dataset) else None)
    for name in ("words.dict", "labels.dict", "lstm.yml", "skipped.tsv"):
        if os.path.exists(os.path.join(out, name)):
            found[name] = open(os.path.join(out, name), "rb").read()
    if os.path.exists(os.path.join(out, "export.json")):
        found["committed"] = json.load(open(os.path.join(out, "export.json")))["committed"]
    return found


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], dict):
            assert a[key] == b[key], key
        else:
            assert np.array_equal(a[key], b[key]), key


def assert_prefix(out, clean, docs):
    """The folder holds exactly the first `docs` documents of the clean export, bit for bit, and nothing
    beyond them: every row dataset docs * T rows, every documents/* dataset docs entries."""
    got, want = datasets(out), datasets(clean)
    assert not os.path.exists(os.path.join(out, "lstm.yml"))
    for key, value in want.items():
        if not key.endswith("hdf5") and ".hdf5/" not in key:
            continue
        n = docs if "/documents/" in key else docs * T
        assert got[key].shape[0] == n, key
        assert np.array_equal(got[key], value[:n]), key
        assert got[key].dtype == value.dtype, key


def error(capsys):
    return capsys.readouterr().err


def common(model, inputs, out, *extra):
    return ["--model", model, "--input", inputs, "--out", out, "--batch-size", 2, "--commit-every", 1,
            "--label-column", "label", "--id-column", "id", *extra]


@pytest.fixture(scope="module")
def good_source(models, tmp_path_factory):
    """Shard a.parquet of 8 good labelled documents, and the clean export of just them (made once)."""
    rng = np.random.default_rng(3)
    docs = random_docs(rng, 8, vocab=VOCAB - 1)  # ids 1..28: the vocabulary tests leave out 29
    labels = rng.integers(0, 3, 8).tolist()
    d = tmp_path_factory.mktemp("good")
    write_shard(d / "a.parquet", docs, labels, [f"a{i}" for i in range(8)], row_group_size=3)
    assert run(*common(models["classic"], d / "a.parquet", d / "clean" / "out")) == 0
    return {"shard": d / "a.parquet", "clean": d / "clean" / "out", "docs": docs, "labels": labels}


@pytest.fixture
def good(good_source, tmp_path):
    """A folder of its own holding a copy of the good shard, to add bad shards to."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copyfile(good_source["shard"], d / "a.parquet")
    return dict(good_source, dir=d)


def bad_later_shard(models, good, tmp_path, capsys, docs, labels=None, *extra):
    """Export a.parquet (good) then b.parquet holding `docs`: must stop with exit 3 after committing every
    good document of a.parquet, keeping exactly those rows. Returns the error message."""
    labels = labels or [0] * len(docs)
    b = write_shard(good["dir"] / "b.parquet", docs, labels, [f"b{i}" for i in range(len(docs))],
                    row_group_size=2)
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out, *extra)) == 3
    message = error(capsys)
    assert str(b) in message, message
    committed = json.load(open(out / "export.json"))["committed"]
    assert committed["documents"] == 8 and committed["source"] == 8  # a's 8 documents, 4 batches of 2
    assert_prefix(out, good["clean"], 8)
    # resuming meets the same document again and still keeps the commit bit for bit
    before = datasets(out)
    assert main(["resume", str(out), "--quiet"]) == 3
    assert str(b) in error(capsys)
    assert_same(datasets(out), before)
    return message


def names(message, *parts):
    for part in parts:
        assert re.search(part, message), (part, message)
    return True


# token ids ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [VOCAB, -1])
def test_token_id_outside_the_embedding_is_caught_on_the_host(models, good, tmp_path, capsys, bad):
    """TF raises on CPU but returns zero vectors on GPU: the reader checks against the Embedding's
    input_dim, so the message is ours on every device."""
    message = bad_later_shard(models, good, tmp_path, capsys, [[1, 2], [3, 4, bad, 5]])
    assert names(message, r"\brow 1\b", r"\bposition 2\b", f"token id {bad}\\b", "'tokens'",
                 f"0..{VOCAB - 1} \\(the model's embedding size\\)")


# documents ---------------------------------------------------------------------------------------------

def test_null_document(models, good, tmp_path, capsys):
    message = bad_later_shard(models, good, tmp_path, capsys, [[1], [2], None])
    assert names(message, r"\brow 2\b", "'tokens' is null")


def test_null_token_inside_a_document(models, good, tmp_path, capsys):
    message = bad_later_shard(models, good, tmp_path, capsys, [[1], [2, 3, None]])
    assert names(message, r"\brow 1\b", r"\bposition 2\b", "null token id")


def test_empty_document_is_valid_and_exports_as_padding(models, tmp_path):
    docs = [[1, 2], [], [3]]
    write_shard(tmp_path / "a.parquet", docs)
    out = tmp_path / "out"
    assert run("--model", models["classic"], "--input", tmp_path / "a.parquet", "--out", out) == 0
    with h5py.File(out / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][()], pad_sequences(docs, maxlen=T).flatten())
    with h5py.File(out / "meta.hdf5") as f:
        np.testing.assert_array_equal(f["documents/length"][()], [2, 0, 1])


@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_long_documents_are_truncated_and_counted(models, tmp_path, truncating):
    docs = [list(range(1, 10)), [1, 2], list(range(2, 9)), list(range(1, 7))]
    write_shard(tmp_path / "a.parquet", docs)
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    assert run("--model", models["classic"], "--input", tmp_path / "a.parquet", "--out", out,
               "--truncating", truncating, "--summary-json", summary) == 0
    assert json.load(open(summary))["truncated_documents"] == 2  # 9 and 7 tokens; 6 fits exactly
    with h5py.File(out / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][()], pad_sequences(docs, maxlen=T, truncating=truncating).flatten())


def test_fixed_input_length_differing_from_max_len(models, good, tmp_path, capsys):
    assert run("--model", models["classic"], "--input", good["dir"], "--out", tmp_path / "out",
               "--max-len", 9) == 2
    assert names(error(capsys), "--max-len 9", "fixed input length 6")
    assert not (tmp_path / "out").exists()


# columns -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,kind", [(pa.array([[1.0, 2.5]], pa.list_(pa.float32())), "it is list<.*float>"),
                                         (pa.array(["the cat"]), "it is string"),
                                         (pa.array([[[1, 2], [3]]], pa.list_(pa.list_(pa.int32()))),
                                          "it is list<.*list<.*int32>>")],
                         ids=["floats", "strings", "nested"])
def test_token_column_of_the_wrong_type(models, good, tmp_path, capsys, tokens, kind):
    pq.write_table(pa.table({"tokens": tokens, "label": [0], "id": ["x"]}), good["dir"] / "b.parquet")
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out)) == 3
    assert names(error(capsys), re.escape(str(good["dir"] / "b.parquet")), "column 'tokens' must be a list of "
                 "integers", kind)
    assert not out.exists()  # fresh export: nothing at all


def test_missing_column_lists_the_columns(models, good, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out, "--tokens-column", "ids")) == 3
    assert names(error(capsys), "no column 'ids'", "its columns are tokens, label, id", "--tokens-column")
    assert not out.exists()


def test_label_column_with_a_null(models, good, tmp_path, capsys):
    message = bad_later_shard(models, good, tmp_path, capsys, [[1], [2], [3]], [0, None, 1])
    assert names(message, r"\brow 1\b", "label column 'label' is null")


def test_label_that_is_not_a_class(models, good, tmp_path, capsys):
    message = bad_later_shard(models, good, tmp_path, capsys, [[1], [2], [3]], [0, 1, 5], "--label-names",
                              "neg,neu,pos")
    assert names(message, r"\brow 2\b", "label 5 in column 'label'", r"0\.\.2 \(--label-names\)")


# files -------------------------------------------------------------------------------------------------

def test_shards_whose_schemas_differ(models, good, tmp_path, capsys):
    pq.write_table(pa.table({"tokens": pa.array([[1]], pa.list_(pa.int64())), "label": [0], "id": [7]}),
                   good["dir"] / "b.parquet")
    assert run(*common(models["classic"], good["dir"], tmp_path / "out")) == 3
    assert names(error(capsys), re.escape(str(good["dir"] / "a.parquet")),
                 re.escape(str(good["dir"] / "b.parquet")), "column 'id' as integers", "as strings")
    assert not (tmp_path / "out").exists()


def test_shard_without_rows_or_row_groups_is_exported_as_nothing(models, good, tmp_path):
    schema = pq.read_schema(good["dir"] / "a.parquet")
    pq.ParquetWriter(good["dir"] / "b.parquet", schema).close()  # zero rows, zero row groups
    assert pq.ParquetFile(good["dir"] / "b.parquet").metadata.num_row_groups == 0
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out)) == 0
    want = datasets(good["clean"])
    got = datasets(out)
    for key in want:
        if ".hdf5/" in key:
            assert np.array_equal(got[key], want[key]), key


@pytest.mark.parametrize("damage", ["truncated", "not-parquet"])
def test_truncated_or_non_parquet_file(models, good, tmp_path, capsys, damage):
    data = open(good["dir"] / "a.parquet", "rb").read()
    (good["dir"] / "b.parquet").write_bytes(data[:len(data) // 2] if damage == "truncated" else b"id,tokens\n")
    assert run(*common(models["classic"], good["dir"], tmp_path / "out")) == 3
    assert names(error(capsys), re.escape(str(good["dir"] / "b.parquet")), "not a readable Parquet file")
    assert not (tmp_path / "out").exists()


def test_unreadable_data_pages_keep_the_commit(models, good, tmp_path, capsys):
    """A shard whose footer reads but whose pages do not (the footer fingerprint cannot see this):
    the export stops at that shard, names it and the row, and keeps what it committed."""
    b = write_shard(good["dir"] / "b.parquet", [[1, 2]] * 6, [0] * 6, [f"b{i}" for i in range(6)],
                    row_group_size=2)
    raw = bytearray(open(b, "rb").read())
    column = pq.ParquetFile(b).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    raw[start + 1:start + column.total_compressed_size - 1] = b"\xab" * (column.total_compressed_size - 2)
    open(b, "wb").write(bytes(raw))
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out)) == 3
    assert names(error(capsys), re.escape(str(b)), r"reading rows from \d+ failed", "damaged")
    committed = json.load(open(out / "export.json"))["committed"]["documents"]
    assert committed in (8, 10)  # a.parquet, and b's first row group if pyarrow gave it before failing
    clean_in = tmp_path / "clean_in"
    clean_in.mkdir()
    shutil.copyfile(good["dir"] / "a.parquet", clean_in / "a.parquet")
    write_shard(clean_in / "b.parquet", [[1, 2]] * 2, [0] * 2, ["b0", "b1"])
    clean = tmp_path / "clean" / "out"
    assert run(*common(models["classic"], clean_in, clean)) == 0
    assert_prefix(out, clean, committed)


def test_input_pattern_matching_nothing(models, tmp_path, capsys):
    assert run("--model", models["classic"], "--input", tmp_path / "nowhere" / "*.parquet",
               "--out", tmp_path / "out") == 3
    assert names(error(capsys), "matches no file", "quote the glob")
    assert not (tmp_path / "out").exists()


# vocabulary --------------------------------------------------------------------------------------------

def test_vocabulary_lacking_an_id_that_occurs(models, good, tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"w{i}\n" for i in range(VOCAB - 1)), encoding="utf-8")  # no id 29
    message = bad_later_shard(models, good, tmp_path, capsys, [[1], [2, VOCAB - 1, 3]], None,
                              "--vocab", vocab)
    assert names(message, r"\brow 1\b", r"\bposition 1\b", f"token id {VOCAB - 1} in column 'tokens' has no "
                 "entry in vocabulary", re.escape(str(vocab)))


def test_ids_outside_the_vocabulary_are_fine_once_truncated_away(models, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"w{i}\n" for i in range(10)), encoding="utf-8")
    write_shard(tmp_path / "a.parquet", [[25, 1, 2, 3, 4, 5, 6]])  # pre-truncation drops the 25
    assert run("--model", models["classic"], "--input", tmp_path / "a.parquet", "--out", tmp_path / "out",
               "--vocab", vocab) == 0


@pytest.mark.parametrize("content,where", [('{"a": 1, "b": 1}', "id 1 is given two tokens, 'a' and 'b'"),
                                           ('{"a": 1, "": 2}', "id 2 has an empty token")])
def test_vocabulary_with_two_tokens_for_an_id_or_an_empty_token(models, good, tmp_path, capsys, content, where):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(content, encoding="utf-8")
    assert run(*common(models["classic"], good["dir"], tmp_path / "out", "--vocab", vocab)) == 3
    assert names(error(capsys), re.escape(str(vocab)), re.escape(where))
    assert not (tmp_path / "out").exists()


def test_empty_line_in_a_text_vocabulary(models, good, tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<pad>\na\n\nb\n", encoding="utf-8")
    assert run(*common(models["classic"], good["dir"], tmp_path / "out", "--vocab", vocab)) == 3
    assert names(error(capsys), re.escape(str(vocab)), r"line 3 \(id 2\) is empty")


def test_whitespace_tokens_are_valid_and_escaped(models, tmp_path):
    tokens = ["<pad>", "new york", "a\u00a0b", "x\u2028y", "tab\there", "p\u2029", "\u3000"] + \
             [f"w{i}" for i in range(7, VOCAB)]
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    write_shard(tmp_path / "a.parquet", [[1, 2, 3, 4, 5, 6]])
    out = tmp_path / "out"
    assert run("--model", models["classic"], "--input", tmp_path / "a.parquet", "--out", out,
               "--vocab", vocab) == 0
    parsed = read_dict_like_lstmvis(out / "words.dict")
    assert len(parsed) == VOCAB  # every line survives LSTMVis's split()
    assert {i: unescape(t) for i, t in parsed.items()} == dict(enumerate(tokens))
    assert parsed[1] == "new\\u0020york" and parsed[2] == "a\\u00a0b" and parsed[3] == "x\\u2028y"


# model files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "corrupt", "not-keras", "no-recurrent-layer"])
def test_unusable_model_file(models, good, tmp_path, capsys, kind):
    path = tmp_path / "model.keras"
    if kind == "corrupt":
        data = open(models["classic"], "rb").read()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "not-keras":
        path = tmp_path / "model.parquet"
        shutil.copyfile(good["dir"] / "a.parquet", path)
    elif kind == "no-recurrent-layer":
        path = models["dense"]
    assert run("--model", path, "--input", good["dir"], "--out", tmp_path / "out") == 4
    message = error(capsys)
    expected = {"missing": "does not exist", "corrupt": "cannot be loaded", "not-keras": "cannot be loaded",
                "no-recurrent-layer": "has no recurrent layer"}[kind]
    assert names(message, expected)
    if kind != "no-recurrent-layer":
        assert str(path) in message
    assert not (tmp_path / "out").exists()


# non-finite states -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_model(models, tmp_path_factory):
    """The classic model with a NaN embedding for token 7: every document holding a 7 gets NaN states."""
    import keras

    model = keras.models.load_model(models["classic"], compile=False)
    embedding = next(l for l in model.layers if type(l).__name__ == "Embedding")
    weights = embedding.get_weights()
    weights[0][7] = np.nan
    embedding.set_weights(weights)
    path = tmp_path_factory.mktemp("nan") / "nan.keras"
    model.save(path)
    return str(path)


def test_non_finite_states_are_never_written(models, good, tmp_path, capsys, nan_model):
    docs = [d for d in good["docs"] if 7 not in d]
    write_shard(good["dir"] / "a.parquet", docs, [0] * len(docs), [f"a{i}" for i in range(len(docs))])
    write_shard(good["dir"] / "b.parquet", [[1, 2], [3, 7, 4]], [0, 0], ["b0", "b1"])
    out = tmp_path / "out"
    assert run(*common(nan_model, good["dir"], out)) == 3
    message = error(capsys)
    assert names(message, re.escape(str(good["dir"] / "b.parquet")), r"\brow 1\b", "layer lstm",
                 r"NaN or Inf \(states1\)")
    with h5py.File(out / "states.hdf5") as f:
        assert np.isfinite(f["states1"][()]).all()
        committed = json.load(open(out / "export.json"))["committed"]
        assert f["states1"].shape[0] == committed["rows"] == committed["documents"] * T
        assert committed["documents"] >= len(docs) - 1


# output folder -----------------------------------------------------------------------------------------

def test_output_on_a_read_only_file_system(models, good, tmp_path, capsys, tmpfs):
    out = tmpfs / "out"
    # an export stopped by a bad later shard, committed on the tmpfs; then the file system turns read-only
    write_shard(good["dir"] / "b.parquet", [[1], None], [0, 0], ["b0", "b1"])
    assert run(*common(models["classic"], good["dir"], out)) == 3
    capsys.readouterr()
    before = datasets(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    assert main(["resume", str(out), "--quiet"]) == 5
    assert names(error(capsys), re.escape(str(out)), "Read-only file system", "writable")
    assert run(*common(models["classic"], good["dir"], tmpfs / "fresh")) == 5  # cannot even be created
    assert names(error(capsys), re.escape(str(tmpfs / "fresh")), "cannot be created")
    assert run(*common(models["classic"], good["dir"], tmpfs)) == 5  # the mount point itself
    assert names(error(capsys), "Read-only file system")
    assert_same(datasets(out), before)
    assert sorted(os.listdir(tmpfs)) == ["out"]


HOLDER = """
import sys, time, h5py
f = h5py.File(sys.argv[1], "r")  # an LSTMVis server keeps its files open like this
print("open", flush=True)
time.sleep(120)
"""


def test_output_file_held_open_by_another_process(models, good, tmp_path, capsys):
    write_shard(good["dir"] / "b.parquet", [[1], None], [0, 0], ["b0", "b1"])
    out = tmp_path / "out"
    assert run(*common(models["classic"], good["dir"], out)) == 3
    capsys.readouterr()
    before = datasets(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / "states.hdf5")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["resume", str(out), "--quiet"]) == 5
        message = error(capsys)
        assert names(message, re.escape(str(out / "states.hdf5")), "held open by another process", "errno = 11",
                     "stop that process")
        assert_same(datasets(out), before)
    finally:
        holder.kill()
        holder.wait()
    assert main(["resume", str(out), "--quiet"]) == 3  # the lock is gone with the process; the data is not
    assert_same(datasets(out), before)


# --on-error skip ---------------------------------------------------------------------------------------

def mixed_corpus(folder, n, seed):
    """n labelled documents in two shards, a quarter of them bad in one of six ways; returns the
    documents, labels and, per document, None (good) or the words its skipped.tsv reason must hold."""
    rng = np.random.default_rng(seed)
    docs = [[8 if t == 7 else 27 if t == 28 else t for t in d] for d in random_docs(rng, n, vocab=VOCAB)]
    labels = rng.integers(0, 3, n).tolist()
    why = [None] * n
    for j, i in enumerate(rng.choice(n, size=n // 4, replace=False)):
        kind = j % 6
        if kind == 5:
            docs[i] = (docs[i] or [1]) + [7]  # the NaN model's token
        elif kind == 0:
            docs[i] = None
        elif kind == 1:
            docs[i] = (docs[i] or [1]) + [None]
        elif kind == 2:
            docs[i] = (docs[i] or [1]) + [VOCAB + int(rng.integers(0, 3))]
        elif kind == 3:
            labels[i] = -1
        else:
            docs[i] = (docs[i] or [1]) + [28]  # no vocabulary entry
    for i, d in enumerate(docs):  # the first problem of each document, in the reader's order of checks
        if d is None:
            why[i] = "is null"
        elif None in d:
            why[i] = "null token id"
        elif any(t >= VOCAB for t in d):
            why[i] = "is outside 0..29"
        elif 28 in d[-T:]:
            why[i] = "has no entry in vocabulary"
        elif labels[i] < 0:
            why[i] = "is not a class id"
        elif 7 in d[-T:]:
            why[i] = "produced NaN or Inf"  # the NaN model's token
    os.makedirs(folder, exist_ok=True)
    half = n // 2
    ids = [f"d{i}" for i in range(n)]
    write_shard(os.path.join(folder, "a.parquet"), docs[:half], labels[:half], ids[:half], row_group_size=7)
    write_shard(os.path.join(folder, "b.parquet"), docs[half:], labels[half:], ids[half:], row_group_size=5)
    return docs, labels, why


def skip_vocab(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({f"w{i}": i for i in range(VOCAB) if i != 28}), encoding="utf-8")
    return vocab


def test_skip_leaves_bad_documents_out_and_lists_them(models, nan_model, tmp_path, capsys):
    docs, labels, why = mixed_corpus(tmp_path / "in", 40, seed=4)
    good = [i for i in range(40) if why[i] is None]
    assert 5 < len(good) < 38 and len({w for w in why if w}) == 6  # every kind of problem occurs
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    assert run(*common(nan_model, tmp_path / "in", out, "--on-error", "skip", "--vocab", skip_vocab(tmp_path),
                       "--summary-json", summary, "--batch-size", 4, "--commit-every", 12)) == 0
    assert json.load(open(summary))["skipped_documents"] == 40 - len(good)

    kept = [docs[i] for i in good]
    with h5py.File(out / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][()], pad_sequences(kept, maxlen=T).flatten())
    with h5py.File(out / "meta.hdf5") as f:
        np.testing.assert_array_equal(f["label"][()], np.repeat([labels[i] for i in good], T))
        np.testing.assert_array_equal(f["doc"][()], np.repeat(np.arange(len(good)), T))  # written order
        np.testing.assert_array_equal(f["documents/source"][()], good)
        np.testing.assert_array_equal(f["documents/length"][()], [len(d) for d in kept])
        assert [s.decode() for s in f["documents/id"][()]] == [f"d{i}" for i in good]
    # the states of the kept documents are the model's own (its NaN row never reached them)
    import keras
    model = keras.models.load_model(nan_model, compile=False)
    expected = keras.Model(model.inputs, model.get_layer("lstm").output).predict(
        pad_sequences(kept, maxlen=T), verbose=0).reshape(-1, 5)
    with h5py.File(out / "states.hdf5") as f:
        assert np.abs(f["states1"][()] - expected).max() <= 1e-5

    lines = open(out / "skipped.tsv", encoding="utf-8").read().splitlines()
    assert lines[0] == "source\tshard\trow\treason"
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [i for i in range(40) if why[i]]
    for source, shard, row, reason in rows:
        i = int(source)
        assert shard == str(tmp_path / "in" / ("a.parquet" if i < 20 else "b.parquet"))
        assert int(row) == i % 20 and f"row {i % 20}" in reason and why[i] in reason, reason
    journal = json.load(open(out / "export.json"))["committed"]
    assert (journal["documents"], journal["source"], journal["skipped"]) == (len(good), 40, 40 - len(good))

    assert main(["verify", str(out), "--sample", "6"]) == 0  # re-reads the right Parquet rows
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["skipped_documents"] == 40 - len(good) and status["percent"] == 100.0
    assert main(["inspect", str(out)]) == 0
    assert main(["sample", str(out), "--docs", "4"]) == 0
    assert main(["verify", str(out) + "_sample", "--sample", "4"]) == 0
    wrong = tmp_path / "wrong"  # verify does look at documents/source: with the plain indices it must fail
    shutil.copytree(out, wrong)
    with h5py.File(wrong / "meta.hdf5", "a") as f:
        f["documents/source"][:] = np.arange(len(good))
    assert main(["verify", str(wrong), "--sample", str(len(good))]) == 7


def test_stop_is_the_default_and_names_the_first_bad_document(models, nan_model, tmp_path, capsys):
    docs, labels, why = mixed_corpus(tmp_path / "in", 40, seed=4)
    first = next(i for i in range(40) if why[i])
    assert run(*common(nan_model, tmp_path / "in", tmp_path / "out", "--vocab", skip_vocab(tmp_path),
                       "--batch-size", 4)) == 3
    message = error(capsys)
    assert names(message, f"row {first % 20}\\b", re.escape(why[first]))


def start(args, pause="batch:0.05"):
    env = dict(os.environ, STREAM_EXPORT_PAUSE_AT=pause)
    return subprocess.Popen([sys.executable, "-m", "stream_export", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_skip_then_kill_and_resume_is_bit_identical(models, tmp_path):
    """The journal counts written and consumed documents apart; a resume after a real SIGKILL (and a line
    appended to skipped.tsv after the last commit, as a kill between report and journal leaves) ends
    identical to an uninterrupted run, report included."""
    import time

    docs, labels, why = mixed_corpus(tmp_path / "in", 240, seed=9)
    args = common(models["classic"], tmp_path / "in", tmp_path / "run" / "out", "--on-error", "skip",
                  "--vocab", skip_vocab(tmp_path), "--batch-size", 8, "--commit-every", 48)
    assert run(*args[:5], tmp_path / "clean" / "out", *args[6:]) == 0
    clean = datasets(tmp_path / "clean" / "out")
    out = tmp_path / "run" / "out"

    def source():
        try:
            return json.load(open(out / "export.json"))["committed"]["source"]
        except (OSError, ValueError):
            return 0

    for target, command in [(120, ["export", "--quiet", *args])]:
        proc = start(command)
        deadline = time.monotonic() + 120
        while source() < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[1]
        proc.kill()
        proc.wait()
        with open(out / "skipped.tsv", "a", encoding="utf-8") as f:
            f.write("999\tnot\tcommitted\tappended after the last commit\n")
    committed = json.load(open(out / "export.json"))["committed"]
    assert 120 <= committed["source"] < 240 and committed["skipped"] > 0
    assert main(["resume", str(out), "--quiet"]) == 0
    got = datasets(out)
    assert got.pop("committed") == clean.pop("committed")
    assert_same(got, clean)


@pytest.mark.parametrize("seed", [0])
def test_any_ragged_nullable_column_exports_or_fails_cleanly(models, tmp_path, seed):
    from hypothesis import HealthCheck, given, settings, strategies as st

    token = st.one_of(st.none(), st.integers(-2, VOCAB + 1), st.integers(0, VOCAB - 1))
    doc = st.one_of(st.none(), st.lists(token, max_size=9), st.lists(st.integers(1, VOCAB - 1), max_size=9))
    kinds = st.sampled_from([pa.int32(), pa.int64(), pa.int16(), pa.float64(), pa.string()])

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(docs=st.lists(doc, min_size=1, max_size=12), kind=kinds, on_error=st.sampled_from(["stop", "skip"]),
           group=st.integers(1, 5))
    def check(docs, kind, on_error, group):
        import tempfile

        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            if kind == pa.string():
                column = pa.array([None if x is None else " ".join(map(str, x)) for x in docs], pa.string())
            elif kind == pa.float64():
                column = pa.array([None if x is None else [None if t is None else t + 0.5 for t in x]
                                   for x in docs], pa.list_(kind))
            else:
                column = pa.array(docs, pa.list_(kind))
            pq.write_table(pa.table({"tokens": column}), os.path.join(d, "s.parquet"), row_group_size=group)
            out = os.path.join(d, "out")
            code = main(["export", "--quiet", "--model", models["classic"], "--input", d, "--out", out,
                         "--batch-size", "3", "--on-error", on_error])
            valid = [x for x in docs if x is not None and all(t is not None and 0 <= t < VOCAB for t in x)]
            if kind in (pa.float64(), pa.string()):
                assert code == 3 and not os.path.exists(out)
                return
            if on_error == "stop" and len(valid) < len(docs):
                assert code == 3 and not os.path.exists(out)
                return
            if not valid:
                assert code == 3 and os.path.exists(os.path.join(out, "skipped.tsv"))
                return
            assert code == 0
            with h5py.File(os.path.join(out, "train.hdf5")) as f:
                np.testing.assert_array_equal(f["words"][()], pad_sequences(valid, maxlen=T).flatten())
            if on_error == "skip":
                assert len(open(os.path.join(out, "skipped.tsv")).read().splitlines()) == 1 + len(docs) - len(valid)

    check()


def test_model_without_embedding_checks_ids_against_int32_only(tmp_path, capsys):
    import keras

    inp = keras.Input(shape=(T,))
    x = keras.layers.Reshape((T, 1))(inp)
    path = tmp_path / "raw.keras"
    keras.Model(inp, keras.layers.LSTM(3, return_sequences=True, name="raw")(x)).save(path)
    docs = [[1, 500, 70000], [2**31 - 1]]
    write_shard(tmp_path / "a.parquet", docs)
    out = tmp_path / "out"
    assert run("--model", path, "--input", tmp_path / "a.parquet", "--out", out) == 0
    with h5py.File(out / "train.hdf5") as f:
        np.testing.assert_array_equal(f["words"][()], pad_sequences(docs, maxlen=T).flatten())
    pq.write_table(pa.table({"tokens": pa.array([[1], [3, 2**31]], pa.list_(pa.int64()))}), tmp_path / "b.parquet")
    assert run("--model", path, "--input", tmp_path / "b.parquet", "--out", tmp_path / "out2") == 3
    assert names(error(capsys), r"\brow 1\b", r"\bposition 1\b", r"outside 0\.\.2147483647 \(int32\)")
    assert not (tmp_path / "out2").exists()
