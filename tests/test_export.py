"""End to end through the CLI, in-process: the exported project against independently computed values."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from conftest import random_docs, write_shard
from reference import gru, lstm, simple_rnn
from stream_export.cli import main
from stream_export.vocab import read_dict_like_lstmvis, unescape


def run(*args):
    return main(["export", "--quiet", *map(str, args)])


def read(out, file, path):
    with h5py.File(os.path.join(out, file), "r") as f:
        return f[path][()]


def classic(model_path, docs, max_len, layer, **pad):
    """The classic recipe: pad the whole corpus, predict the layer's output, reshape to rows."""
    import keras

    model = keras.models.load_model(model_path, compile=False)
    padded = keras.utils.pad_sequences(docs, maxlen=max_len, **pad)
    state_model = keras.Model(model.inputs, model.get_layer(layer).output)
    states = state_model.predict(padded, verbose=0)
    return padded, states.reshape(len(docs) * max_len, -1)


def test_classic_model_matches_classic_recipe(models, corpus, tmp_path):
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", out, "--batch-size", 4,
               "--label-column", "label", "--id-column", "id") == 0
    padded, states = classic(models["classic"], corpus["docs"], 6, "lstm")
    n = len(corpus["docs"])
    assert np.abs(read(out, "states.hdf5", "states1") - states).max() <= 1e-5
    np.testing.assert_array_equal(read(out, "train.hdf5", "words"), padded.flatten())
    np.testing.assert_array_equal(read(out, "meta.hdf5", "label"),
                                  np.tile(corpus["labels"][:, None], (1, 6)).flatten())
    np.testing.assert_array_equal(read(out, "meta.hdf5", "doc"), np.arange(n * 6) // 6)
    np.testing.assert_array_equal(read(out, "meta.hdf5", "documents/length"), [len(d) for d in corpus["docs"]])
    assert [s.decode() for s in read(out, "meta.hdf5", "documents/id")] == corpus["ids"]
    words = read(out, "train.hdf5", "words")
    assert read(out, "train.hdf5", "words").dtype == np.int32 and words.ndim == 1
    assert read(out, "states.hdf5", "states1").dtype == np.float32


def test_layer_without_sequences_matches_lstm_equations(models, corpus, tmp_path):
    import keras

    out = tmp_path / "proj"
    assert run("--model", models["last"], "--input", corpus["dir"], "--out", out, "--max-len", 9,
               "--padding", "post", "--truncating", "post") == 0
    model = keras.models.load_model(models["last"], compile=False)
    padded = keras.utils.pad_sequences(corpus["docs"], maxlen=9, padding="post", truncating="post")
    embedded = model.layers[1].embeddings.numpy()[padded]
    h, _ = lstm(embedded, *model.get_layer("last").get_weights())
    states = read(out, "states.hdf5", "states1").reshape(len(padded), 9, 4)
    assert np.abs(states - h).max() <= 1e-5
    # the last step is exactly what the original layer returns
    final = keras.Model(model.inputs, model.get_layer("last").output).predict(padded, verbose=0)
    assert np.abs(states[:, -1] - final).max() <= 1e-5


def test_stacked_layers_in_input_to_output_order_and_selection(models, corpus, tmp_path):
    import keras

    out = tmp_path / "all"
    assert run("--model", models["stacked"], "--input", corpus["dir"], "--out", out) == 0
    model = keras.models.load_model(models["stacked"], compile=False)
    padded = keras.utils.pad_sequences(corpus["docs"], maxlen=6)
    x = model.layers[1].embeddings.numpy()[padded]
    h1 = gru(x, *model.get_layer("gru").get_weights(), reset_after=model.get_layer("gru").reset_after)
    h2 = simple_rnn(h1, *model.get_layer("rnn").get_weights())
    h3, _ = lstm(h2, *model.get_layer("top").get_weights())
    for k, h in enumerate([h1, h2, h3], 1):
        got = read(out, "states.hdf5", f"states{k}")
        assert np.abs(got - h.reshape(-1, h.shape[-1])).max() <= 1e-5, k
    conf = yaml.safe_load((out / "lstm.yml").read_text())
    assert [t["path"] for t in conf["states"]["types"]] == ["states1", "states2", "states3"]

    out = tmp_path / "top"
    assert run("--model", models["stacked"], "--input", corpus["dir"], "--out", out, "--layers", "top,gru") == 0
    with h5py.File(out / "states.hdf5") as f:
        assert sorted(f) == ["states1", "states2"]
        assert f["states1"].shape[1] == 4 and f["states2"].shape[1] == 3  # graph order: gru, then top


def test_last_partial_batch_is_exported(models, tmp_path):
    docs = random_docs(np.random.default_rng(3), 7)
    write_shard(tmp_path / "s.parquet", docs)
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", tmp_path / "s.parquet", "--out", out,
               "--batch-size", 3) == 0
    padded, states = classic(models["classic"], docs, 6, "lstm")
    got = read(out, "states.hdf5", "states1")
    assert got.shape == (7 * 6, 5)
    assert np.abs(got - states).max() <= 1e-5


