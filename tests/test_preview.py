"""preview: a valid PNG of the documented size whose heatmap pixels follow known state values."""

import os
import shutil
import sys

import h5py
import numpy as np
import pytest

from projects import export, make_corpus, read
from stream_export import preview as pv
from stream_export.cli import main

T, CELLS = 40, 4
# The colour scale as README documents it: -1 #0571b0, 0 #f7f7f7, +1 #ca0020, linear in RGB between.
BLUE, WHITE, RED = np.array([5, 113, 176]), np.array([247, 247, 247]), np.array([202, 0, 32])
TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # discrete track colours of classes 0, 1, 2


def expected_colour(v):
    v = float(np.clip(v, -1, 1))
    return WHITE + abs(v) * ((RED if v > 0 else BLUE) - WHITE)


@pytest.fixture(scope="module")
def project(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("preview")
    corpus = make_corpus(d / "corpus", n=5, max_tokens=30)
    out = export(models["last"], corpus, d / "proj", "--max-len", T)
    return {"out": out, "corpus": corpus}


def pixels(png):
    from PIL import Image

    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def known_values(out, doc):
    """Overwrite the document's states with a pattern of known values covering the whole scale."""
    values = np.linspace(-2.5, 2.5, T * CELLS).reshape(T, CELLS)
    values[0] = [0, 1, -1, 0.25]
    with h5py.File(os.path.join(out, "states.hdf5"), "a") as f:
        f["states1"][doc * T:(doc + 1) * T] = values
    return values


def test_heatmap_pixels_follow_known_state_values(project, tmp_path):
    out = shutil.copytree(project["out"], tmp_path / "proj")
    doc = 2
    values = known_values(out, doc)
    png = str(tmp_path / "doc.png")
    drawn = pv.preview(str(out), doc, png, padding=True)
    img = pixels(png)
    height = pv.TITLE + pv.WORDS + CELLS * pv.CELL + 1 * (pv.GAP + pv.CELL) + pv.BOTTOM  # one track: label
    assert img.shape == (height, pv.LEFT + T * pv.CELL + pv.RIGHT, 3)
    assert drawn["steps"] == list(range(T)) and drawn["cells"] == list(range(CELLS))
    top = pv.TITLE + pv.WORDS
    for step in range(T):
        for cell in range(CELLS):
            y, x = top + cell * pv.CELL + pv.CELL // 2, pv.LEFT + step * pv.CELL + pv.CELL // 2
            want = expected_colour(np.tanh(values[step, cell]))  # LSTMVis shows tanh(state)
            assert np.abs(img[y, x] - want).max() <= 1, (step, cell, img[y, x], want)
    track_y = top + CELLS * pv.CELL + pv.GAP + 1
    assert tuple(img[track_y, pv.LEFT + 1]) == TAB10[project["corpus"]["labels"][doc]]


def test_raw_values_chosen_cells_and_a_prediction_track(project, tmp_path):
    out = shutil.copytree(project["out"], tmp_path / "proj")
    doc = 2
    values = known_values(out, doc)
    p = np.linspace(0, 1, 5 * T)  # a per-timestep probability track, as a later exporter may add
    with h5py.File(out / "meta.hdf5", "a") as f:
        f["p1"] = p
    with open(out / "lstm.yml", "a", encoding="utf-8") as f:
        f.write("  p_positive: {file: meta, path: p1, vis: {type: scalar, range: [0, 1]}}\n")
    png = str(tmp_path / "raw.png")
    length = len(project["corpus"]["docs"][doc])
    assert 0 < length < T
    drawn = pv.preview(str(out), doc, png, cells="3,1", transform="none")
    assert drawn["steps"] == list(range(T - length, T))  # pre-padding: the document's tokens are last
    assert drawn["tracks"] == ["label", "p_positive"]
    img = pixels(png)
    assert img.shape == (pv.TITLE + pv.WORDS + 2 * pv.CELL + 2 * (pv.GAP + pv.CELL) + pv.BOTTOM,
                         max(pv.LEFT + length * pv.CELL + pv.RIGHT, pv.MIN_WIDTH), 3)
    top = pv.TITLE + pv.WORDS
    track_y = top + 2 * pv.CELL + 2 * pv.GAP + pv.CELL + pv.CELL // 2
    for i, step in enumerate(drawn["steps"]):
        x = pv.LEFT + i * pv.CELL + pv.CELL // 2
        for row, cell in enumerate([3, 1]):
            y = top + row * pv.CELL + pv.CELL // 2
            assert np.abs(img[y, x] - expected_colour(values[step, cell])).max() <= 1
        # scalar tracks: white at the range's low end, #54278f at the high end, linear between
        want = np.array([255, 255, 255]) + p[doc * T + step] * (np.array([84, 39, 143]) - 255)
        assert np.abs(img[track_y, x] - want).max() <= 1


def test_scale_ends_are_the_documented_colours():
    np.testing.assert_array_equal(pv.diverging(np.array([-7.0, -1.0, 0.0, 1.0, 3.0])),
                                  [BLUE, BLUE, WHITE, RED, RED])


def test_cli_writes_png_of_real_states(project, tmp_path, capsys):
    png = tmp_path / "out" / "p.png"
    assert main(["preview", project["out"], "--doc", "1", "--layer", "states1", "--png", str(png)]) == 0
    img = pixels(str(png))
    states = read(project["out"], "states.hdf5", "states1")[T:2 * T]
    length = len(project["corpus"]["docs"][1])
    y, x = pv.TITLE + pv.WORDS + pv.CELL // 2, pv.LEFT + pv.CELL // 2  # cell 0, first token
    assert np.abs(img[y, x] - expected_colour(np.tanh(states[T - length, 0]))).max() <= 1
    assert "wrote" in capsys.readouterr().err


def test_errors_name_the_fix(project, tmp_path, capsys, monkeypatch):
    assert main(["preview", project["out"], "--doc", "99", "--png", str(tmp_path / "x.png")]) == 2
    assert "outside the project's documents 0..4" in capsys.readouterr().err
    assert main(["preview", project["out"], "--doc", "0", "--cells", "9", "--png", str(tmp_path / "x.png")]) == 2
    assert "cells 0..3" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # as if not installed
    assert main(["preview", project["out"], "--doc", "0", "--png", str(tmp_path / "x.png")]) == 2
    assert "pip install 'stream_export[preview]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
