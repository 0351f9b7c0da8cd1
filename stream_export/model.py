"""Load a Keras model and cut it into a state model whose outputs are the datasets to write: per-timestep
hidden states of its recurrent layers, optionally LSTM cell states and the model's own predictions
(TensorFlow only here and in tfdata.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass

from stream_export.errors import ConfigError, ModelError

RECURRENT_CLASSES = ("LSTM", "GRU", "SimpleRNN")
MAX_CLASSES = 64
"""--predictions writes one meta track per class; more than this is a vocabulary, not a set of classes."""
LEGACY_KEYS = ("time_major",)
"""Keras 2 layer arguments that Keras 3 refuses and that never changed what a layer computes."""


@dataclass(frozen=True)
class StateLayer:
    """One exported recurrent layer (a Bidirectional wrapper counts as one)."""

    name: str
    """Its name; 'outer/inner' for a layer inside a nested model."""
    kind: str
    """Keras class name of the recurrent layer: LSTM, GRU or SimpleRNN."""
    units: int
    rebuilt: bool
    """True when the layer was trained with return_sequences=False and rebuilt to return every step."""
    bidirectional: bool = False
    go_backwards: bool = False
    cells: bool = False
    """True when its cell states are exported too."""


@dataclass(frozen=True)
class Output:
    """One output of the state model and the dataset it fills, row t of a document being token t."""

    file: str
    """Key of the file in writer.FILES: 'states' or 'meta'."""
    path: str
    """Dataset path in that file, e.g. states1, cells2_bw, predictions/p0."""
    cells: int | None
    """Values per row; None for a 1-D meta track."""
    dtype: str
    kind: str
    """'state' (hidden state h), 'cell' (LSTM cell state c), 'probability' or 'class'."""
    layer: int | None
    """k of the exported layer (1 = nearest the input), None for predictions."""
    source: str
    """The layer (or 'model output') it comes from, for messages."""


@dataclass(frozen=True)
class StateModel:
    model: object
    """keras.Model from token ids to the outputs, in the order of `outputs`."""
    layers: list
    outputs: list
    notes: list
    """Things the user should know (e.g. layers that have no cell state), one sentence each."""


def load_model(path: str):
    """Load a .keras file, a Keras 3 or legacy Keras 2 .h5 file, or a SavedModel Keras can read."""
    import keras

    if not os.path.exists(path):
        raise ModelError(f"model file {path} does not exist")
    if os.path.isdir(path):
        return _load_saved_model(path)
    if _is_hdf5(path):
        return _load_h5(path)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors, ... for bad files
        raise ModelError(f"model file {path} cannot be loaded by Keras {keras.__version__}: "
                         f"{type(e).__name__}: {e}. Save it with model.save('model.keras') under Keras 3") from e


def _is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _load_h5(path):
    """Keras 3 refuses Keras 2 .h5 files over arguments it dropped (`time_major`) and misreads calls of a
    nested Sequential; both are fixed in the model config of a temporary copy, the weights are untouched."""
    import h5py
    import keras

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        version = f.attrs.get("keras_version", b"")
    if raw is None:
        raise ModelError(f"{path} holds weights only (no model config): build the model in code, call "
                         "load_weights on this file, and save it with model.save('model.keras')")
    version = version.decode() if isinstance(version, bytes) else str(version)
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    changed = _strip_legacy_keys(config)
    if version.startswith("2."):
        changed |= _fix_nested_sequential_nodes(config)
    where = f"model file {path} (saved by Keras {version or 'unknown'})"
    with tempfile.TemporaryDirectory(prefix="stream_export_") as tmp:
        load_path = path
        if changed:
            load_path = os.path.join(tmp, "model.h5")
            shutil.copyfile(path, load_path)
            with h5py.File(load_path, "r+") as f:
                f.attrs["model_config"] = json.dumps(config)
        try:
            return keras.models.load_model(load_path, compile=False)
        except Exception as e:
            raise ModelError(f"{where} cannot be loaded by Keras {keras.__version__}: {type(e).__name__}: {e}. "
                             "Load it where it was made and save it again with model.save('model.keras') "
                             "(Keras 3) or model.save('model.h5') (recent Keras 2)") from e


def _strip_legacy_keys(node) -> bool:
    """Remove LEGACY_KEYS from every layer config in a model config; True if any was there."""
    changed = False
    if isinstance(node, dict):
        inner = node.get("config")
        if "class_name" in node and isinstance(inner, dict):
            for key in LEGACY_KEYS:
                if key in inner:
                    del inner[key]
                    changed = True
        for value in node.values():
            changed |= _strip_legacy_keys(value)
    elif isinstance(node, list):
        for value in node:
            changed |= _strip_legacy_keys(value)
    return changed


def _fix_nested_sequential_nodes(model_config) -> bool:
    """Keras 2 gave a Sequential built with an input shape a node of its own before it was called, so calls
    of it inside a functional model are its node 1, 2, ...; in Keras 3 they are node 0, 1, ..."""
    changed = False
    config = model_config.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return False
    built = {layer["name"] for layer in config["layers"] if layer.get("class_name") == "Sequential"
             and any(inner.get("class_name") == "InputLayer" for inner in layer["config"].get("layers", []))}

    def shift(ref):
        nonlocal changed
        if isinstance(ref, list) and len(ref) >= 3 and ref[0] in built and isinstance(ref[1], int) and ref[1] > 0:
            ref[1] -= 1
            changed = True

    for layer in config["layers"]:
        changed |= _fix_nested_sequential_nodes(layer)
        for node in layer.get("inbound_nodes", []):
            for ref in node if isinstance(node, list) else []:
                shift(ref)
    outputs = config.get("output_layers", [])
    for ref in outputs if outputs and isinstance(outputs[0], list) else [outputs]:
        shift(ref)
    return changed


def _load_saved_model(path):
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        if os.path.exists(os.path.join(path, "keras_metadata.pb")):
            fix = ("it was saved by Keras 2 (tf.keras); load it there and save it again as a file: "
                   f"tf.keras.models.load_model({path!r}).save('model.h5'), then pass model.h5")
        elif os.path.exists(os.path.join(path, "saved_model.pb")):
            fix = ("it holds only a serving function (model.export or tf.saved_model.save), no Keras layers "
                   "whose states could be read; pass the .keras or .h5 file of the model instead")
        else:
            fix = "it is not a SavedModel either; pass the model's .keras or .h5 file"
        raise ModelError(f"model {path} is a directory that Keras {keras.__version__} cannot load as a model: "
                         f"{fix}") from e


def walk(model, prefix=""):
    """(path, layer) for every layer of the model, descending into nested models, in graph order."""
    import keras

    for layer in model.layers:
        path = prefix + layer.name
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk(layer, path + "/")


def _recurrent(layer) -> str | None:
    """The recurrent class name of a layer (of the wrapped layer for Bidirectional), else None."""
    inner = layer.forward_layer if type(layer).__name__ == "Bidirectional" else layer
    kind = type(inner).__name__
    return kind if kind in RECURRENT_CLASSES else None


def recurrent_layers(model) -> list[tuple[str, object]]:
    """(path, layer) of the model's recurrent layers, nested ones included, input to output."""
    return [(path, layer) for path, layer in walk(model) if _recurrent(layer)]


