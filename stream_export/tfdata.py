"""Padded batches -> tf.data pipeline that reads ahead, and the state model run on each batch as a compiled function."""

from __future__ import annotations

import dataclasses

import numpy as np


class _Failure:
    """Carries an exception out of the tf.data generator thread (tf.data would turn it into a string)."""

    error: BaseException | None = None


def state_batches(batches, state_model, max_len: int, with_labels: bool, with_ids: bool, prefetch: int = 2,
                  grid: int | None = None):
    """Yield (Batch, [one numpy array per state-model output]) for every Batch from the iterable `batches`;
    floating outputs come as float32, integer ones (a predicted class) as int32.

    tf.data reads and pads the next batches in the background (`prefetch` of them); the model runs as a
    compiled function called from here, one batch ahead: batch i+1 is handed to it before batch i goes to
    the caller, so on a GPU (where the call returns at once) it computes while the caller writes. On the
    CPU the call computes there and then, with all the cores (the model inside tf.data's map instead ran at
    0.6-0.8x the speed, and erratically: tf.data's threads and the model's compete for them). At most two
    batches of states are held in memory.

    With grid=B (the batch size; batches never cross a multiple of B), the model always runs on B rows,
    each document at row first_doc % B of its batch, the rest padding: the matrix kernels then take the
    same path for a document whether it is exported alone, in a part of a sharded export or in the
    whole corpus, so its states are bit-identical (a smaller batch can round differently in the last bit)."""
    import tensorflow as tf

    from stream_export.reader import Batch

    failure = _Failure()

    def generate():
        try:
            for b in batches:
                # not dataclasses.asdict: it deep-copies every array
                d = {f.name: getattr(b, f.name) for f in dataclasses.fields(b) if getattr(b, f.name) is not None}
                if with_ids:
                    d["doc_ids"] = d["doc_ids"].astype(str).astype(object)
                yield d
        except BaseException as e:  # re-raised by the consumer once the good batches are through
            failure.error = e

    spec = {
        "first_doc": tf.TensorSpec((), tf.int64),
        "tokens": tf.TensorSpec((None, max_len), tf.int32),
        "lengths": tf.TensorSpec((None,), tf.int64),
        "source": tf.TensorSpec((None,), tf.int64),
    }
    if with_labels:
        spec["labels"] = tf.TensorSpec((None,), tf.int32)
    if with_ids:
        spec["doc_ids"] = tf.TensorSpec((None,), tf.string)
    input_dtype = state_model.inputs[0].dtype

    @tf.function(input_signature=[spec["tokens"], spec["first_doc"]])
    def predict(tokens, first_doc):
        tokens = tf.cast(tokens, input_dtype)
        if grid:
            n = tf.shape(tokens)[0]
            at = tf.cast(first_doc % grid, tf.int32)
            tokens = tf.pad(tokens, [[at, grid - at - n], [0, 0]])
        outputs = state_model(tokens, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        if grid:
            outputs = [o[at:at + n] for o in outputs]
        return tuple(tf.cast(o, tf.float32 if o.dtype.is_floating else tf.int32) for o in outputs)

    def handed_over(d, states):
        d = {k: v.numpy() for k, v in d.items()}
        d["first_doc"] = int(d["first_doc"])
        if with_ids:
            d["doc_ids"] = np.array([s.decode("utf-8") for s in d["doc_ids"]], dtype=object)
        return Batch(**{f.name: d.get(f.name) for f in dataclasses.fields(Batch)}), [s.numpy() for s in states]

    held = None  # the batch being computed while the one before it is written
    for d in tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(prefetch):
        states = predict(d["tokens"], d["first_doc"])
        if held is not None:
            yield handed_over(*held)
        held = d, states
    if held is not None:
        yield handed_over(*held)
    if failure.error is not None:
        raise failure.error
