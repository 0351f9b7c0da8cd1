"""The state model through real exports: every recurrent architecture against the numpy equations
(reference.py) with the layers' own weights, h and c at every step, and the model-file and error cases."""

import json
import os

import h5py
import numpy as np
import pytest
import yaml

from conftest import write_shard
from legacy_keras2 import write_keras2_h5
from reference import masked, states
from stream_export.cli import main
from stream_export.vocab import read_dict_like_lstmvis

TOL = 1e-5


def export(*args):
    return main(["export", "--quiet", *map(str, args)])


def datasets(out):
    """{'<file key>::<path>': array} of every dataset of the project."""
    found = {}
    for key in ("states", "train", "meta"):
        with h5py.File(os.path.join(out, f"{key}.hdf5"), "r") as f:
            f.visititems(lambda p, obj: found.__setitem__(f"{key}::{p}", obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
    return found


def exported_layers(out):
    return [layer["name"] for layer in json.loads((out / "export.json").read_text())["layers"]]


def check_lstm_yml(out):
    """Every source lstm.yml declares exists and has as many rows as the words; returns the config."""
    conf = yaml.safe_load((out / "lstm.yml").read_text())
    data = datasets(out)
    rows = len(data["train::words"])
    for t in conf["states"]["types"]:
        assert len(data[f"{t.get('file', conf['states']['file'])}::{t['path']}"]) == rows, t
    for key, track in conf["meta"].items():
        assert len(data[f"{track['file']}::{track['path']}"]) == rows, key
        assert isinstance(track["vis"]["range"], list) or track["vis"]["range"] == "dict"
        if "dict" in track:
            assert (out / conf["files"][track["dict"]]).is_file()
    return conf


def keras_model(path):
    import keras

    return keras.models.load_model(path, compile=False)


def layer_output(model, name, x):
    import keras

    return keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0)


def padded(docs, max_len, padding="pre", truncating="pre"):
    import keras

    return keras.utils.pad_sequences(docs, maxlen=max_len, padding=padding, truncating=truncating)


def test_bidirectional_merge_modes_go_backwards_and_last_step(models, corpus, tmp_path, capsys):
    out = tmp_path / "proj"
    assert export("--model", models["directions"], "--input", corpus["dir"], "--out", out, "--cell-states",
                  "--batch-size", 4) == 0
    assert "bi_sum (GRU), bi_mul (GRU), bi_ave (SimpleRNN), back_last (GRU)" in capsys.readouterr().err
    model = keras_model(models["directions"])
    tokens = padded(corpus["docs"], 6)
    x = model.layers[1].embeddings.numpy()[tokens]
    data = datasets(out)
    names = exported_layers(out)
    assert sorted(names) == sorted(["bi_concat", "bi_sum", "bi_mul", "bi_ave", "bi_none", "bi_last",
                                    "back_seq", "back_last"])
    merge = {"concat": lambda a, b: np.concatenate([a, b], -1), "sum": np.add, "mul": np.multiply,
             "ave": lambda a, b: (a + b) / 2}
    for k, name in enumerate(names, 1):
        layer = model.get_layer(name)
        wrapped = type(layer).__name__ == "Bidirectional"
        directions = [(layer.forward_layer, "_fw"), (layer.backward_layer, "_bw")] if wrapped else [(layer, "")]
        got = {}
        for sub, suffix in directions:
            kind = type(sub).__name__
            h, c = states(kind, sub.get_weights(), x, backwards=sub.go_backwards,
                          reset_after=getattr(sub, "reset_after", True))
            got[suffix] = data[f"states::states{k}{suffix}"].reshape(h.shape)
            assert np.abs(got[suffix] - h).max() <= TOL, (name, suffix)
            if kind == "LSTM":
                assert np.abs(data[f"states::cells{k}{suffix}"].reshape(c.shape) - c).max() <= TOL, (name, suffix)
            else:
                assert f"states::cells{k}{suffix}" not in data
        own = layer_output(model, name, tokens)
        if wrapped and layer.merge_mode is None:
            assert np.abs(got["_fw"] - own[0]).max() <= TOL and np.abs(got["_bw"] - own[1]).max() <= TOL
        elif wrapped and layer.return_sequences:  # Keras's own merge of its two directions, row t = token t
            assert np.abs(merge[layer.merge_mode](got["_fw"], got["_bw"]) - own).max() <= TOL, name
        elif wrapped:  # return_sequences=False: forward ends at the last token, backward at the first
            assert np.abs(np.concatenate([got["_fw"][:, -1], got["_bw"][:, 0]], -1) - own).max() <= TOL
        elif not layer.return_sequences:  # go_backwards: the final state belongs to the first token
            assert np.abs(got[""][:, 0] - own).max() <= TOL
    conf = check_lstm_yml(out)
    assert sorted(t["path"] for t in conf["states"]["types"]) == sorted(k[8:] for k in data if k[:8] == "states::")


def _masked_reference(model, docs, max_len, padding):
    """{dataset suffix per layer name: states} of the masked model, each document run on its real tokens
    only (which is what a mask makes a layer do), zeros at padding."""
    tokens = padded(docs, max_len, padding, truncating=padding)
    x = model.layers[1].embeddings.numpy()[tokens]
    lengths = [len(d) for d in docs]
    lstm, bi, back, last = (model.get_layer(n) for n in ("lstm", "bi", "back", "last"))

    def run(layer, value, c=False, backwards=False):
        fn = lambda v: states(type(layer).__name__, layer.get_weights(), v, backwards=backwards)[int(c)]  # noqa
        return masked(fn, value, lengths, padding)

    h1 = run(lstm, x)
    fw, bw = run(bi.forward_layer, h1), run(bi.backward_layer, h1, backwards=True)
    both = np.concatenate([fw, bw], -1)
    return tokens, {"lstm": {"states": h1, "cells": run(lstm, x, c=True)},
                    "bi": {"states_fw": fw, "states_bw": bw},
                    "last": {"states": run(last, both), "cells": run(last, both, c=True)},
                    "back": {"states": run(back, both, backwards=True)}}


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_masked_input_gives_zeros_at_padding_for_every_layer(models, corpus, tmp_path, padding):
    out = tmp_path / "proj"
    docs = corpus["docs"]
    assert export("--model", models["masked"], "--input", corpus["dir"], "--out", out, "--max-len", 7,
                  "--padding", padding, "--truncating", padding, "--cell-states") == 0
    model = keras_model(models["masked"])
    tokens, expected = _masked_reference(model, docs, 7, padding)
    data = datasets(out)
    names = exported_layers(out)
    assert sorted(names) == sorted(expected)
    wanted = {f"states::{key.replace('_', str(k) + '_') if '_' in key else key + str(k)}": value
              for k, name in enumerate(names, 1) for key, value in expected[name].items()}
    assert sorted(k for k in data if k.startswith("states::")) == sorted(wanted)
    for key, value in wanted.items():
        assert np.abs(data[key].reshape(value.shape) - value).max() <= TOL, key
    # the policy differs from Keras's own output, which repeats the last state after post-padding; at the
    # last real token both agree
    own = layer_output(model, "last", tokens)
    lengths = np.minimum([len(d) for d in docs], 7)
    last_real = np.where(lengths > 0, 6 if padding == "pre" else lengths - 1, 6)
    k = names.index("last") + 1
    got = data[f"states::states{k}"].reshape(len(docs), 7, -1)[np.arange(len(docs)), last_real]
    assert np.abs(got[lengths > 0] - own[lengths > 0]).max() <= TOL


def test_skip_padding_keeps_words_states_and_meta_aligned(models, corpus, tmp_path):
    full, skip = tmp_path / "full", tmp_path / "skip"
    common = ["--model", models["masked"], "--input", corpus["dir"], "--max-len", 7, "--padding", "post",
              "--label-column", "label", "--id-column", "id", "--cell-states", "--batch-size", 3]
    assert export(*common, "--out", full) == 0
    assert export(*common, "--out", skip, "--skip-padding") == 0
    docs, labels = corpus["docs"], corpus["labels"]
    kept = [d[-7:] for d in docs]  # truncating 'pre' keeps the last 7 tokens
    counts = np.array([len(d) for d in kept])
    a, b = datasets(full), datasets(skip)
    np.testing.assert_array_equal(b["train::words"], np.concatenate(kept))
    np.testing.assert_array_equal(b["meta::doc"], np.repeat(np.arange(len(docs)), counts))
    np.testing.assert_array_equal(b["meta::label"], np.repeat(labels, counts))
    np.testing.assert_array_equal(b["meta::documents/start"], np.cumsum(counts) - counts)
    np.testing.assert_array_equal(a["meta::documents/start"], np.arange(len(docs)) * 7)
    np.testing.assert_array_equal(b["meta::documents/length"], [len(d) for d in docs])
    real = (np.arange(7)[None, :] < counts[:, None]).reshape(-1)
    for key in (k for k in a if k.startswith("states::")):
        np.testing.assert_array_equal(b[key], a[key][real])
    check_lstm_yml(skip)
    summary = {"rows": len(b["train::words"]), "docs": len(docs)}
    assert summary["rows"] == counts.sum()
    # document d is rows start[d] .. start[d] + count[d]
    d = int(np.argmax(counts))
    start = b["meta::documents/start"][d]
    np.testing.assert_array_equal(b["train::words"][start:start + counts[d]], kept[d])


def test_nested_models_and_predictions(models, corpus, tmp_path):
    out = tmp_path / "proj"
    assert export("--model", models["nested"], "--input", corpus["dir"], "--out", out, "--cell-states",
                  "--predictions", "--label-column", "label", "--label-names", "neg,neu,pos") == 0
    assert exported_layers(out) == ["encoder/enc", "block/gru"]
    model = keras_model(models["nested"])
    tokens = padded(corpus["docs"], 6)
    x = model.layers[1].embeddings.numpy()[tokens]
    enc = model.get_layer("encoder").get_layer("enc")
    gru = model.get_layer("block").get_layer("gru")
    h1, c1 = states("LSTM", enc.get_weights(), x)
    h2, _ = states("GRU", gru.get_weights(), h1, reset_after=gru.reset_after)
    data = datasets(out)
    for key, value in (("states1", h1), ("cells1", c1), ("states2", h2)):
        assert np.abs(data[f"states::{key}"] - value.reshape(-1, value.shape[-1])).max() <= TOL, key
    assert "states::cells2" not in data
    probabilities = model.predict(tokens, verbose=0).reshape(-1, 3)
    for j in range(3):
        assert np.abs(data[f"meta::predictions/p{j}"] - probabilities[:, j]).max() <= TOL
    np.testing.assert_array_equal(data["meta::predictions/class"], probabilities.argmax(-1))
    conf = check_lstm_yml(out)
    assert conf["meta"]["p_neg"]["path"] == "predictions/p0" and conf["meta"]["p_pos"]["vis"]["range"] == [0, 1]
    assert conf["meta"]["predicted"]["dict"] == "classes"
    assert read_dict_like_lstmvis(out / "classes.dict") == {0: "neg", 1: "neu", 2: "pos"}

    selected = tmp_path / "selected"
    assert export("--model", models["nested"], "--input", corpus["dir"], "--out", selected,
                  "--layers", "gru") == 0
    assert exported_layers(selected) == ["block/gru"]
    assert np.abs(datasets(selected)["states::states1"] - h2.reshape(-1, 3)).max() <= TOL


def test_legacy_keras2_h5(corpus, tmp_path):
    import keras

    path = tmp_path / "legacy.h5"
    weights = write_keras2_h5(path)
    with pytest.raises(Exception, match="time_major"):  # the file really is one Keras 3 refuses
        keras.models.load_model(path, compile=False)
    out = tmp_path / "proj"
    assert export("--model", path, "--input", corpus["dir"], "--out", out, "--cell-states", "--predictions",
                  "--padding", "post") == 0
    assert exported_layers(out) == ["lstm", "bi", "inner/srnn"]
    docs = corpus["docs"]
    tokens = padded(docs, 6, "post")
    lengths = [len(d) for d in docs]
    x = weights["embedding"][0][tokens]
    bi = weights["bi"]

    def run(kind, w, backwards=False, reset_after=True, c=False):
        return lambda v: states(kind, w, v, backwards=backwards, reset_after=reset_after)[1 if c else 0]

    h1 = masked(run("LSTM", weights["lstm"]), x, lengths, "post")
    c1 = masked(run("LSTM", weights["lstm"], c=True), x, lengths, "post")
    fw = masked(run("GRU", bi[:3], reset_after=False), h1, lengths, "post")
    bw = masked(run("GRU", bi[3:], backwards=True, reset_after=False), h1, lengths, "post")
    h3 = masked(run("SimpleRNN", weights["inner"]), np.concatenate([fw, bw], -1), lengths, "post")
    data = datasets(out)
    expected = {"states1": h1, "cells1": c1, "states2_fw": fw, "states2_bw": bw, "states3": h3}
    for key, value in expected.items():
        assert np.abs(data[f"states::{key}"] - value.reshape(-1, value.shape[-1])).max() <= TOL, key
    logits = h3 @ weights["td"][0] + weights["td"][1]
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    real = (np.arange(6)[None, :] < np.minimum(lengths, 6)[:, None]).reshape(-1)
    for j in range(3):  # at real tokens; at padding the model's output is kept as Keras gives it
        assert np.abs(data[f"meta::predictions/p{j}"][real] - softmax.reshape(-1, 3)[real, j]).max() <= TOL


def test_softmax_recurrent_layer_is_refused(models, corpus, tmp_path, capsys):
    assert export("--model", models["softmax_rnn"], "--input", corpus["dir"], "--out", tmp_path / "a") == 4
    err = capsys.readouterr().err
    assert "layer probs" in err and "class probabilities" in err
    assert not (tmp_path / "a").exists()


def test_selected_layer_that_is_not_recurrent(models, corpus, tmp_path, capsys):
    assert export("--model", models["classic"], "--input", corpus["dir"], "--out", tmp_path / "a",
                  "--layers", "time_distributed") == 2
    err = capsys.readouterr().err
    assert "time_distributed" in err and "not recurrent" in err and "choose from lstm" in err


def test_predictions_need_a_per_timestep_output(models, corpus, tmp_path, capsys):
    assert export("--model", models["last"], "--input", corpus["dir"], "--out", tmp_path / "a",
                  "--max-len", 5, "--predictions") == 4
    assert "value per timestep" in capsys.readouterr().err


def test_saved_model_and_weights_only_files_get_clear_errors(models, corpus, tmp_path, capsys):
    model = keras_model(models["classic"])
    model.export(str(tmp_path / "served"), verbose=False)
    assert export("--model", tmp_path / "served", "--input", corpus["dir"], "--out", tmp_path / "a") == 4
    assert "serving function" in capsys.readouterr().err
    model.save_weights(str(tmp_path / "w.weights.h5"))
    assert export("--model", tmp_path / "w.weights.h5", "--input", corpus["dir"], "--out", tmp_path / "b") == 4
    assert "weights only" in capsys.readouterr().err


def test_short_documents_and_skip_padding_with_pre_padding(models, tmp_path):
    docs = [[1, 2, 3], [], [4] * 9, [5]]
    write_shard(tmp_path / "s.parquet", docs)
    out = tmp_path / "proj"
    assert export("--model", models["classic"], "--input", tmp_path / "s.parquet", "--out", out,
                  "--skip-padding", "--predictions") == 0
    data = datasets(out)
    np.testing.assert_array_equal(data["train::words"], [1, 2, 3, 4, 4, 4, 4, 4, 4, 5])
    np.testing.assert_array_equal(data["meta::documents/start"], [0, 3, 3, 9])
    model = keras_model(models["classic"])
    tokens = padded(docs, 6)
    real = (tokens != 0).reshape(-1)
    own = layer_output(model, "lstm", tokens).reshape(-1, 5)
    assert np.abs(data["states::states1"] - own[real]).max() <= TOL
    assert np.abs(data["meta::predictions/p1"] - model.predict(tokens, verbose=0).reshape(-1, 3)[real, 1]).max() <= TOL
    check_lstm_yml(out)