def input_length(model) -> int | None:
    """The fixed number of timesteps of the model's input, or None when it accepts any length."""
    shape = tuple(_inputs(model)[0].shape)
    return shape[1] if len(shape) >= 2 else None


def max_token_id(model) -> int | None:
    """The largest token id the model's first Embedding accepts (input_dim - 1), if it has one."""
    for _, layer in walk(model):
        if type(layer).__name__ == "Embedding":
            return layer.input_dim - 1
    return None


def _inputs(model):
    try:
        return model.inputs
    except (AttributeError, ValueError) as e:
        raise ModelError(f"model {model.name} has no defined input (a Sequential that was never built); "
                         "build it with model.build((None, timesteps)) before saving it") from e


def select_layers(model, names=None) -> list[tuple[str, object]]:
    """The recurrent layers to export: all of them, or those named (by name or nested path)."""
    found = recurrent_layers(model)
    if not found:
        kinds = ", ".join(f"{path} ({type(layer).__name__})" for path, layer in walk(model))
        raise ModelError(f"the model has no recurrent layer ({', '.join(RECURRENT_CLASSES)}, or one of them "
                         f"inside Bidirectional); its layers are {kinds}")
    if not names:
        return found
    everything = list(walk(model))
    chosen = []
    for name in names:
        match = [(p, l) for p, l in everything if name in (p, l.name)]
        if not match:
            raise ConfigError(f"--layers names {name}, which the model does not have; its recurrent layers "
                              f"are {', '.join(p for p, _ in found)}")
        if len(match) > 1:
            raise ConfigError(f"--layers name {name} is ambiguous ({', '.join(p for p, _ in match)}); give the "
                              "path of the one you mean")
        path, layer = match[0]
        if not _recurrent(layer):
            raise ConfigError(f"--layers names {path}, a {type(layer).__name__} layer, which is not recurrent; "
                              f"choose from {', '.join(p for p, _ in found)}")
        chosen.append(id(layer))
    return [(p, l) for p, l in found if id(l) in chosen]


