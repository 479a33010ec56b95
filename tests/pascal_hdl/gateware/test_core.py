"""Amaranth-simulator tests of the network core against the integer golden model
(``pascal_ref.golden.quantize.integer_ann``) and, cycle by cycle, against :class:`CoreModel`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pascal_hdl.config import CoreConfig, HardwareError, LayerConfig
from pascal_hdl.gateware.core import NetworkCore
from pascal_hdl.gateware.engine import LayerEngine
from pascal_hdl.model.chain import core_config
from pascal_hdl.model.core import CoreModel, expected_cycles
from pascal_hdl.model.engine import EngineModel, sample_events
from pascal_hdl.testing import (
    clear_cycles_seen,
    conv_network,
    events_to_counts,
    lockstep,
    mnist_like_images,
    mnist_shape_network,
    plain,
    random_levels,
    residual_network,
    simulate,
    stream_get,
    stream_put,
    to_python,
)
from pascal_ref.golden.quantize import integer_ann, quantize
from pascal_ref.ir.network import QCFS, AvgPool2d, Conv2d, Flatten, Linear, Network
from pascal_ref.testing import random_mlp


def run_core(config: CoreConfig, levels: np.ndarray, seed: int, p_valid: float, p_ready: float, extra_events=None):
    """Stream the samples through the core beside :class:`CoreModel` (:func:`lockstep`); return the
    results and, per hidden layer, the events its monitor showed."""
    dut, model = NetworkCore(config), CoreModel(config)
    queue = [e for sample in levels for e in sample_events(sample)] if extra_events is None else list(extra_events)
    samples = sum(e["last"] for e in queue)
    events = {layer.name: [] for layer in config.hidden}

    def note_monitors(ctx, cycle):
        for layer in config.hidden:
            monitor = dut.monitor(layer.name)
            if ctx.get(monitor.valid):
                events[layer.name].append(to_python(ctx.get(monitor.payload)))

    run = lockstep(dut, model, queue, until=lambda results: len(results) == samples, seed=seed, p_valid=p_valid,
                   p_ready=p_ready, observe=note_monitors, max_cycles=200_000)
    for layer in config.hidden:   # the model saw the same hand-overs
        assert events[layer.name] == plain(model.events[layer.name]), layer.name
    return run.outputs, events


def small_core(rng):
    """A random 12-9-7-4 network (L = 3, 2) quantized by the golden model, on lanes 4 (three groups, the
    last one padded), 7 (one group) and 2."""
    model = quantize(random_mlp(rng, [12, 9, 7, 4], levels=[3, 2]))
    return model, CoreConfig.from_integer_network(model, lanes=[4, 7, 2])


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.6, 0.4)])
def test_core_matches_integer_golden_model(p_valid, p_ready):
    rng = np.random.default_rng(11)
    model, config = small_core(rng)
    levels = rng.integers(0, 5, (10, 12)) * (rng.random((10, 12)) < 0.6)
    levels[3] = 0
    levels[4] = 4
    golden = integer_ann(model, x_int=levels)
    results, events = run_core(config, levels, 3, p_valid, p_ready)
    np.testing.assert_array_equal([r["logits"] for r in results], golden.integer_logits)
    np.testing.assert_array_equal([r["cls"] for r in results], np.argmax(golden.integer_logits, axis=1))
    for layer, ref in zip(config.hidden, model.layers):
        np.testing.assert_array_equal(events_to_counts(events[layer.name], layer.out_features), golden.levels[ref.name])
    assert any(golden.levels["act1"].ravel()) and not all(r["rejected"] for r in results)
    if p_valid == 1.0 and p_ready == 1.0:
        np.testing.assert_array_equal([r["cycles"] for r in results], expected_cycles(config, levels))
        assert max(r["cycles"] for r in results) <= config.worst_case_cycles()


def test_core_as_transactions():
    """Put each sample's events, get its result: logits, class and cycles of a back-to-back source."""
    rng = np.random.default_rng(11)
    model, config = small_core(rng)
    levels = rng.integers(0, 5, (3, 12))
    dut = NetworkCore(config)
    results = []

    async def testbench(ctx):
        for sample in levels:
            for event in sample_events(sample):
                await stream_put(ctx, dut.i, event)
            results.append(await stream_get(ctx, dut.o))

    simulate(dut, testbench)
    golden = integer_ann(model, x_int=levels)
    assert [r["logits"] for r in results] == golden.integer_logits.tolist()
    assert [r["cls"] for r in results] == np.argmax(golden.integer_logits, axis=1).tolist()
    assert [r["cycles"] for r in results] == expected_cycles(config, levels).tolist()
    assert not any(r["rejected"] for r in results)


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 1.0), (0.6, 0.4)])
def test_rejected_event_is_reported_in_the_result(p_valid, p_ready):
    """A sample with dropped events (one with index == input_features) has `rejected` set, the next one
    not; the logits are those of the kept events."""
    rng = np.random.default_rng(2)
    config = CoreConfig.from_integer_network(quantize(random_mlp(rng, [6, 5, 3], levels=[2])))
    events = [{"index": 2, "count": 3, "last": False}, {"index": 1, "count": 1, "last": False},
              {"index": 6, "count": 1, "last": False},   # index == input_features (the port holds up to 7)
              {"index": 4, "count": 2, "last": True},
              {"index": 0, "count": 4, "last": True},
              {"index": 3, "count": 2, "last": True}]
    results, _ = run_core(config, None, 0, p_valid, p_ready, extra_events=events)
    assert [r["rejected"] for r in results] == [True, False, False]
    levels = np.array([[0, 0, 3, 0, 2, 0], [4, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 0]])
    _, logits, classes = config.forward(levels)
    np.testing.assert_array_equal([r["logits"] for r in results], logits)
    np.testing.assert_array_equal([r["cls"] for r in results], classes)


