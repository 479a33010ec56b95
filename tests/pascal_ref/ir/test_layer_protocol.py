"""A layer type carries its own behaviour: a new one, defined here and nowhere else, runs everywhere.

``Scale`` multiplies the trains of its source by a positive integer before
the weighted op.  It is written in this file only, against the protocol of
:mod:`pascal_ref.ir.layers` (``output_shape``, ``apply``, ``integer_range``
and the fields of its dataclass), and is then saved and loaded, run by the
float ANN, quantized, run by the integer ANN, both reference SNN engines and
the fast count engine (bit for bit), costed, and refused with a clear
message by the engines that have no kernel for it (the event-driven engine,
the hardware core).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from pascal_hdl.config import CoreConfig, HardwareError
from pascal_ref import (
    QCFS,
    AvgPool2d,
    Conv2d,
    Flatten,
    Linear,
    Network,
    NetworkError,
    float_ann,
    load,
    save,
)
from pascal_ref.analysis.cost import fan_in, network_cost
from pascal_ref.errors import PascalError
from pascal_ref.fast import count_engine, count_plan, float_ann_fast, timestep_engine
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.golden.snn import simulate
from pascal_ref.io.bundled import BUNDLED, bundled_path
from pascal_ref.ir.layers import LAYER_TYPES, PreOp, layer_type


@layer_type
class Scale(PreOp):
    """``y = factor * x``, elementwise: exact on integers and on spike trains (it is linear)."""

    name: str
    factor: int

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise NetworkError(f"layer '{self.name}': factor must be an integer >= 1, got {self.factor!r}")

    def output_shape(self, shape):
        return shape

    def apply(self, x, integer):
        return x * self.factor

    def integer_range(self, low, high, shape):
        return low * self.factor, high * self.factor


@pytest.fixture(autouse=True)
def _registered_for_these_tests_only():
    LAYER_TYPES["Scale"] = Scale   # registered by @layer_type at import; removed again after each test
    yield
    LAYER_TYPES.pop("Scale", None)


FACTOR = 3


def dense(scaled: bool = True, input_levels: int | None = 4) -> Network:
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.6, (8, 6)), rng.normal(0, 0.1, 8)
    w2, b2 = rng.normal(0, 0.4, (3, 8)), rng.normal(0, 0.1, 3)
    middle = [Scale("scale", FACTOR)] if scaled else []
    out = Linear("out", w2 if scaled else w2 * FACTOR, b2)
    return Network((6,), [Linear("fc1", w1, b1), QCFS("act1", 1.0, 4)] + middle + [out], input_levels, "dense")


def conv(input_levels: int | None) -> Network:
    """Scale inside a pre-op chain (then average pooling and flatten), on channels-first maps."""
    rng = np.random.default_rng(1)
    layers = [Conv2d("c1", rng.normal(0, 0.5, (3, 2, 3, 3)), rng.normal(0, 0.1, 3), padding=1), QCFS("a1", 1.5, 4),
              Scale("scale", 2), AvgPool2d("pool", 2), Flatten("flat"), Linear("out", rng.normal(0, 0.3, (4, 12)))]
    return Network((2, 4, 4), layers, input_levels, "conv")


def data(network: Network, batch: int = 16) -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 1, (batch,) + network.input_shape)


def test_the_new_type_is_registered_with_fields_derived_from_its_dataclass():
    assert LAYER_TYPES["Scale"] is Scale
    assert Scale.role == "pre_op" and Scale.arrays == () and Scale.json_fields == {"factor": (int,)}
    assert Scale("s", 2).to_dict() == {"type": "Scale", "name": "s", "factor": 2}
    with pytest.raises(NetworkError, match="factor must be an integer >= 1"):
        Scale("s", 0)
    with pytest.raises(TypeError, match="already registered"):
        layer_type(type("Scale", (PreOp,), {"__annotations__": {"name": "str"}}))


def test_save_and_load_round_trip(tmp_path):
    network = conv(input_levels=4)
    save(network, tmp_path / "scaled.npz")
    with np.load(tmp_path / "scaled.npz") as archive:
        graph = json.loads(str(archive["__graph__"]))
    assert {"type": "Scale", "name": "scale", "factor": 2} in graph["layers"]
    again = load(tmp_path / "scaled.npz")
    assert again.summary() == network.summary()
    assert "Scale->AvgPool2d->Flatten->Linear(a1)" in again.summary()
    x = data(network)
    np.testing.assert_array_equal(float_ann(again, x).logits, float_ann(network, x).logits)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_built_in_types_write_format_1_as_before(tmp_path, name):
    """The entries derived from the dataclass fields are the ones the bundled files hold."""
    save(load(bundled_path(name)), tmp_path / "again.npz")
    with np.load(bundled_path(name)) as stored, np.load(tmp_path / "again.npz") as written:
        assert written.files == stored.files
        assert str(written["__graph__"]) == str(stored["__graph__"])
        for key in (key for key in stored.files if key != "__graph__"):
            assert written[key].dtype == stored[key].dtype
            np.testing.assert_array_equal(written[key], stored[key])


def test_a_malformed_field_is_named(tmp_path):
    network = dense()
    save(network, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    graph = json.loads(str(arrays.pop("__graph__")))
    next(entry for entry in graph["layers"] if entry["type"] == "Scale")["factor"] = 2.5
    np.savez(tmp_path / "bad.npz", __graph__=np.array(json.dumps(graph)), **arrays)
    with pytest.raises(PascalError, match=r"layer 'scale': field 'factor' has the wrong type \(float\)"):
        load(tmp_path / "bad.npz")


def test_float_ann_equals_the_same_network_with_scaled_weights():
    x = data(dense())
    scaled, folded = float_ann(dense(scaled=True), x), float_ann(dense(scaled=False), x)
    np.testing.assert_allclose(scaled.logits, folded.logits, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(scaled.levels["act1"], folded.levels["act1"])
    np.testing.assert_allclose(float_ann_fast(dense(), x, np.float64), scaled.logits, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("make", [lambda: dense(input_levels=4), lambda: dense(input_levels=None),
                                  lambda: conv(input_levels=4), lambda: conv(input_levels=None)],
                         ids=["dense-coded", "dense-analog", "conv-coded", "conv-analog"])
def test_integer_paths_agree_bit_for_bit(make):
    network = make()
    x = data(network)
    model = quantize(network, input_bound=1.0 if network.input_levels is None else None)
    # The scaled (and pooled) levels widen the input range of the next op: L=4 times 3, or times 2 then a 2x2 sum.
    scaled = next(s for layer in model.layers for s in layer.synapses if s.pre_ops)
    assert (scaled.input_min, scaled.input_max) == (0, {"dense": FACTOR * 4, "conv": 2 * 4 * 4}[network.name])
    reference = integer_ann(model, x)
    hidden = [layer.name for layer in network.hidden_layers]
    assert sum(int(reference.levels[name].sum()) for name in hidden) > 0
    runs = [simulate(model, x, engine="count"), simulate(model, x, engine="timestep"), count_engine(model, x)]
    runs += [count_engine(count_plan(model, precision), x) for precision in ("float64", "int64")]
    for result in runs:
        np.testing.assert_array_equal(result.integer_logits, reference.integer_logits)
        for name in hidden:
            np.testing.assert_array_equal(result.counts[name], reference.levels[name])


def test_cost_model_reads_the_new_pre_op():
    network = conv(input_levels=4)
    cost = network_cost(network, data(network))
    assert [row.fan_in for row in cost.layers] == [fan_in(layer) for layer in network.neuron_layers] == [18, 12]
    assert cost.acs > 0


def test_engines_without_a_kernel_for_it_say_so():
    model = quantize(dense())
    with pytest.raises(PascalError, match="layer 'out': Scale 'scale' has no event map.*count_engine"):
        timestep_engine(model, data(dense()))
    with pytest.raises(HardwareError, match="layer 'out': Scale before the Linear op is not supported"):
        CoreConfig.from_integer_network(model)
