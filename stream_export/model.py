"""Load a Keras model and cut it into a state model: one per-timestep output per recurrent layer
(TensorFlow only here and in tfdata.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from stream_export.errors import ConfigError, ModelError

RECURRENT_CLASSES = ("LSTM", "GRU", "SimpleRNN")


@dataclass(frozen=True)
class StateLayer:
    """One exported recurrent layer."""

    name: str
    kind: str
    """Keras class name: LSTM, GRU or SimpleRNN."""
    units: int
    rebuilt: bool
    """True when the layer was trained with return_sequences=False and rebuilt to return every step."""


def load_model(path: str):
    import keras

    if not os.path.exists(path):
        raise ModelError(f"model file {path} does not exist")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, OSError, zipfile errors, ... for bad files
        raise ModelError(f"model file {path} cannot be loaded by Keras {keras.__version__}: "
                         f"{type(e).__name__}: {e}. Save it with model.save('model.keras') under Keras 3") from e


def recurrent_layers(model) -> list:
    """The model's recurrent layers in graph order, input to output."""
    return [layer for layer in model.layers if type(layer).__name__ in RECURRENT_CLASSES]


def input_length(model) -> int | None:
    """The fixed number of timesteps of the model's input, or None when it accepts any length."""
    shape = tuple(model.inputs[0].shape)
    return shape[1] if len(shape) >= 2 else None


def max_token_id(model) -> int | None:
    """The largest token id the model's first Embedding accepts (input_dim - 1), if it has one."""
    for layer in model.layers:
        if type(layer).__name__ == "Embedding":
            return layer.input_dim - 1
    return None


def build_state_model(model, names=None):
    """Return (state_model, [StateLayer]): a keras.Model from the model's input to the per-timestep
    hidden states of the chosen recurrent layers (all of them when names is None), in graph order.

    Keras 3 ignores `model.layers.pop()`, so the model is cut by building a new graph. A layer trained
    with return_sequences=False is replayed, with its weights and its original call arguments (the mask
    among them), as a copy that returns every step; its last step equals the original's output."""
    import keras

    if len(model.inputs) != 1:
        raise ModelError(f"the model has {len(model.inputs)} inputs; stream_export feeds one token-id input")
    found = recurrent_layers(model)
    if not found:
        kinds = ", ".join(f"{l.name} ({type(l).__name__})" for l in model.layers)
        raise ModelError(f"the model has no recurrent layer ({', '.join(RECURRENT_CLASSES)}); its layers "
                         f"are {kinds}")
    if names:
        by_name = {layer.name: layer for layer in found}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"--layers names {', '.join(unknown)}, which the model has not as a recurrent "
                              f"layer; choose from {', '.join(by_name)}")
        found = [layer for layer in found if layer.name in names]
    outputs, info = [], []
    for layer in found:
        if len(layer._inbound_nodes) != 1:
            raise ModelError(f"layer {layer.name} is called {len(layer._inbound_nodes)} times in the model; "
                             "a shared recurrent layer has no single sequence of states to export")
        rebuilt = not layer.return_sequences
        if rebuilt or layer.return_state:
            config = dict(layer.get_config(), return_sequences=True, return_state=False,
                          name=layer.name + "_sequences")
            copy = type(layer).from_config(config)
            node = layer._inbound_nodes[0]
            out = copy(*node.arguments.args, **node.arguments.kwargs)
            copy.set_weights(layer.get_weights())
        else:
            out = layer.output
        outputs.append(out)
        info.append(StateLayer(layer.name, type(layer).__name__, int(layer.units), rebuilt))
    return keras.Model(model.inputs[0], outputs), info
