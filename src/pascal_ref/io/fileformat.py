"""The ``.npz`` model format, version 1.

One NumPy ``.npz`` archive (read with ``allow_pickle=False``) holding

* ``__graph__``: a 0-d unicode array with the network description as JSON::

      {"format": "pascal-ref-network", "version": 1, "name": "digits-mlp",
       "input_shape": [64], "input_levels": 16,
       "layers": [{"type": "Linear", "name": "fc1"},
                  {"type": "QCFS", "name": "act1", "lam": 2.5, "levels": 4, "phi": 0.5},
                  {"type": "Conv2d", "name": "conv1", "stride": [1, 1], "padding": [1, 1]},
                  {"type": "AvgPool2d", "name": "pool1", "kernel": [2, 2], "stride": [2, 2]},
                  {"type": "BasicBlock", "name": "layer1.0", "conv1": {...}, "act1": {...},
                   "conv2": {...}, "act2": {...}, "shortcut": null}, ...]}

* one float array per parameter, named ``<layer name>.<array>``: ``weight``
  and ``bias`` of Linear/Conv2d, and ``weight``, ``bias``, ``running_mean``,
  ``running_var`` of a BatchNorm (which also has ``eps`` in the JSON and is
  folded on load).  Floats in the JSON are written with ``repr`` (exact).

Each layer writes and reads its own entry and arrays, derived from its
dataclass fields (:meth:`pascal_ref.ir.layers.Layer.to_dict`, ``named_arrays``,
``from_dict``); this module holds the archive, the header and the array
checks.  :func:`save` writes the folded network; ``load(save(net))``
reproduces every array bit for bit.  Every malformed file is a
:class:`ModelFileError` naming the layer and the array.
"""
from __future__ import annotations

import json
import os

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.io.jsonio import parse_json
from pascal_ref.io.npzio import NpzError, read_npz
from pascal_ref.ir.layers import layer_from_dict, quote
from pascal_ref.ir.network import Network, NetworkError

__all__ = ["save", "load", "ModelFileError", "FORMAT", "FORMAT_VERSION", "GRAPH_FIELDS", "network_to_graph",
           "network_from_graph"]

FORMAT = "pascal-ref-network"
FORMAT_VERSION = 1
GRAPH_KEY = "__graph__"


class ModelFileError(PascalError):
    """A model file that cannot be read; the message names file, layer and array."""


def network_to_graph(network: Network) -> dict:
    return {"format": FORMAT, "version": FORMAT_VERSION, "name": network.name,
            "input_shape": list(network.input_shape), "input_levels": network.input_levels,
            "layers": [layer.to_dict() for layer in network.layers]}


GRAPH_FIELDS = ("format", "version", "name", "input_shape", "input_levels", "layers")
"""The top-level fields of ``__graph__``: all of them required, no other accepted."""


def save(network: Network, path) -> None:
    """Write ``network`` to ``path`` (an ``.npz``).

    What is written is what :func:`load` reads back: the graph is checked
    with the loader's own rules first (a name ``load`` would refuse is an
    error here, not a file that cannot be opened).
    """
    if not isinstance(network, Network):
        raise TypeError(f"save: expected a Network, got {type(network).__name__}")
    arrays = {}
    for layer in network.layers:
        arrays.update(layer.named_arrays())
    document = network_to_graph(network)
    try:
        network_from_graph(json.loads(json.dumps(document)), arrays, os.fspath(path))
    except ModelFileError as error:
        raise ModelFileError(f"save: the network cannot be written as a model file that loads back: {error}") from None
    graph = json.dumps(document, sort_keys=True)
    with open(path, "wb") as handle:
        np.savez(handle, **{GRAPH_KEY: np.array(graph)}, **arrays)


def _take(arrays: dict, used: set, layer_name: str, key: str, source: str) -> np.ndarray:
    name = f"{layer_name}.{key}"
    if name not in arrays:
        raise ModelFileError(f"{source}: layer '{layer_name}': missing array '{name}'")
    array = arrays[name]
    if array.dtype.kind != "f" or array.dtype.itemsize < 4:
        raise ModelFileError(f"{source}: layer '{layer_name}': array '{name}' must be float32 or float64, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ModelFileError(f"{source}: layer '{layer_name}': array '{name}' contains NaN or Inf")
    used.add(name)
    return array


def network_from_graph(graph, arrays: dict, source: str = "model") -> Network:
    if not isinstance(graph, dict):
        raise ModelFileError(f"{source}: the graph must be a JSON object")
    if graph.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a pascal-ref network (format field {graph.get('format')!r})")
    if graph.get("version") != FORMAT_VERSION or isinstance(graph.get("version"), bool):
        raise ModelFileError(f"{source}: format version {quote(graph.get('version'))} is not supported (this is "
                             f"version {FORMAT_VERSION})")
    unknown = sorted(str(key) for key in graph if key not in GRAPH_FIELDS)
    if unknown:
        raise ModelFileError(f"{source}: unknown top-level field {quote(unknown[0])} in '{GRAPH_KEY}' "
                             f"(the fields are {', '.join(GRAPH_FIELDS)})")
    missing = [key for key in GRAPH_FIELDS if key not in graph]
    if missing:
        raise ModelFileError(f"{source}: '{GRAPH_KEY}' has no field '{missing[0]}'"
                             + (" (null for analog input)" if missing[0] == "input_levels" else ""))
    if not isinstance(graph["input_shape"], list):
        raise ModelFileError(f"{source}: 'input_shape' must be a list of positive integers, got "
                             f"{quote(graph['input_shape'])}")
    layers_json = graph.get("layers")
    if not isinstance(layers_json, list):
        raise ModelFileError(f"{source}: 'layers' must be a list")
    used: set = set()

    def read_array(layer_name: str, key: str) -> np.ndarray:
        return _take(arrays, used, layer_name, key, source)

    try:
        layers = [layer_from_dict(entry, read_array) for entry in layers_json]
        network = Network(graph["input_shape"], layers, graph["input_levels"], graph["name"])
    except NetworkError as error:
        raise ModelFileError(f"{source}: {error}") from None
    extra = sorted(set(arrays) - used)
    if extra:
        raise ModelFileError(f"{source}: unexpected array(s) not used by any layer: "
                             f"{', '.join(quote(name) for name in extra[:3])}" + (f" and {len(extra) - 3} more" if len(extra) > 3 else ""))
    return network


def load(path, *, source: str | None = None) -> Network:
    """Read a network written by :func:`save` (never unpickles anything).

    ``path``: a file, or the bytes of one already read (``source`` then names them in messages).
    """
    if isinstance(path, (bytes, bytearray)):
        source = source or "model bytes"
    else:
        source = os.fspath(path)
    try:
        arrays = read_npz(path, source=source)
    except NpzError as error:
        raise ModelFileError(str(error)) from None
    if GRAPH_KEY not in arrays:
        raise ModelFileError(f"{source}: no '{GRAPH_KEY}' entry: not a pascal-ref model file "
                             "(a plain PyTorch state dict? use `pascal-ref convert`)")
    graph_array = arrays.pop(GRAPH_KEY)
    if graph_array.dtype.kind != "U" or graph_array.ndim != 0:
        raise ModelFileError(f"{source}: '{GRAPH_KEY}' must be a 0-d unicode array, got {graph_array.dtype} {graph_array.shape}")
    graph = parse_json(str(graph_array), f"{source}: '{GRAPH_KEY}'", ModelFileError)
    return network_from_graph(graph, arrays, source)