def build_state_model(model, names=None, *, cell_states=False, predictions=False,
                      timesteps=None) -> StateModel:
    """Cut `model` into a StateModel: a keras.Model from the model's token-id input to one output per
    dataset. For exported layer k, in input-to-output order: states{k} (h at every step) and with
    cell_states cells{k} (c, LSTM only); a Bidirectional layer gives states{k}_fw and states{k}_bw instead.
    With predictions, the model's own per-timestep output gives one probability track per class and the
    predicted class.

    Row t of every output belongs to token t, whatever the direction a layer runs in. Where the model masks
    the input (Embedding(mask_zero=True), Masking), every state is 0 at masked positions, for every layer
    type; Keras itself would repeat the last state in some layers and give zeros in others.

    The model's graph is replayed on a new input: every layer, nested models included, is called as in the
    model (with its original arguments, the mask among them), and the states are taken beside it. A layer
    trained with return_sequences=False is replayed as a copy that returns every step; cell states come
    from the layer's own cell run inside a keras.layers.RNN that emits [h, c] per step (Keras returns only
    the last c, and this path cannot use the fused cuDNN kernel); hidden states alone keep whatever kernel
    Keras picks. Before anything is written, the result is checked on a probe batch: each direction's
    state at its last processed token must equal the layer's own final state."""
    import keras

    inputs = _inputs(model)
    if len(inputs) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs; stream_export feeds one token-id input")
    chosen = select_layers(model, names)
    wanted = {id(layer): path for path, layer in chosen}
    for path, layer in chosen:
        for sub in _directions(layer):
            if getattr(sub, "stateful", False):
                raise ModelError(f"layer {path} is stateful: its states would depend on the batches exported "
                                 "before; rebuild it with stateful=False and the same weights")
    calls = {}

    def hook(op):
        if isinstance(op, keras.Model):
            def nested(*args, **kwargs):
                _replay(op, args[0], kwargs.get("mask"), hook)  # for the states inside it
                return op(*args, **kwargs)  # what the model itself computes, for the layers after it
            return nested
        if id(op) in wanted:
            def recurrent(*args, **kwargs):
                out = op(*args, **kwargs)
                calls.setdefault(id(op), []).append((args, kwargs, out))
                return out
            return recurrent
        return op

    new_input = keras.Input(batch_shape=inputs[0].shape, dtype=inputs[0].dtype, name=_unique_name("tokens"))
    model_output = _replay(model, new_input, None, hook)

    layers, outputs, tensors, checks, notes = [], [], [], [], []
    no_cells = []
    for k, (path, layer) in enumerate(chosen, 1):
        if id(layer) not in calls:
            raise ModelError(f"layer {path} is not connected to the model's input; it has no states to export")
        if len(calls[id(layer)]) != 1:
            raise ModelError(f"layer {path} is called {len(calls[id(layer)])} times in the model; a shared "
                             "recurrent layer has no single sequence of states to export")
        args, kwargs, out = calls[id(layer)][0]
        kind = _recurrent(layer)
        bidirectional = type(layer).__name__ == "Bidirectional"
        with_cells = cell_states and kind == "LSTM"
        if cell_states and not with_cells:
            no_cells.append(f"{path} ({kind})")
        directions = _directions(layer)
        for sub, suffix in zip(directions, ("_fw", "_bw") if bidirectional else ("",)):
            if bidirectional and kwargs.get("initial_state") is not None:
                raise ModelError(f"layer {path} is a Bidirectional layer called with an initial state; "
                                 "stream_export cannot replay it")
            h, c, final = _per_step(sub, args, kwargs, None if bidirectional else out, with_cells)
            for name, kind_, value in (("states", "state", h), ("cells", "cell", c)):
                if value is not None:
                    outputs.append(Output("states", f"{name}{k}{suffix}", int(sub.units), "float32", kind_, k,
                                          path + suffix))
                    tensors.append(value)
            checks.append((path + suffix, sub.go_backwards, len(tensors) - (2 if with_cells else 1), final))
        layers.append(StateLayer(path, kind, int(directions[0].units), rebuilt=not layer.return_sequences,
                                 bidirectional=bidirectional, cells=with_cells,
                                 go_backwards=not bidirectional and bool(layer.go_backwards)))
    if no_cells:
        notes.append(f"--cell-states: {', '.join(no_cells)} {'has' if len(no_cells) == 1 else 'have'} no "
                     "cell state separate from the hidden state; only hidden states are exported for "
                     f"{'it' if len(no_cells) == 1 else 'them'}")
    if predictions:
        for output, tensor in _prediction_tracks(model_output, new_input):
            outputs.append(output)
            tensors.append(tensor)
    _probe(keras.Model(new_input, tensors + [t for *_, final in checks for t in final]), outputs, checks,
           timesteps or input_length(model), max_token_id(model))
    return StateModel(keras.Model(new_input, tensors), layers, outputs, notes)


