"""./tools/demo on the real Rotten Tomatoes corpus, at reduced size: the real-data path stays green."""

import glob
import json
import os
import subprocess

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_exports_the_real_corpus(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, DEMO_DOCS="1500", DEMO_EPOCHS="1", DEMO_CACHE=str(cache))
    p = subprocess.run([os.path.join(ROOT, "tools", "demo"), str(tmp_path / "data")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    project = tmp_path / "data" / "rotten_tomatoes"
    assert f"The LSTMVis project is in {project}" in p.stdout
    summary = json.loads((tmp_path / "data" / "summary.json").read_text())
    assert summary["documents"] == 1500

    import keras

    docs = [d for f in sorted(glob.glob(str(cache / "corpus" / "*.parquet")))
            for d in pq.read_table(f).column("tokens").to_pylist()]
    assert len(docs) == 1500
    model = keras.models.load_model(cache / "model.keras", compile=False)
    padded = keras.utils.pad_sequences(docs[:200], maxlen=60)
    expected = keras.Model(model.inputs, model.get_layer("lstm").output).predict(padded, verbose=0)
    with h5py.File(project / "states.hdf5") as f:
        states = f["states1"][: 200 * 60]
    with h5py.File(project / "train.hdf5") as f:
        assert f["words"].shape == (1500 * 60,)
        np.testing.assert_array_equal(f["words"][: 200 * 60], padded.flatten())
    assert np.abs(states - expected.reshape(-1, 32)).max() <= 1e-5
    labels = (project / "labels.dict").read_text().split()
    assert labels == ["fresh", "0", "rotten", "1", "plot", "2"]