def test_shards_in_sorted_order_from_globs_and_files(models, corpus, tmp_path):
    out1, out2 = tmp_path / "glob", tmp_path / "files"
    d = corpus["dir"]
    assert run("--model", models["classic"], "--input", os.path.join(d, "*.parquet"), "--out", out1) == 0
    assert run("--model", models["classic"], "--input", os.path.join(d, "c.parquet"),
               "--input", os.path.join(d, "b.parquet"), "--input", os.path.join(d, "a.parquet"),
               "--out", out2) == 0
    padded, _ = classic(models["classic"], corpus["docs"], 6, "lstm")
    for out in (out1, out2):
        np.testing.assert_array_equal(read(out, "train.hdf5", "words"), padded.flatten())


def test_words_dict_parsed_like_lstmvis_gives_every_token(models, tmp_path):
    tokens = ["<pad>", "the", "new york", "tab\there", "café", "naïve", "a\u00a0b", "back\\slash",
              "東京", "x\u2028y"] + [f"w{i}" for i in range(10, 30)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    docs = [[2, 3, 4], [5, 6, 7, 8, 9], [1, 2], list(range(10, 30))]
    write_shard(tmp_path / "s.parquet", docs)
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", tmp_path / "s.parquet", "--vocab", vocab,
               "--out", out) == 0
    parsed = read_dict_like_lstmvis(out / "words.dict")
    for i in np.unique(read(out, "train.hdf5", "words")):
        assert unescape(parsed[int(i)]) == tokens[i]
    assert set(parsed) == set(range(len(tokens)))


def test_json_vocab_and_padding_entry(models, tmp_path):
    word_index = {f"w{i}": i for i in range(1, 30)}  # Keras Tokenizer ids start at 1; 0 is padding
    (tmp_path / "vocab.json").write_text(json.dumps(word_index))
    write_shard(tmp_path / "s.parquet", [[1, 2], [29]])
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", tmp_path / "s.parquet",
               "--vocab", tmp_path / "vocab.json", "--out", out) == 0
    parsed = read_dict_like_lstmvis(out / "words.dict")
    assert parsed[0] == "<pad>" and parsed[29] == "w29" and len(parsed) == 30


def test_without_vocab_each_id_stands_for_itself(models, corpus, tmp_path):
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", out) == 0
    parsed = read_dict_like_lstmvis(out / "words.dict")
    used = np.unique(read(out, "train.hdf5", "words"))
    assert set(parsed) == set(used.tolist()) | {0}
    assert all(parsed[i] == str(i) for i in used if i != 0)


def test_lstm_yml_resolves_and_lengths_agree(models, corpus, tmp_path):
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", out,
               "--label-column", "label", "--label-names", "neg,neu,pos") == 0
    conf = yaml.safe_load((out / "lstm.yml").read_text())
    assert conf["name"] == "proj"
    files = conf["files"]
    for name in files.values():
        assert (out / name).is_file(), name

    def length(file_key, path):
        with h5py.File(out / files[file_key], "r") as f:
            return f[path].shape[0]

    ws = conf["word_sequence"]
    rows = length(ws["file"], ws["path"])
    assert rows == len(corpus["docs"]) * 6
    assert ws["dict_file"] in files
    for t in conf["states"]["types"]:
        assert length(t.get("file", conf["states"]["file"]), t["path"]) == rows
    for track in conf["meta"].values():
        assert length(track["file"], track["path"]) == rows
        assert "range" in track["vis"]
        if "dict" in track:
            assert track["dict"] in files
    labels = read_dict_like_lstmvis(out / "labels.dict")
    assert labels == {0: "neg", 1: "neu", 2: "pos"}


def test_summary_json(models, corpus, tmp_path):
    out, summary = tmp_path / "proj", tmp_path / "runs" / "summary.json"  # runs/ is made for it
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", out,
               "--summary-json", summary) == 0
    s = json.loads(summary.read_text())
    assert s["documents"] == 11 and s["rows"] == 66
    assert s["tokens"] == sum(min(len(d), 6) for d in corpus["docs"])
    assert s["truncated_documents"] == sum(len(d) > 6 for d in corpus["docs"])
    assert s["bytes"] > 0 and s["seconds"] > 0


