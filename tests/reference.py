"""Independent numpy implementations of the Keras recurrent equations, from a layer's own weights."""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm(x, kernel, recurrent, bias):
    """x: (n, T, d). Returns h and c at every step, each (n, T, units). Gate order i, f, c, o (Keras)."""
    n, t_steps, _ = x.shape
    units = recurrent.shape[0]
    h = np.zeros((n, units))
    c = np.zeros((n, units))
    hs, cs = [], []
    for t in range(t_steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs, 1), np.stack(cs, 1)


def gru(x, kernel, recurrent, bias, reset_after=True):
    """Keras GRU (gate order z, r, h); bias is (2, 3u) with reset_after, else (3u,)."""
    n, t_steps, _ = x.shape
    units = recurrent.shape[0]
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    h = np.zeros((n, units))
    hs = []
    for t in range(t_steps):
        xz, xr, xh = np.split(x[:, t] @ kernel + b_in, 3, axis=1)
        if reset_after:
            rz, rr, rh = np.split(h @ recurrent + b_rec, 3, axis=1)
            z, r = sigmoid(xz + rz), sigmoid(xr + rr)
            hh = np.tanh(xh + r * rh)
        else:
            rz, rr = np.split(h @ recurrent[:, :2 * units], 2, axis=1)
            z, r = sigmoid(xz + rz), sigmoid(xr + rr)
            hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * units:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs, 1)


def simple_rnn(x, kernel, recurrent, bias):
    n, t_steps, _ = x.shape
    h = np.zeros((n, recurrent.shape[0]))
    hs = []
    for t in range(t_steps):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        hs.append(h)
    return np.stack(hs, 1)


def states(kind, weights, x, backwards=False, reset_after=True):
    """(h, c) at every step of an LSTM, GRU or SimpleRNN over x (n, T, d), c None except for LSTM; with
    backwards the layer reads the tokens last to first, and row t is still the state at token t."""
    if backwards:
        h, c = states(kind, weights, x[:, ::-1], reset_after=reset_after)
        return h[:, ::-1], (None if c is None else c[:, ::-1])
    if kind == "LSTM":
        return lstm(x, *weights)
    if kind == "GRU":
        return gru(x, *weights, reset_after=reset_after), None
    return simple_rnn(x, *weights), None


def masked(fn, x, lengths, padding):
    """Apply fn (x of one document -> (1, L, units) states) to each document's real tokens only, as a mask
    makes a layer do, and put zeros at the padded positions: (n, T, units)."""
    n, t = x.shape[:2]
    out = None
    for i in range(n):
        k = min(int(lengths[i]), t)
        rows = slice(t - k, t) if padding == "pre" else slice(0, k)
        value = fn(x[i:i + 1, rows]) if k else None
        if out is None and value is not None:
            out = np.zeros((n, t, value.shape[-1]))
        if value is not None:
            out[i, rows] = value[0]
    return out
