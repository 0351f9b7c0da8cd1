"""A Keras 2 .h5 model file written by hand: the model_config text is verbatim what tf.keras 2 saved for
tools/legacy_keras2_model.py (it has `time_major` in every recurrent layer and calls the nested Sequential
as its node 1, both of which Keras 3 refuses), and the weights are laid out as Keras 2 lays them out."""

import h5py
import numpy as np

KERAS_VERSION = "2.21.0"
MODEL_CONFIG = (
    '{"class_name":"Functional","config":{"name":"model","trainable":true,"layers":[{"class_name":"InputL'
    'ayer","config":{"batch_input_shape":[null,6],"dtype":"int32","sparse":false,"ragged":false,"name":"i'
    'nput_1","optional":false},"name":"input_1","inbound_nodes":[]},{"class_name":"Embedding","config":{"'
    'name":"embedding","trainable":true,"dtype":"float32","batch_input_shape":[null,null],"input_dim":30,'
    '"output_dim":4,"embeddings_initializer":{"module":"keras.initializers","class_name":"RandomUniform",'
    '"config":{"minval":-0.05,"maxval":0.05,"seed":null},"registered_name":null},"embeddings_regularizer"'
    ':null,"activity_regularizer":null,"embeddings_constraint":null,"mask_zero":true,"input_length":null}'
    ',"name":"embedding","inbound_nodes":[[["input_1",0,0,{}]]]},{"class_name":"LSTM","config":{"name":"l'
    'stm","trainable":true,"dtype":"float32","return_sequences":true,"return_state":false,"go_backwards":'
    'false,"stateful":false,"unroll":false,"time_major":false,"units":5,"activation":"tanh","recurrent_ac'
    'tivation":"sigmoid","use_bias":true,"kernel_initializer":{"module":"keras.initializers","class_name"'
    ':"GlorotUniform","config":{"seed":null},"registered_name":null},"recurrent_initializer":{"module":"k'
    'eras.initializers","class_name":"Orthogonal","config":{"gain":1.0,"seed":null},"registered_name":nul'
    'l},"bias_initializer":{"module":"keras.initializers","class_name":"Zeros","config":{},"registered_na'
    'me":null},"unit_forget_bias":true,"kernel_regularizer":null,"recurrent_regularizer":null,"bias_regul'
    'arizer":null,"activity_regularizer":null,"kernel_constraint":null,"recurrent_constraint":null,"bias_'
    'constraint":null,"dropout":0.0,"recurrent_dropout":0.0,"implementation":2},"name":"lstm","inbound_no'
    'des":[[["embedding",0,0,{}]]]},{"class_name":"Bidirectional","config":{"name":"bi","trainable":true,'
    '"dtype":"float32","layer":{"module":"keras.layers","class_name":"GRU","config":{"name":"gru","traina'
    'ble":true,"dtype":"float32","return_sequences":true,"return_state":false,"go_backwards":false,"state'
    'ful":false,"unroll":false,"time_major":false,"units":3,"activation":"tanh","recurrent_activation":"s'
    'igmoid","use_bias":true,"kernel_initializer":{"module":"keras.initializers","class_name":"GlorotUnif'
    'orm","config":{"seed":null},"registered_name":null},"recurrent_initializer":{"module":"keras.initial'
    'izers","class_name":"Orthogonal","config":{"gain":1.0,"seed":null},"registered_name":null},"bias_ini'
    'tializer":{"module":"keras.initializers","class_name":"Zeros","config":{},"registered_name":null},"k'
    'ernel_regularizer":null,"recurrent_regularizer":null,"bias_regularizer":null,"activity_regularizer":'
    'null,"kernel_constraint":null,"recurrent_constraint":null,"bias_constraint":null,"dropout":0.0,"recu'
    'rrent_dropout":0.0,"implementation":2,"reset_after":false},"registered_name":null},"merge_mode":"con'
    'cat"},"name":"bi","inbound_nodes":[[["lstm",0,0,{}]]]},{"class_name":"Sequential","config":{"name":"'
    'inner","layers":[{"class_name":"InputLayer","config":{"batch_input_shape":[null,6,6],"dtype":"float3'
    '2","sparse":false,"ragged":false,"name":"input_2","optional":false}},{"class_name":"SimpleRNN","conf'
    'ig":{"name":"srnn","trainable":true,"dtype":"float32","return_sequences":true,"return_state":false,"'
    'go_backwards":false,"stateful":false,"unroll":false,"time_major":false,"units":2,"activation":"tanh"'
    ',"use_bias":true,"kernel_initializer":{"module":"keras.initializers","class_name":"GlorotUniform","c'
    'onfig":{"seed":null},"registered_name":null},"recurrent_initializer":{"module":"keras.initializers",'
    '"class_name":"Orthogonal","config":{"gain":1.0,"seed":null},"registered_name":null},"bias_initialize'
    'r":{"module":"keras.initializers","class_name":"Zeros","config":{},"registered_name":null},"kernel_r'
    'egularizer":null,"recurrent_regularizer":null,"bias_regularizer":null,"activity_regularizer":null,"k'
    'ernel_constraint":null,"recurrent_constraint":null,"bias_constraint":null,"dropout":0.0,"recurrent_d'
    'ropout":0.0}}]},"name":"inner","inbound_nodes":[[["bi",0,0,{}]]]},{"class_name":"TimeDistributed","c'
    'onfig":{"name":"td","trainable":true,"dtype":"float32","layer":{"module":"keras.layers","class_name"'
    ':"Dense","config":{"name":"dense","trainable":true,"dtype":"float32","units":3,"activation":"softmax'
    '","use_bias":true,"kernel_initializer":{"module":"keras.initializers","class_name":"GlorotUniform","'
    'config":{"seed":null},"registered_name":null},"bias_initializer":{"module":"keras.initializers","cla'
    'ss_name":"Zeros","config":{},"registered_name":null},"kernel_regularizer":null,"bias_regularizer":nu'
    'll,"activity_regularizer":null,"kernel_constraint":null,"bias_constraint":null},"registered_name":nu'
    'll,"build_config":{"input_shape":[null,2]}}},"name":"td","inbound_nodes":[[["inner",1,0,{}]]]}],"inp'
    'ut_layers":[["input_1",0,0]],"output_layers":[["td",0,0]]}}'
)
"""Input (6 int32 token ids) -> Embedding(30, 4, mask_zero=True) -> LSTM(5) 'lstm' -> Bidirectional(GRU(3,
reset_after=False)) 'bi' -> Sequential 'inner' [SimpleRNN(2) 'srnn'] -> TimeDistributed(Dense(3, softmax)) 'td',
every recurrent layer with return_sequences=True."""