def reset_test_network(kind: str, seed: int):
    """``(integer model, core config, levels)`` of the reset tests: the random 12-9-7-4 MLP, a conv-conv
    network (the second conv with stride 2), or a ResNet (stem, an identity block, global average
    pooling; a pooling unit and a residual block in the core), small enough for many seeds."""
    rng = np.random.default_rng(90 + seed)
    if kind == "mlp":
        model, config = small_core(rng)
        levels = rng.integers(1, 5, (10, 12)) * (rng.random((10, 12)) < 0.6)
        return model, config, levels
    if kind == "conv":
        _, model = conv_network(rng, 3, 1, 1, [2, 3], input_levels=3, input_shape=(2, 4, 4), channels=(3, 2),
                                second=(3, 2, 1))
        config = core_config(model, lanes=2)
    else:
        _, model = residual_network(rng, [("identity", 3, 1)], [2, 3, 2], input_levels=3, input_shape=(2, 4, 4))
        config = core_config(model, lanes=2)
    return model, config, random_levels(rng, 8, (config.input_features,), 3)


@pytest.mark.parametrize("in_flight", [1, 2])
@pytest.mark.parametrize("kind, seed", [("mlp", 0), ("mlp", 1), ("mlp", 2), ("mlp", 3), ("conv", 0), ("conv", 1),
                                        ("resnet", 0), ("resnet", 1)])
def test_reset_in_the_middle_of_samples_keeps_the_next_results_exact(kind, seed, in_flight):
    """``rst`` of the core in random cycles while a sample is in flight, beside :class:`CoreModel` reset with
    it (every stage model starts in CLEAR): every cycle equal, the stages' CLEAR phases included, and every
    sample sent after a reset gets the golden model's logits and class (``cycles`` checked against the
    model in every cycle): no stage keeps anything of an interrupted sample."""
    model, config, levels = reset_test_network(kind, seed)
    config = dataclasses.replace(config, in_flight=in_flight)
    dut, core_model = NetworkCore(config), CoreModel(config)
    if kind != "mlp":
        assert {type(s).__name__ for s in config.layers} >= ({"ConvConfig"} if kind == "conv" else
                                                            {"ResidualBlockConfig", "PoolConfig"})
    events = [e for sample in levels for e in sample_events(sample)]
    run = lockstep(dut, core_model, events, seed=seed, p_valid=0.8, p_ready=0.7,
                   p_reset=0.03 if kind == "mlp" else 0.002, max_resets=3,
                   reset_model=core_model.reset, max_cycles=400_000)
    kept = [s for s in range(len(levels)) if s not in run.lost]
    assert run.resets and run.lost and max(kept) > min(run.lost)   # samples after a reset were exact
    shape = (len(kept),) + tuple(model.network.input_shape)
    golden = integer_ann(model, x_int=levels[kept].reshape(shape))
    np.testing.assert_array_equal([r["logits"] for r in run.outputs], golden.integer_logits)
    assert [r["cls"] for r in run.outputs] == np.argmax(golden.integer_logits, axis=1).tolist()
    assert not any(r["rejected"] for r in run.outputs)