def test_max_len_rules(models, corpus, tmp_path, capsys):
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", tmp_path / "a",
               "--max-len", 8) == 2
    assert "conflicts with the model's fixed input length 6" in capsys.readouterr().err
    assert run("--model", models["last"], "--input", corpus["dir"], "--out", tmp_path / "b") == 2
    assert "--max-len" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("value, message", [("30", "--pad-value 30 is not a token id the model accepts (0..29"),
                                            ("-1", "--pad-value -1 is not a token id")])
def test_pad_value_outside_the_embedding_is_refused(models, corpus, tmp_path, capsys, value, message):
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", tmp_path / "a",
               "--pad-value", value) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_model_without_recurrent_layer_is_refused(models, corpus, tmp_path, capsys):
    assert run("--model", models["dense"], "--input", corpus["dir"], "--out", tmp_path / "a") == 4
    assert "no recurrent layer" in capsys.readouterr().err


def test_existing_export_is_not_overwritten_without_flag(models, corpus, tmp_path, capsys):
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", corpus["dir"], "--out", out) == 0
    before = read(out, "states.hdf5", "states1")
    assert run("--model", models["stacked"], "--input", corpus["dir"], "--out", out) == 5
    assert "--overwrite" in capsys.readouterr().err
    np.testing.assert_array_equal(read(out, "states.hdf5", "states1"), before)
    assert run("--model", models["stacked"], "--input", corpus["dir"], "--out", out, "--overwrite") == 0
    assert read(out, "states.hdf5", "states1").shape[1] == 4


def test_failed_overwrite_keeps_the_previous_export(models, tmp_path, capsys):
    """--overwrite replaces an export only once the new one commits: bad data found mid-stream (after the
    old files were moved aside) puts the old export back, byte for byte."""
    rng = np.random.default_rng(3)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    docs = random_docs(rng, 40)
    write_shard(good / "a.parquet", docs)
    write_shard(bad / "a.parquet", docs[:30] + [[1, 2, 99]] + docs[31:])  # 99: beyond the embedding's 30
    out = tmp_path / "proj"
    assert run("--model", models["classic"], "--input", good, "--out", out, "--batch-size", 4) == 0
    before = {name: (out / name).read_bytes() for name in sorted(os.listdir(out)) if not name.startswith(".")}
    assert run("--model", models["classic"], "--input", bad, "--out", out, "--batch-size", 4,
               "--commit-every", 10**6, "--overwrite") == 3
    assert "row 30" in capsys.readouterr().err
    after = {name: (out / name).read_bytes() for name in sorted(os.listdir(out)) if not name.startswith(".")}
    assert after == before
    assert run("--model", models["stacked"], "--input", good, "--out", out, "--overwrite") == 0
    assert read(out, "states.hdf5", "states1").shape[1] == 4
    assert not (out / ".stream_export-previous").exists()


@pytest.mark.parametrize("args, message", [
    (["--out", ""], "--out is empty"),
    (["--out", "proj", "--input", " "], "--input is empty"),
    (["--out", "proj", "--summary-json", "."], "--summary-json . cannot be written"),
    (["--out", "proj", "--summary-json", "corpus/a.parquet/s.json"], "cannot be written"),
    (["--out", "proj", "--label-column", "label", "--label-names", "a,,b"], "empty name for class 1"),
    (["--out", "proj", "--label-column", "label", "--label-names", "a,b,a"], "'a' to two classes"),
])
def test_bad_options_are_refused_before_anything_is_written(models, corpus, tmp_path, monkeypatch, capsys,
                                                             args, message):
    monkeypatch.chdir(tmp_path)
    assert run("--model", models["classic"], "--input", corpus["dir"], *args) == 2
    assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["corpus"]


def test_an_error_is_one_line_not_buried_under_tensorflow_chatter(models, corpus, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, "-m", "stream_export", "export", "--model", models["classic"],
                        "--input", corpus["dir"], "--out", str(tmp_path / "proj"), "--max-len", "7"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert p.stderr.splitlines() == ["stream-export: error: --max-len 7 conflicts with the model's fixed input "
                                     "length 6; drop --max-len or use a model built for that length"]


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom stream_export.cli import main\n"
            "try:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_python_dash_m_runs_an_export(models, corpus, tmp_path):
    out = tmp_path / "proj"
    p = subprocess.run([sys.executable, "-m", "stream_export", "export", "--model", models["classic"],
                        "--input", corpus["dir"], "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "exported 11 documents, 66 rows" in p.stderr
    padded, states = classic(models["classic"], corpus["docs"], 6, "lstm")
    assert np.abs(read(out, "states.hdf5", "states1") - states).max() <= 1e-5
