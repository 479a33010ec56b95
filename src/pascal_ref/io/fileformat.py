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
from pascal_ref.io.npzio import NpzError, read_npz
from pascal_ref.ir.layers import layer_from_dict
from pascal_ref.ir.network import Network, NetworkError

__all__ = ["save", "load", "ModelFileError", "FORMAT", "FORMAT_VERSION", "network_to_graph", "network_from_graph"]

FORMAT = "pascal-ref-network"
FORMAT_VERSION = 1
GRAPH_KEY = "__graph__"


class ModelFileError(PascalError):
    """A model file that cannot be read; the message names file, layer and array."""


def network_to_graph(network: Network) -> dict:
    return {"format": FORMAT, "version": FORMAT_VERSION, "name": network.name,
            "input_shape": list(network.input_shape), "input_levels": network.input_levels,
            "layers": [layer.to_dict() for layer in network.layers]}


def save(network: Network, path) -> None:
    """Write ``network`` to ``path`` (an ``.npz``)."""
    if not isinstance(network, Network):
        raise TypeError(f"save: expected a Network, got {type(network).__name__}")
    arrays = {}
    for layer in network.layers:
        arrays.update(layer.named_arrays())
    graph = json.dumps(network_to_graph(network), sort_keys=True)
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
    if graph.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{source}: format version {graph.get('version')!r} is not supported (this is version {FORMAT_VERSION})")
    layers_json = graph.get("layers")
    if not isinstance(layers_json, list):
        raise ModelFileError(f"{source}: 'layers' must be a list")
    used: set = set()

    def read_array(layer_name: str, key: str) -> np.ndarray:
        return _take(arrays, used, layer_name, key, source)

    try:
        layers = [layer_from_dict(entry, read_array) for entry in layers_json]
        network = Network(graph.get("input_shape"), layers, graph.get("input_levels"), graph.get("name", "network"))
    except NetworkError as error:
        raise ModelFileError(f"{source}: {error}") from None
    extra = sorted(set(arrays) - used)
    if extra:
        raise ModelFileError(f"{source}: unexpected array(s) not used by any layer: {', '.join(extra[:5])}")
    return network


def load(path) -> Network:
    """Read a network written by :func:`save` (never unpickles anything)."""
    source = os.fspath(path)
    try:
        arrays = read_npz(source)
    except NpzError as error:
        raise ModelFileError(str(error)) from None
    if GRAPH_KEY not in arrays:
        raise ModelFileError(f"{source}: no '{GRAPH_KEY}' entry: not a pascal-ref model file "
                             "(a plain PyTorch state dict? use `pascal-ref convert`)")
    graph_array = arrays.pop(GRAPH_KEY)
    if graph_array.dtype.kind != "U" or graph_array.ndim != 0:
        raise ModelFileError(f"{source}: '{GRAPH_KEY}' must be a 0-d unicode array, got {graph_array.dtype} {graph_array.shape}")
    try:
        graph = json.loads(str(graph_array))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{source}: '{GRAPH_KEY}' is not valid JSON ({error})") from None
    return network_from_graph(graph, arrays, source)