@pytest.mark.parametrize("kind", ["mlp", "conv", "resnet"])
def test_core_takes_its_first_event_after_the_first_stage_clear(kind):
    """After power-up and after a reset (in the middle of a sample or not), the core's ``i.ready`` stays low for
    exactly the first stage's ``clear_cycles``; every stage is clear after ``config.clear_cycles``."""
    _, config, levels = reset_test_network(kind, 0)
    first = config.layers[0].clear_cycles
    assert config.clear_cycles == max(stage.clear_cycles for stage in config.layers) >= first
    for reset_after in (1, 25, 120):
        assert clear_cycles_seen(NetworkCore(config), sample_events(levels[0]), reset_after) == (first, first)


BASELINES = Path(__file__).resolve().parent / "baselines"


def digits_core():
    """The bundled digits MLP quantized by the golden model, its core configuration and the test split levels."""
    import pascal_ref
    from pascal_ref.io.data import load_digits_split
    from pascal_ref.io.fileformat import load

    model = quantize(load(Path(pascal_ref.__file__).parent / "models" / "digits_mlp.npz"))
    _, _, x_test, _ = load_digits_split()
    return model, CoreConfig.from_integer_network(model), model.encode_input(x_test)


def test_digits_model_config_and_cycles():
    """The digits core's layout and its exact cycle figures against the stored baseline
    (``baselines/digits_mlp_cycles.json``); the first images also through the Amaranth core."""
    model, config, levels = digits_core()
    baseline = json.loads((BASELINES / "digits_mlp_cycles.json").read_text())
    assert [(l.in_features, l.out_features, l.t_in, l.t_out, l.lanes) for l in config.layers] == \
        [(64, 64, 16, 4, 8), (64, 10, 4, None, 10)]
    assert sum(l.weight_bits_total for l in config.layers) == baseline["weight_memory_bits"] == 37_888
    first = levels[:baseline["first_images"]]
    hidden, logits, _ = config.forward(first)
    golden = integer_ann(model, x_int=first)
    np.testing.assert_array_equal(logits, golden.integer_logits)
    np.testing.assert_array_equal(hidden[0], golden.levels[model.layers[0].name])
    assert expected_cycles(config, first).tolist() == baseline["cycles_first_images"]
    assert config.ideal_cycles(first).tolist() == baseline["ideal_first_images"]
    full = np.full((1, 64), 16)
    assert expected_cycles(config, full).tolist() == [baseline["cycles_all_inputs_full"]]
    assert config.worst_case_cycles() == baseline["worst_case_cycles"] == 8_573
    # The hardware itself on the first four images: its cycle counter is the baseline's.
    dut, results = NetworkCore(config), []

    async def testbench(ctx):
        for sample in first[:4]:
            for event in sample_events(sample):
                await stream_put(ctx, dut.i, event)
            results.append(await stream_get(ctx, dut.o))

    simulate(dut, testbench)
    assert [r["cycles"] for r in results] == baseline["cycles_first_images"][:4]
    assert [r["logits"] for r in results] == golden.integer_logits[:4].tolist()


def test_digits_cycle_figures_of_the_test_split():
    """The figures of docs/hardware.md: 540 images, 2,656 cycles on average (1,624-3,441), 1.021x the
    ideal (at most 1.044x per image); pinned in the baseline (the cycle model, 6-15 s)."""
    _, config, levels = digits_core()
    split = json.loads((BASELINES / "digits_mlp_cycles.json").read_text())["test_split"]
    cycles, ideal = expected_cycles(config, levels), config.ideal_cycles(levels)
    assert (len(cycles), int(cycles.sum()), int(cycles.min()), int(cycles.max()), int(ideal.sum())) == \
        (split["images"], split["cycles_sum"], split["cycles_min"], split["cycles_max"], split["ideal_sum"])
    assert round(float((cycles / ideal).max()), 4) == split["max_ratio_per_image"]
    assert (len(cycles), round(cycles.mean()), cycles.min(), cycles.max()) == (540, 2656, 1624, 3441)
    assert round(cycles.sum() / ideal.sum(), 3) == 1.021 and round(float((cycles / ideal).max()), 3) == 1.044


# The 784-128-10 figures of docs/hardware.md (pascal_ref.testing.mnist_shape_network, the first 100
# mnist_like_images): hidden lanes -> (groups, mean cycles, min, max, cycles / ideal, worst case).
MNIST_FIGURES = {16: (8, 4265, 3453, 4990, 1.017, 25_789), 10: (13, 6811, 5503, 7984, 1.030, 41_499)}