SHAPES = {
    "embedding": [("embedding/embeddings:0", (30, 4))],
    "lstm": [("lstm/lstm_cell/kernel:0", (4, 20)), ("lstm/lstm_cell/recurrent_kernel:0", (5, 20)),
             ("lstm/lstm_cell/bias:0", (20,))],
    "bi": [(f"bi/{d}_gru/gru_cell/{w}:0", s) for d in ("forward", "backward")
           for w, s in (("kernel", (5, 9)), ("recurrent_kernel", (3, 9)), ("bias", (9,)))],
    "inner": [("srnn/simple_rnn_cell/kernel:0", (6, 2)), ("srnn/simple_rnn_cell/recurrent_kernel:0", (2, 2)),
              ("srnn/simple_rnn_cell/bias:0", (2,))],
    "td": [("td/kernel:0", (2, 3)), ("td/bias:0", (3,))],
}
LAYER_NAMES = ["input_1", "embedding", "lstm", "bi", "inner", "td"]


def write_keras2_h5(path, seed=0) -> dict:
    """Write the model with random weights; return {layer name: [arrays in Keras weight order]}."""
    rng = np.random.default_rng(seed)
    weights = {}
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["model_config"] = "".join(MODEL_CONFIG)
        group = f.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = KERAS_VERSION
        group.attrs["layer_names"] = np.array([n.encode() for n in LAYER_NAMES])
        for name in LAYER_NAMES + ["top_level_model_weights"]:
            layer = group.create_group(name)
            shapes = SHAPES.get(name, [])
            layer.attrs["weight_names"] = np.array([w.encode() for w, _ in shapes])
            weights[name] = []
            for weight_name, shape in shapes:
                value = (rng.normal(size=shape) * 0.6).astype(np.float32)
                layer.create_dataset(weight_name, data=value)
                weights[name].append(value)
    return weights
