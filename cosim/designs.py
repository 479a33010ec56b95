"""The co-simulated designs of cores with samples in flight, in one place: the bundled digits model and the
generator options of each (``cosim/test_cosim_pipeline.py`` streams them, ``cosim/test_cosim_resets.py``
resets them mid-sample), and the build of each design's core once per build folder (:func:`case_of`)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pascal_hdl.flow.generate import core_config_from_network, generate_from_network
from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.data import load_digits_split
from pascal_ref.io.fileformat import load
from pascal_ref.ir.network import Network

# Designs: the bundled model and the generator options beside --in-flight 2. The double-buffered MLP is the
# balanced design of docs/hardware.md (balance_lanes: act1 16 lanes, fc2 1; act1 with two accumulator banks).
DESIGNS = {
    "digits-mlp": ("digits-mlp", {}),
    "digits-cnn": ("digits-cnn", {}),
    "digits-resnet": ("digits-resnet", {}),
    "digits-mlp-double-buffered": ("digits-mlp", {"layer_lanes": {"act1": 16, "fc2": 1}, "double_buffer": ("act1",)}),
    "digits-cnn-mac": ("digits-cnn", {"layer_lanes": {"act1": 16, "act2": 32}, "double_buffer": True, "mac": True}),
    "digits-cnn-up5k-dsp": ("digits-cnn", {"layer_lanes": {"act1": 2, "act2": 6, "fc": 5},
                                           "double_buffer": ("pool1",), "mac": True, "multiplier": "dsp"}),
    "digits-cnn-analog": ("digits-cnn", {"analog": True, "input_bound": 1.0, "layer_lanes": {"act1": 16, "act2": 32},
                                         "double_buffer": True, "mac": True}),
    "digits-mlp-analog": ("digits-mlp", {"analog": True, "input_bound": 1.0, "layer_lanes": {"act1": 16},
                                         "double_buffer": True}),
    "digits-cnn-balanced": ("digits-cnn", {"in_flight": 3, "layer_lanes": {"act1": 8, "act2": 32, "fc": 5},
                                           "double_buffer": True, "mac": True}),
    "digits-resnet-balanced": ("digits-resnet", {"in_flight": 3, "double_buffer": True, "mac": True, "layer_lanes": {
        "act1": 2, "block2.residual_function.2": 8, "block2.act": 8, "fc": 1}}),
}
IN_FLIGHT = 2   # unless the design's options name another


@dataclass
class Case:
    folder: Path
    config: object
    model: object
    levels: np.ndarray


_lock = threading.Lock()
_cases: dict[tuple, Case] = {}


def in_flight_of(name: str) -> int:
    return DESIGNS[name][1].get("in_flight", IN_FLIGHT)


def design(name: str, in_flight: bool = True) -> tuple:
    """``(network, generator options)`` of a design: the bundled model (with ``analog``, re-exported with an
    analog input: the same layers, ``input_levels=None``) and its options (with ``in_flight``; without it,
    the same design with one sample in flight, single-buffered)."""
    bundled, options = DESIGNS[name]
    network, options = load(bundled_path(bundled)), dict(options)
    if options.pop("analog", False):
        network = Network(network.input_shape, network.layers, None, f"{network.name}_analog")
    options["in_flight"] = in_flight_of(name)
    if not in_flight:
        options.pop("double_buffer", None)
        options.pop("in_flight")
    return network, options


def case_of(root: Path, name: str) -> Case:
    with _lock:
        key = (name, root)
        if key not in _cases:
            network, options = design(name)
            folder = root / "src" / f"{name.replace('-', '_')}_inflight{in_flight_of(name)}"
            generate_from_network(network, folder, **options)
            config, model = core_config_from_network(network, **options)
            _, _, x_test, _ = load_digits_split()
            levels = model.encode_input(x_test)
            _cases[key] = Case(folder, config, model, levels.reshape(len(levels), -1))
        return _cases[key]