def mnist_core(lanes: int):
    from pascal_hdl.flow.generate import core_config_from_network

    return core_config_from_network(mnist_shape_network(), lanes=[lanes, 10])


@pytest.mark.parametrize("lanes", sorted(MNIST_FIGURES))
def test_mnist_shape_layout_and_worst_case(lanes):
    config, _ = mnist_core(lanes)
    groups, *_, worst = MNIST_FIGURES[lanes]
    assert [(l.in_features, l.out_features, l.lanes, l.groups) for l in config.layers] == \
        [(784, 128, lanes, groups), (128, 10, 10, 1)]
    assert config.worst_case_cycles() == worst


@pytest.mark.parametrize("lanes", sorted(MNIST_FIGURES))
def test_mnist_shape_cycle_figures(lanes):
    """Cycles per image of the 784-128-10 table in docs/hardware.md (the cycle model, 2-10 s each)."""
    config, model = mnist_core(lanes)
    levels = model.encode_input(mnist_like_images(100))
    cycles, ideal = expected_cycles(config, levels), config.ideal_cycles(levels)
    _, mean, low, high, ratio, _ = MNIST_FIGURES[lanes]
    assert (round(cycles.mean()), cycles.min(), cycles.max(), round(cycles.sum() / ideal.sum(), 3)) == \
        (mean, low, high, ratio)
    assert round(float(levels.sum(axis=1).mean())) == 504 and round(float((levels > 0).mean()), 2) == 0.18


def test_unsupported_models_are_rejected():
    rng = np.random.default_rng(0)
    conv = Network((1, 4, 4), [Conv2d("conv1", rng.normal(size=(2, 1, 3, 3))), QCFS("act1", 1.0, 2), Flatten("flat"),
                               Linear("fc", rng.normal(size=(3, 8)))], input_levels=4)
    with pytest.raises(HardwareError, match="'act1': Conv2d 'conv1' is not supported"):
        CoreConfig.from_integer_network(quantize(conv))
    pooled = Network((1, 4, 4), [AvgPool2d("pool", 2), Flatten("flat"), Linear("fc1", rng.normal(size=(5, 4))),
                                 QCFS("act1", 1.0, 2), Linear("fc2", rng.normal(size=(3, 5)))], input_levels=4)
    with pytest.raises(HardwareError, match="AvgPool2d before the Linear op is not supported"):
        CoreConfig.from_integer_network(quantize(pooled))
    analog = random_mlp(rng, [6, 5, 3], levels=[2], input_levels=None)
    with pytest.raises(HardwareError, match="analog input is not supported"):
        CoreConfig.from_integer_network(quantize(analog, input_bound=1.0))
    wide = quantize(random_mlp(rng, [6, 5, 3], levels=[2]), weight_bits=20)
    with pytest.raises(HardwareError, match="weights need 20 bits, more than the limit 16"):
        CoreConfig.from_integer_network(wide)


def test_core_config_chain_is_validated():
    hidden = LayerConfig("fc1", np.ones((4, 3), np.int64), 4, 2, np.ones(4, np.int64), np.zeros(4, np.int64), 2)
    readout = LayerConfig("fc2", np.ones((2, 4), np.int64), 3, None, None, np.zeros(2, np.int64), 2)
    with pytest.raises(HardwareError, match="t_in=3 but 'fc1' sends trains of 2 steps"):
        CoreConfig("core", 3, 4, (hidden, readout))
    with pytest.raises(HardwareError, match="does not match input size 5"):
        CoreConfig("core", 5, 4, (hidden, LayerConfig("fc2", np.ones((2, 4), np.int64), 2, None, None,
                                                              np.zeros(2, np.int64), 2)))
    with pytest.raises(HardwareError, match="only the last layer is a readout"):
        CoreConfig("core", 3, 4, (hidden,))


@pytest.mark.parametrize("block, wanted", [(NetworkCore, "CoreConfig"), (CoreModel, "CoreConfig"),
                                           (LayerEngine, "LayerConfig"), (EngineModel, "LayerConfig")],
                         ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_blocks_take_only_their_config(block, wanted):
    layer = LayerConfig("fc1", np.ones((2, 3), np.int64), 4, None, None, np.zeros(2, np.int64), 2)
    wrong = CoreConfig("core", 3, 4, (layer,)) if wanted == "LayerConfig" else layer
    with pytest.raises(TypeError, match=f"{block.__name__}: config must be a {wanted}, got {type(wrong).__name__}"):
        block(wrong)