def _directions(layer):
    if type(layer).__name__ == "Bidirectional":
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _replay(model, inputs, mask, hook):
    """Run `model`'s graph on new symbolic inputs, calling hook(op) for the callable of every operation."""
    import keras

    graph = model
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ModelError(f"nested Sequential {model.name} was never built, so its graph is unknown; build "
                             "it with an Input before using it in the model")
    if mask is not None and not isinstance(inputs, (list, tuple, dict)):
        inputs._keras_mask = mask  # as Functional.call does for a nested model
    return graph._run_through_graph(inputs, operation_fn=hook)


def _per_step(layer, args, kwargs, out, with_cells):
    """(h, c or None, [final h, final c]) of one recurrent layer (one direction), h and c with row t = token t
    and zeros where the input is masked; `out` is the layer's own output in the model, reused when it
    already holds every step."""
    import keras
    from keras import ops

    mask = kwargs.get("mask")
    if mask is None:
        mask = getattr(args[0], "_keras_mask", None)  # where Keras keeps a symbolic tensor's mask
    config = layer.get_config()
    units = int(layer.units)
    c = None
    if with_cells:
        rnn = keras.layers.RNN(_emitting_cell(layer.cell), return_sequences=True, go_backwards=layer.go_backwards,
                               unroll=layer.unroll, name=_unique_name(layer.name + "_cells"))
        hc = rnn(*args, **kwargs)
        h, c = hc[..., :units], hc[..., units:]
    elif out is not None and layer.return_sequences and not layer.return_state:
        h = out
    else:
        copy = type(layer).from_config(dict(config, return_sequences=True, return_state=False,
                                            name=_unique_name(layer.name + "_sequences")))
        h = copy(*args, **kwargs)
        copy.set_weights(layer.get_weights())
    final_layer = type(layer).from_config(dict(config, return_sequences=False, return_state=True,
                                               name=_unique_name(layer.name + "_final")))
    final = final_layer(*args, **kwargs)
    final_layer.set_weights(layer.get_weights())
    final = list(final[1:])  # the states: [h] or, for LSTM, [h, c]
    sequences = []
    for value in (h, c):
        if value is not None:
            if layer.go_backwards:
                value = ops.flip(value, axis=1)  # checked by _probe, not assumed
            if mask is not None:
                value = ops.where(ops.expand_dims(mask, -1), value, ops.zeros_like(value))
        sequences.append(value)
    return sequences[0], sequences[1], final[:2 if with_cells else 1]


