"""`stream-export preview OUT --doc N --png FILE`: one document's states as a heatmap picture, with its words
and meta tracks, to look at a project on a machine without a browser (matplotlib, the `preview` extra).

The picture is laid out in whole pixels, so a pixel's colour can be traced back to a state value:

    TITLE px      one line: project, document, layer
    WORDS px      the words, one column per timestep, written upwards
    heatmap       CELL x CELL px per (cell, timestep); cell rows top to bottom in the order asked for,
                  timesteps left to right, starting LEFT px from the left edge
    per track     GAP px, then a CELL px high row (label, predictions, ...) named on the left
    BOTTOM px     the colour scale

The image is max(LEFT + steps * CELL + RIGHT, MIN_WIDTH) px wide. Colours: like the LSTMVis browser, the
value shown is tanh(state) (`transform="none"` shows the state itself), clipped to [-1, 1], on a diverging
scale interpolated linearly in RGB from NEGATIVE (-1) through ZERO (0) to POSITIVE (+1).
"""

from __future__ import annotations

import os

import numpy as np

from stream_export.errors import ConfigError
from stream_export.project import Project, open_hdf5, tokens

CELL, LEFT, RIGHT, TITLE, WORDS, GAP, BOTTOM, MIN_WIDTH = 12, 84, 12, 22, 84, 4, 30, 480
NEGATIVE, ZERO, POSITIVE = (5, 113, 176), (247, 247, 247), (202, 0, 32)  # ColorBrewer RdBu ends, #0571b0 #ca0020
CATEGORIES = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
              (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
"""Discrete track colours: class id i is CATEGORIES[i % 10]."""
SCALAR_LOW, SCALAR_HIGH = (255, 255, 255), (84, 39, 143)
"""Scalar tracks: white at the low end of the track's range, purple at the high end."""
DPI = 64  # a power of two, so width / DPI * DPI is exact and the PNG has exactly the pixels laid out
PT = 72 / DPI  # points per pixel, for font sizes


def diverging(values: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of values on the [-1, 1] diverging scale (values outside are clipped)."""
    v = np.clip(np.nan_to_num(values), -1, 1)[..., None]
    end = np.where(v > 0, np.array(POSITIVE, float), np.array(NEGATIVE, float))
    return np.rint(np.array(ZERO, float) + np.abs(v) * (end - np.array(ZERO, float))).astype(np.uint8)


def parse_cells(spec: str | None, cells: int) -> list[int]:
    """'0-15,40,42' -> [0, ..., 15, 40, 42]; None -> every cell."""
    if spec is None:
        return list(range(cells))
    out = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ConfigError(f"--cells takes numbers and ranges like 0-15,40; got {spec!r}") from None
    bad = [c for c in out if not 0 <= c < cells]
    if bad or not out:
        outside = f"; {bad[0]} is outside" if bad else ""
        raise ConfigError(f"--cells {spec}: the layer has cells 0..{cells - 1}{outside}")
    return out


def preview(out: str, doc: int, png: str, layer: str | int = 1, cells: str | None = None,
            padding: bool = False, transform: str = "tanh") -> dict:
    """Draw document `doc` of the project in OUT into `png`; return what was drawn (sizes, steps, cells).

    layer: a state type's dataset path (e.g. "states2") or a layer number of lstm.yml's states.types.
    padding: also show the padding timesteps (by default only the document's own tokens)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("preview draws with matplotlib, which is not installed: "
                          "pip install 'stream_export[preview]' (or pip install matplotlib)") from None
    if transform not in ("tanh", "none"):
        raise ConfigError(f"transform must be tanh or none; got {transform!r}")
    p = Project(out)
    if p.yml is None or p.journal is None:
        raise ConfigError(f"{out} is not a finished export (no lstm.yml or export.json); "
                          "preview needs both: finish it with `stream-export resume`")
    t, n_docs = p.max_len, p.documents
    if not 0 <= doc < n_docs:
        raise ConfigError(f"--doc {doc} is outside the project's documents 0..{n_docs - 1}")
    state = _state_type(p, layer)
    rows = slice(*p.doc_rows([doc])[0])
    if rows.stop == rows.start:
        raise ConfigError(f"document {doc} has no tokens, and the export skipped padding (--skip-padding), so it "
                          "has no rows to draw; choose another --doc")
    with open_hdf5(p.path(state["file"])) as f:
        values = f[state["path"]][rows].astype(np.float64)
    chosen = parse_cells(cells, values.shape[1])
    wkey, wpath = p.words_source()
    with open_hdf5(p.path(wkey)) as f:
        ids = f[wpath][rows]
    with open_hdf5(p.path("meta")) as f:
        length = int(f["documents/length"][doc]) if "documents/length" in f else t
        doc_id = f["documents/id"][doc].decode() if "documents/id" in f else None
    keep = min(length, t)
    if p.skip_padding:  # only the real tokens were written
        steps = list(range(rows.stop - rows.start))
    else:
        steps = list(range(t)) if padding or keep == 0 else (
            list(range(t - keep, t)) if p.journal["config"]["padding"] == "pre" else list(range(keep)))
    shown = np.tanh(values) if transform == "tanh" else values
    heat = diverging(shown[steps][:, chosen].T)  # (cells, steps, 3)
    tracks = _tracks(p, rows, steps)

    width = max(LEFT + len(steps) * CELL + RIGHT, MIN_WIDTH)
    height = TITLE + WORDS + len(chosen) * CELL + len(tracks) * (GAP + CELL) + BOTTOM
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")

    def text(x, y_top, s, **kw):  # position in pixels from the top-left corner
        fig.text(x / width, 1 - y_top / height, s, fontsize=kw.pop("px", 9) * PT, **kw)

    def block(rgb, x, y_top):  # an (h, w, 3) array placed pixel for pixel
        fig.figimage(rgb, xo=x, yo=height - y_top - rgb.shape[0], origin="upper")

    layer_name = f" ({state['name']})" if state.get("name") else ""
    title = f"{p.yml.get('name')} · document {doc}" + (f" ({doc_id})" if doc_id else "")
    title += f" · {state['path']}{layer_name} · {length} token{'s' if length != 1 else ''}"
    text(4, 3, title + (f", truncated to {t}" if length > t else ""), va="top", px=11)
    words = tokens(p.path((p.yml.get("word_sequence") or {}).get("dict_file", "words")))
    for i, s in enumerate(steps):
        word = words.get(int(ids[s]), f"#{ids[s]}")
        word = word if len(word) <= 14 else word[:13] + "…"
        text(LEFT + i * CELL + CELL / 2, TITLE + WORDS - 3, word, rotation=90, ha="center", va="bottom")
    y = TITLE + WORDS
    block(np.repeat(np.repeat(heat, CELL, axis=0), CELL, axis=1), LEFT, y)
    for i, c in enumerate(chosen):
        text(LEFT - 4, y + i * CELL + CELL / 2, str(c), ha="right", va="center", px=8)
    text(4, y + len(chosen) * CELL / 2, "cell", rotation=90, va="center", ha="left")
    y += len(chosen) * CELL
    for name, colours, labels in tracks:
        y += GAP
        block(np.repeat(np.repeat(colours[None], CELL, axis=0), CELL, axis=1), LEFT, y)
        text(LEFT - 4, y + CELL / 2, name, ha="right", va="center")
        for start, stop, label in labels:
            if (stop - start) * CELL >= 7 * len(label):
                text(LEFT + (start + stop) * CELL / 2, y + CELL / 2, label, ha="center", va="center", px=8)
        y += CELL
    scale = diverging(np.linspace(-1, 1, 121))[None].repeat(8, axis=0)
    block(scale, LEFT, y + 10)
    text(LEFT - 4, y + 14, "-1", ha="right", va="center", px=8)
    text(LEFT + 125, y + 14, "+1   " + ("tanh(state)" if transform == "tanh" else "state") + ", as in LSTMVis",
         ha="left", va="center", px=8)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    FigureCanvasAgg(fig).print_png(png)
    return {"png": png, "width": width, "height": height, "steps": steps, "cells": chosen,
            "dataset": f"{p.files[state['file']]}:{state['path']}", "tracks": [name for name, _, _ in tracks]}


def _state_type(p, layer):
    """The lstm.yml state type asked for: by dataset path, or by layer number (its `state` type first)."""
    types = p.state_types()
    by_path = [s for s in types if str(s.get("path")) == str(layer)]
    if not by_path and str(layer).isdigit():
        by_path = sorted((s for s in types if s.get("layer") == int(layer)), key=lambda s: s.get("type") != "state")
    if not by_path:
        raise ConfigError(f"--layer {layer} names no state type of {p.out}/lstm.yml; choose a path ("
                          f"{', '.join(str(s.get('path')) for s in types)}) or a layer number")
    state = dict(by_path[0])
    k = state.get("layer")
    if isinstance(k, int) and 1 <= k <= len(p.journal["layers"]):
        state["name"] = p.journal["layers"][k - 1]["name"]
    return state


def _tracks(p, rows, steps):
    """[(name, colours (steps, 3), [(start, stop, label) runs])] for lstm.yml's meta tracks, except the
    document number (the title says it)."""
    out = []
    for name, spec in p.meta_tracks().items():
        if name == "document" or spec.get("file") not in p.files:
            continue
        with open_hdf5(p.path(spec["file"])) as f:
            if spec.get("path") not in f:
                continue
            values = f[spec["path"]][rows][steps]
        vis = spec.get("vis") or {}
        if "dict" in spec or vis.get("type") == "discrete":
            names = tokens(p.path(spec["dict"])) if spec.get("dict") in p.files else {}
            ints = values.astype(np.int64)
            colours = np.array([CATEGORIES[v % len(CATEGORIES)] for v in ints], dtype=np.uint8).reshape(-1, 3)
            cuts = [0] + [i for i in range(1, len(ints)) if ints[i] != ints[i - 1]] + [len(ints)]
            labels = [(a, b, names.get(int(ints[a]), str(ints[a]))) for a, b in zip(cuts, cuts[1:]) if b > a]
        else:
            lo, hi = vis.get("range") if isinstance(vis.get("range"), list) else (values.min(), values.max())
            x = np.clip((values.astype(np.float64) - lo) / ((hi - lo) or 1), 0, 1)[:, None]
            colours = np.rint(np.array(SCALAR_LOW) + x * (np.array(SCALAR_HIGH) - np.array(SCALAR_LOW)))
            colours, labels = colours.astype(np.uint8), []
        out.append((name, colours, labels))
    return out
