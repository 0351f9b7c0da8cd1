"""Write a real Keras 2 .h5 model file with tf.keras, to check what stream_export does with such files.

Keras 2 (tf-keras) cannot live in the project's environment beside Keras 3, so run this in a throwaway venv
that reuses the project's TensorFlow and adds only tf-keras (the release matching TensorFlow's version):

    python3 -m venv /tmp/keras2
    .venv/bin/python -c 'import site; print(site.getsitepackages()[0])' \\
        > "$(/tmp/keras2/bin/python -c 'import site; print(site.getsitepackages()[0])')/project.pth"
    /tmp/keras2/bin/pip install --no-deps "tf-keras~=2.21.0"
    TF_USE_LEGACY_KERAS=1 /tmp/keras2/bin/python tools/legacy_keras2_model.py /tmp/legacy

It writes legacy.h5 (Embedding(mask_zero=True) -> LSTM -> Bidirectional(GRU, reset_after=False) -> a nested
Sequential holding a SimpleRNN -> TimeDistributed(Dense softmax)), tokens.npy (a pre- and a post-padded
document) and predictions.npy (the Keras 2 model's output on them), and prints the file's model_config
attribute as compact JSON. tests/legacy_keras2.py keeps that text verbatim and writes the same HDF5 layout
by hand, so the test suite needs no Keras 2. Then compare, under Keras 3:

    stream-export export --model /tmp/legacy/legacy.h5 --predictions ...   (or, in Python:)
    stream_export.model.load_model('/tmp/legacy/legacy.h5').predict(np.load('/tmp/legacy/tokens.npy'))
"""

import json
import os
import sys

import numpy as np


def main(out):
    import tf_keras as keras
    from tf_keras import layers

    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(1)
    inp = keras.Input(shape=(6,), dtype="int32")
    x = layers.Embedding(30, 4, mask_zero=True)(inp)
    x = layers.LSTM(5, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.GRU(3, return_sequences=True, reset_after=False), name="bi")(x)
    inner = keras.Sequential([keras.Input((6, 6)), layers.SimpleRNN(2, return_sequences=True, name="srnn")],
                             name="inner")
    x = inner(x)
    x = layers.TimeDistributed(layers.Dense(3, activation="softmax"), name="td")(x)
    model = keras.Model(inp, x)
    model.save(os.path.join(out, "legacy.h5"))
    tokens = np.array([[0, 0, 1, 2, 3, 4], [5, 6, 7, 0, 0, 0]], dtype=np.int32)
    np.save(os.path.join(out, "tokens.npy"), tokens)
    np.save(os.path.join(out, "predictions.npy"), model.predict(tokens, verbose=0))
    import h5py

    with h5py.File(os.path.join(out, "legacy.h5"), "r") as f:
        print(json.dumps(json.loads(f.attrs["model_config"]), separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "legacy-keras2")