_EMITTING = {}
_COUNTER = itertools.count(1)


def _unique_name(base):
    """A layer name no model layer has: Keras 3 refuses a graph with two operations of one name."""
    return f"stream_export_{next(_COUNTER)}_{base}"


def _emitting_cell(cell):
    """Wrap an LSTM cell so that its per-step output is [h, c] (the state itself is unchanged)."""
    if "class" not in _EMITTING:
        import keras
        from keras import ops

        class EmittingCell(keras.layers.Layer):
            def __init__(self, cell, **kwargs):
                super().__init__(**kwargs)
                self.cell = cell
                self.state_size = cell.state_size
                self.output_size = 2 * cell.units

            def build(self, input_shape):
                self.built = True  # the wrapped cell is built and holds the weights

            def call(self, inputs, states, training=False):
                _, new_states = self.cell(inputs, states, training=training)
                return ops.concatenate([new_states[0], new_states[1]], axis=-1), new_states

            def get_initial_state(self, batch_size=None):
                return self.cell.get_initial_state(batch_size)

        _EMITTING["class"] = EmittingCell
    return _EMITTING["class"](cell, name=_unique_name(cell.name))


def _prediction_tracks(output, model_input):
    """(Output, tensor) for each class probability and the predicted class, from the model's output."""
    from keras import ops

    if isinstance(output, (list, tuple)) and len(output) == 1:
        output = output[0]
    if isinstance(output, (list, tuple, dict)):
        raise ModelError(f"--predictions needs a model with one output; this one has {len(output)}")
    shape = tuple(output.shape)
    if len(shape) != 3 or shape[1] != model_input.shape[1]:
        raise ModelError(f"--predictions needs an output with a value per timestep, shape (batch, timesteps, "
                         f"classes) as TimeDistributed(Dense) gives; the model's output has shape {shape}")
    classes = shape[2]
    if classes > MAX_CLASSES:
        raise ModelError(f"the model's output has {classes} values per timestep; --predictions writes one "
                         f"track per class and takes at most {MAX_CLASSES} (a language model's softmax over a "
                         "vocabulary is not a set of classes)")
    tracks = []
    for j in range(classes):
        tracks.append((Output("meta", f"predictions/p{j}", None, "float32", "probability", None,
                              "model output"), output[:, :, j]))
    predicted = ops.argmax(output, axis=-1) if classes > 1 else ops.greater_equal(output[:, :, 0], 0.5)
    tracks.append((Output("meta", "predictions/class", None, "int32", "class", None, "model output"),
                   ops.cast(predicted, "int32")))
    return tracks


def _probe(check_model, outputs, checks, timesteps, max_token):
    """Run the state model on a small batch of random tokens (no padding) and refuse to go on if a state is
    not aligned to its token or if a layer's states look like class probabilities."""
    import numpy as np

    if not timesteps:
        return
    high = max(2, min(max_token or 1, 1000) + 1)
    tokens = np.random.default_rng(0).integers(1, high, size=(2, timesteps))
    values = check_model(tokens.astype(check_model.inputs[0].dtype), training=False)
    values = [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    finals = values[len(outputs):]
    for o, v in zip(outputs, values):
        if o.kind == "state" and o.cells > 1 and (v >= 0).all() and np.abs(v.sum(-1) - 1).max() < 1e-4:
            raise ModelError(f"layer {o.source}: every row of its states sums to one, so they are class "
                             "probabilities (a softmax activation), not hidden states; export the layers below "
                             "it with --layers, and its output with --predictions")
    at = 0
    for name, backwards, index, final in checks:
        row = 0 if backwards else -1
        for j, expected in enumerate(finals[at:at + len(final)]):
            got = values[index + j][:, row]
            diff = float(np.abs(got - expected).max())
            if diff > 1e-4 + 1e-3 * float(np.abs(expected).max()):
                what = "cell state" if j else "hidden state"
                raise ModelError(f"layer {name}: the {what} exported for token {timesteps - 1 if row else 0} "
                                 f"differs by {diff:.3g} from the layer's own final state, so states cannot be "
                                 "aligned to tokens reliably with this Keras version; please report it")
        at += len(final)
