"""Helpers for the Amaranth-simulator tests of the gateware: transactions, lockstep runs, random parameters.

* :func:`simulate` runs testbenches on a design (with a 1 MHz clock);
  :func:`stream_put` and :func:`stream_get` move one payload through an
  ``amaranth.lib.stream`` interface, so a test reads as transactions;
  :func:`to_python` turns a sampled payload into plain ``dict``/``list``/``int``.
* :func:`lockstep` runs a design beside its cycle model
  (:class:`~pascal_hdl.model.engine.EngineModel`,
  :class:`~pascal_hdl.model.core.CoreModel`) under random idle and
  back-pressure, compares the handshakes, any extra probes and every offered
  payload in every cycle, and names the first cycle and signal that differ;
  with ``p_reset`` it also asserts ``rst`` in random cycles in the middle of
  samples (the model reset with it), drops the interrupted samples and
  reports them as lost.
  :func:`clear_cycles_seen` measures how long ``i.ready`` stays low after
  power-up and after a reset in the middle of a sample.
* :func:`random_layer` and :func:`random_neuron_cases` draw engine and neuron
  parameters; :func:`events_to_counts` turns an event stream back into counts.
* :func:`conv_network` and :func:`residual_network` build small random count-coded
  convolutional networks (one or two Conv2d layers, or a ResNet with identity and
  1x1-conv shortcuts, each with a Linear readout) quantized by the golden model;
  :func:`random_levels` draws sparse input levels (with an all-zero and an all-full sample).
* :func:`mnist_shape_network` and :func:`mnist_like_images` (from
  :mod:`pascal_ref.testing`, their home): the seeded 784-128-10 model and
  images of the size/speed figures in ``docs/hardware.md``.

Amaranth is imported by the functions that run the simulator, so the module
(like the rest of ``pascal_hdl`` outside the gateware) imports without it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from pascal_hdl.config import LayerConfig
from pascal_ref.golden.quantize import quantize
from pascal_ref.ir.network import (
    QCFS,
    BasicBlock,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    Network,
)
from pascal_ref.testing import (
    calibrate,
    mnist_like_images,
    mnist_shape_network,
    random_inputs,
    random_weight,
)

__all__ = ["simulate", "stream_put", "stream_get", "to_python", "plain", "LockstepRun", "lockstep", "handshakes_seen",
           "lockstep_chain", "clear_cycles_seen", "with_reset",
           "events_to_counts", "random_layer", "random_neuron_cases", "mnist_shape_network", "mnist_like_images",
           "conv_network", "random_levels", "residual_network"]


def simulate(dut, *testbenches, clock: bool = True) -> None:
    """Run ``testbenches`` (async functions of the simulator context) on ``dut`` to completion."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run()


STREAM_MAX_CYCLES = 100_000


async def _tick_until(ctx, condition, *sampled, max_cycles: int, what: str):
    """Clock edges until ``condition`` is high at one (returns ``sampled`` then), at most ``max_cycles``."""
    waited = 0
    async for _, _, *values, done in ctx.tick().sample(*sampled, condition):
        waited += 1
        if done:
            return values
        if waited >= max_cycles:
            raise AssertionError(f"{what}: not within {max_cycles} cycles (the design hangs)")


async def stream_put(ctx, stream, payload, max_cycles: int = STREAM_MAX_CYCLES) -> None:
    """Offer ``payload`` on ``stream`` from this cycle on; return after the cycle it is taken
    (an ``AssertionError`` if it is not taken within ``max_cycles``)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await _tick_until(ctx, stream.ready, max_cycles=max_cycles, what=f"stream_put {payload!r}")
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, max_cycles: int = STREAM_MAX_CYCLES):
    """Be ready on ``stream`` until a payload is taken; return it as plain Python values
    (an ``AssertionError`` if none comes within ``max_cycles``)."""
    ctx.set(stream.ready, 1)
    payload, = await _tick_until(ctx, stream.valid, stream.payload, max_cycles=max_cycles, what="stream_get")
    ctx.set(stream.ready, 0)
    return to_python(payload)


def to_python(value):
    """A sampled value as plain Python: a struct as a ``dict``, an array as a ``list``, a number as ``int``."""
    from amaranth.lib import data

    if isinstance(value, data.Const):
        layout = value.shape()
        if isinstance(layout, data.ArrayLayout):
            return [to_python(value[index]) for index, _ in layout]
        return {name: to_python(value[name]) for name, _ in layout}
    return int(value)


def plain(value):
    """A model's value as plain Python (``dict``, ``list``, ``int``, ``bool``), comparable with :func:`to_python`."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return int(value)


class LockstepRun(NamedTuple):
    """What :func:`lockstep` saw: the payloads the sink took (plain Python), the cycles run, the
    samples (indices in input order, delimited by ``last``) whose results a reset lost, and the
    cycles in which ``rst`` was high."""

    outputs: list
    cycles: int
    lost: tuple = ()
    resets: tuple = ()


def with_reset(dut):
    """``(top, rst)``: a module holding ``dut`` in an explicit ``sync`` domain, and that domain's reset
    (set it in a testbench to reset the design in that cycle)."""
    from amaranth.hdl import ClockDomain, Module

    top = Module()
    top.submodules.dut = dut
    top.domains.sync = domain = ClockDomain("sync")
    return top, domain.rst


def _ends_sample(payload: dict) -> bool:
    """An output payload completes its sample: a result (no ``last`` field) or an event with ``last``."""
    return bool(payload.get("last", True))


def lockstep(dut, model, inputs, *, until: Callable[[list], bool] | None = None, seed: int, p_valid: float = 1.0,
             p_ready: float = 1.0, probes: dict | None = None, observe: Callable | None = None,
             max_cycles: int = 100_000, p_reset: float = 0.0, max_resets: int = 0,
             reset_model: Callable[[], None] | None = None) -> LockstepRun:
    """Drive ``dut`` and its cycle ``model`` side by side and compare them every cycle.

    ``dut`` has streams ``i`` and ``o``; ``model`` the same handshakes in
    Python: ``in_ready()``, ``out_valid()``, ``out_payload`` (read before the
    clock edge) and ``step(in_valid, in_payload, out_ready) -> (accepted, taken)``.
    Each cycle the source offers the next of ``inputs`` with probability
    ``p_valid`` and the sink is ready with probability ``p_ready`` (one
    ``numpy`` generator seeded with ``seed``); then ``i.ready``, ``o.valid``,
    every ``probes`` entry ``name: (signal, model_value)`` (``model_value`` a
    function) and, while the output is valid, its payload must equal the
    model's, or an ``AssertionError`` names the cycle and the signal. The
    output must also keep the stream rule on its own (whatever the model
    does): once valid and not taken, valid again in the next cycle with the
    same payload.
    ``observe(ctx, cycle)`` runs after the checks of a cycle (to record
    monitors). The run ends before the first cycle in which
    ``until(outputs)`` holds, ``outputs`` being the payloads taken so far
    (``until`` None: once every sample of ``inputs`` has its output, or was lost).

    Resets: in every cycle in which a sample is in flight (an event of it
    accepted, its output not complete), the design's ``rst`` is high with
    probability ``p_reset``, at most ``max_resets`` times in the run; the source
    offers nothing and the sink is not ready in that cycle. Its checks see the
    state before the reset; then, instead of a step, ``reset_model()`` (default
    ``model.reset``) puts the model into its state after a reset, so every
    cycle after it is compared too (the CLEAR phase included). The samples in
    flight are lost: their remaining events are not sent, their outputs taken
    so far are dropped from ``outputs``, and their indices are
    :attr:`LockstepRun.lost`. An output completes a sample when it has no
    ``last`` field (a result) or ``last`` set.
    """
    rng = np.random.default_rng(seed)
    queue, sample = [], 0     # (sample index, event), samples delimited by `last`
    for event in inputs:
        queue.append((sample, event))
        sample += bool(event["last"])
    samples = sample
    if max_resets:
        design, rst = with_reset(dut)
        reset_model = reset_model or model.reset
    else:
        design, rst = dut, None
    checks = {"i.ready": (dut.i.ready, model.in_ready), "o.valid": (dut.o.valid, model.out_valid)}
    checks.update(probes or {})
    outputs, done = [], 0     # `done`: outputs of the samples completed so far
    in_flight, completed, lost, resets = [], [], [], []
    cycles = 0
    held = None          # payload offered and not taken in the previous cycle

    def finished(outputs_):
        if until is not None:
            return until(outputs_)
        return len(completed) + len(lost) == samples

    def reset_now():
        nonlocal held
        resets.append(cycles)
        lost.extend(in_flight)
        while queue and queue[0][0] in in_flight:   # the rest of the interrupted sample is not sent
            queue.pop(0)
        in_flight.clear()
        del outputs[done:]
        held = None
        reset_model()

    def compare(cycle: int, name: str, hardware, expected):
        assert hardware == expected, f"cycle {cycle}: {name}: hardware {hardware!r}, model {expected!r}"

    async def testbench(ctx):
        nonlocal cycles, held, done
        while not finished(outputs):
            assert cycles < max_cycles, f"lockstep: no end within {max_cycles} cycles (the design hangs)"
            offer = bool(queue) and rng.random() < p_valid
            ready = bool(rng.random() < p_ready)
            resetting = bool(in_flight) and len(resets) < max_resets and rng.random() < p_reset
            if resetting:
                offer = ready = False
            if rst is not None:
                ctx.set(rst, resetting)
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, queue[0][1])
            ctx.set(dut.o.ready, ready)
            for name, (signal, model_value) in checks.items():
                compare(cycles, name, ctx.get(signal), model_value())
            valid = bool(ctx.get(dut.o.valid))
            payload = to_python(ctx.get(dut.o.payload)) if valid else None
            if held is not None:
                assert valid and payload == held, (f"cycle {cycles}: stream rule: o offered {held!r} without being "
                                                   f"taken, now valid={valid}, payload {payload!r}")
            held = payload if valid and not ready else None
            if model.out_valid():
                payload = to_python(ctx.get(dut.o.payload))
                compare(cycles, "o.payload", payload, plain(model.out_payload))
                if ready:
                    outputs.append(payload)
                    if _ends_sample(payload):
                        done = len(outputs)
                        if in_flight:
                            completed.append(in_flight.pop(0))
            if observe is not None:
                observe(ctx, cycles)
            if resetting:
                reset_now()
                accepted = False
            else:
                accepted, _ = model.step(offer, queue[0][1] if offer else None, ready)
            await ctx.tick()
            if accepted:
                index, _ = queue.pop(0)
                if index not in in_flight:
                    in_flight.append(index)
            cycles += 1

    simulate(design, testbench)
    return LockstepRun(outputs, cycles, tuple(lost), tuple(resets))


def clear_cycles_seen(dut, events, reset_after: int, max_cycles: int = 100_000) -> tuple[int, int]:
    """The cycles ``dut.i.ready`` stays low from power-up, and after a one-cycle ``rst`` asserted
    ``reset_after`` cycles after ``i.ready`` first rose, while ``events`` are offered back to back (the
    sink always ready): the CLEAR phases, measured on the design alone."""
    top, rst = with_reset(dut)
    seen = []

    async def low_cycles(ctx):
        low = 0
        while not ctx.get(dut.i.ready):
            assert low < max_cycles, "clear_cycles_seen: i.ready never rises"
            await ctx.tick()
            low += 1
        return low

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        seen.append(await low_cycles(ctx))
        queue = list(events)
        for _ in range(reset_after):
            ctx.set(dut.i.valid, bool(queue))
            if queue:
                ctx.set(dut.i.payload, queue[0])
            taken = bool(queue) and ctx.get(dut.i.ready)
            await ctx.tick()
            if taken:
                queue.pop(0)
        ctx.set(dut.i.valid, 0)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        seen.append(await low_cycles(ctx))

    simulate(top, testbench)
    return seen[0], seen[1]


def lockstep_chain(stages, levels, seed: int, p_valid: float, p_ready: float, max_cycles: int = 400_000):
    """:func:`lockstep` of a :class:`~pascal_hdl.gateware.chain.StageChain` beside its
    :class:`~pascal_hdl.model.chain.ChainModel` on count-coded ``levels`` (fed in ``"chw"`` order), with
    ``rejected`` probed; the events every link's monitor showed must equal the models' hand-overs.
    Returns the run and those events per link."""
    from pascal_hdl.gateware.chain import StageChain
    from pascal_hdl.model.chain import ChainModel
    from pascal_hdl.model.conv import to_layout
    from pascal_hdl.model.engine import sample_events

    events = [e for sample in to_layout(levels, "chw") for e in sample_events(sample)]
    dut, models = StageChain(stages), ChainModel(stages)
    seen = [[] for _ in stages[:-1]]

    def note_links(ctx, cycle):
        for index in range(len(stages) - 1):
            monitor = getattr(dut, f"monitor{index}")
            if ctx.get(monitor.valid):
                seen[index].append(to_python(ctx.get(monitor.payload)))

    run = lockstep(dut, models, events, until=lambda outputs: len(outputs) == len(levels), seed=seed,
                   p_valid=p_valid, p_ready=p_ready, probes={"rejected": (dut.rejected, models.rejecting)},
                   observe=note_links, max_cycles=max_cycles)
    assert seen == [plain(e) for e in models.events]
    return run, seen

def handshakes_seen(dut, model, events, *, until: Callable[[list], bool], random_payload: Callable[[], dict],
                    seed: int = 3) -> set:
    """A :func:`lockstep` run under random idle and back-pressure that, in every cycle, flips ``i.valid``,
    the input payload (to ``random_payload()``) and ``o.ready`` and asserts that ``i.ready`` and
    ``o.valid`` do not change: no combinational path from the input side to the handshakes. Returns
    the ``(i.ready, o.valid)`` pairs seen."""
    probed = set()

    def flip_inputs(ctx, cycle):
        before = (ctx.get(dut.i.ready), ctx.get(dut.o.valid))
        valid, payload, ready = ctx.get(dut.i.valid), ctx.get(dut.i.payload), ctx.get(dut.o.ready)
        ctx.set(dut.i.valid, not valid)
        ctx.set(dut.i.payload, random_payload())
        ctx.set(dut.o.ready, not ready)
        assert (ctx.get(dut.i.ready), ctx.get(dut.o.valid)) == before, f"cycle {cycle}"
        ctx.set(dut.i.valid, valid)
        ctx.set(dut.i.payload, payload)
        ctx.set(dut.o.ready, ready)
        probed.add(before)

    lockstep(dut, model, events, until=until, seed=seed, p_valid=0.7, p_ready=0.6, observe=flip_inputs)
    return probed

def events_to_counts(events, features: int) -> np.ndarray:
    """Counts ``(samples, features)`` from events ``{index, count, last}`` (features not sent count 0)."""
    samples, current = [], np.zeros(features, np.int64)
    for event in events:
        current[event["index"]] = event["count"]
        if event["last"]:
            samples.append(current)
            current = np.zeros(features, np.int64)
    return np.array(samples)


def random_layer(rng, out_features: int, in_features: int, t_in: int, t_out: int | None, lanes: int,
                 weight_bits: int = 8) -> LayerConfig:
    """A layer with uniform random ``weight_bits``-bit weights (``t_out`` None: a readout), ``theta`` up to
    four times the largest weight and ``v0`` within twice it."""
    high = 1 << (weight_bits - 1)
    weight = rng.integers(-high + 1, high, (out_features, in_features))
    theta = None if t_out is None else rng.integers(1, 4 * high, out_features)
    v0 = rng.integers(-2 * high, 2 * high, out_features)
    return LayerConfig("layer", weight, t_in, t_out, theta, v0, lanes)


def random_neuron_cases(rng, n: int, current_width: int, v0_width: int, theta_width: int, max_t_in: int,
                        max_t_out: int) -> list[tuple]:
    """``n`` runs ``(currents, theta, v0, t_out)`` for a neuron unit of these port widths: random T1, T2,
    and per run uniform currents, or every current at the port's maximum, or every one at its minimum."""
    lo, hi = -(1 << (current_width - 1)), 1 << (current_width - 1)
    cases = []
    for _ in range(n):
        t_in, t_out = int(rng.integers(1, max_t_in + 1)), int(rng.integers(1, max_t_out + 1))
        mode = rng.integers(3)
        currents = {0: rng.integers(lo, hi, t_in), 1: np.full(t_in, hi - 1), 2: np.full(t_in, lo)}[int(mode)]
        theta = int(rng.integers(1, 1 << theta_width))
        v0 = int(rng.integers(-(1 << (v0_width - 1)), 1 << (v0_width - 1)))
        cases.append((currents, theta, v0, t_out))
    return cases


def conv_network(rng, kernel: int, stride: int, padding: int, levels, input_levels: int | None = 4,
                 input_shape=(2, 6, 6), channels=(3,), classes: int = 3, second: tuple | None = None,
                 weight_bits: int = 6, input_bits: int = 6):
    """``conv1 [act1, conv2] act, Flatten, Linear readout`` quantized by the golden model.

    ``levels``: the L of each conv layer; ``channels``: their output channels;
    ``second``: ``(kernel, stride, padding)`` of a second conv layer (or None).
    ``input_levels`` None: an analog input (standard normal calibration data), quantized to signed
    ``input_bits`` pixels over ``[-3, 3]``.
    Returns ``(network, integer model)``.
    """
    layers, shape = [], tuple(input_shape)
    geometry = [(kernel, stride, padding)] + ([second] if second is not None else [])
    for index, ((k, s, p), out, level) in enumerate(zip(geometry, channels, levels)):
        conv = Conv2d(f"conv{index + 1}", random_weight(rng, (out, shape[0], k, k)), rng.normal(0, 0.1, out),
                      stride=s, padding=p)
        layers += [conv, QCFS(f"act{index + 1}", 1.0, level)]
        shape = conv.output_shape(shape)
    flat = int(np.prod(shape))
    layers += [Flatten("flatten"), Linear("readout", random_weight(rng, (classes, flat)), rng.normal(0, 0.1, classes))]
    network = Network(tuple(input_shape), layers, input_levels, "conv-test")
    network = calibrate(network, random_inputs(network, rng, 16), percentile=95.0)
    return network, quantize(network, weight_bits=weight_bits, input_bits=input_bits, input_bound=3.0)


def random_levels(rng, batch: int, shape, high: int, density: float = 0.5) -> np.ndarray:
    """Integer levels ``(batch, *shape)`` in ``0..high``, each nonzero with probability ``density``;
    sample 1 is all zero and sample 2 all at ``high`` (when ``batch > 2``)."""
    levels = rng.integers(1, high + 1, (batch,) + tuple(shape)) * (rng.random((batch,) + tuple(shape)) < density)
    if batch > 2:
        levels[1], levels[2] = 0, high
    return levels.astype(np.int64)


def kept_events(config, events: list[dict]) -> tuple[np.ndarray, list[bool]]:
    """A stage's documented stream rule, written out independently of the cycle models: an event is kept
    if its index is below ``in_features``, ``t_min <= count <= t_in`` (``t_min`` 0 unless the stage reads
    an analog input) and its index is above the previous kept index of the sample. Returns the
    per-sample counts of the kept events ``(samples, in_features)`` and, per event, whether it is kept."""
    t_min = getattr(config, "t_min", 0)
    samples, kept, counts, previous = [], [], np.zeros(config.in_features, np.int64), -1
    for event in events:
        keep = (event["index"] < config.in_features and t_min <= event["count"] <= config.t_in
                and event["index"] > previous)
        kept.append(keep)
        if keep:
            counts[event["index"]], previous = event["count"], event["index"]
        if event["last"]:
            samples.append(counts)
            counts, previous = np.zeros(config.in_features, np.int64), -1
    return np.array(samples), kept


def random_pixels(rng, batch: int, shape, bound: int, density: float = 0.7) -> np.ndarray:
    """Signed integer pixels ``(batch, *shape)`` in ``-bound..bound`` (an analog input), each nonzero with
    probability ``density``; sample 1 is all zero, sample 2 all ``-bound`` and sample 3 all ``bound``
    (when ``batch > 3``)."""
    pixels = rng.integers(-bound, bound + 1, (batch,) + tuple(shape)) * (rng.random((batch,) + tuple(shape)) < density)
    if batch > 3:
        pixels[1], pixels[2], pixels[3] = 0, -bound, bound
    return pixels.astype(np.int64)


def residual_network(rng, blocks, levels, input_levels: int = 4, input_shape=(2, 6, 6), stem: int | None = 3,
                     classes: int = 3, weight_bits: int = 8):
    """``[conv stem, act], blocks..., GlobalAvgPool, Flatten, Linear readout`` quantized by the golden model.

    ``blocks``: per block ``(shortcut, out_channels, stride)``, ``shortcut`` ``"identity"`` (needs the
    same channels and stride 1) or ``"conv"`` (1x1 Conv2d with the stride); each block is ``conv1`` 3x3
    (stride, padding 1), ``act1``, ``conv2`` 3x3 (padding 1), ``act2``. ``stem``: output channels of a
    3x3 conv stem (None: none; the golden IR then refuses a block reading the network input). ``levels``: the L of every
    activation in order (stem, then ``act1``, ``act2`` of each block). Returns ``(network, integer model)``.
    """
    pick = iter(levels)
    layers, channels = [], input_shape[0]

    def weight(*shape):
        return random_weight(rng, shape)

    def bias(n):
        return rng.normal(0.0, 0.1, n)

    if stem is not None:
        layers += [Conv2d("stem", weight(stem, channels, 3, 3), bias(stem), padding=1), QCFS("stem_act", 1.0, next(pick))]
        channels = stem
    for number, (shortcut, out, stride) in enumerate(blocks):
        name = f"block{number}"
        conv1 = Conv2d(f"{name}.conv1", weight(out, channels, 3, 3), bias(out), stride=stride, padding=1)
        act1 = QCFS(f"{name}.act1", 1.0, next(pick))
        conv2 = Conv2d(f"{name}.conv2", weight(out, out, 3, 3), bias(out), padding=1)
        act2 = QCFS(f"{name}.act2", 1.0, next(pick))
        skip = None if shortcut == "identity" else Conv2d(f"{name}.shortcut", weight(out, channels, 1, 1), bias(out),
                                                          stride=stride)
        layers.append(BasicBlock(name, conv1, act1, conv2, act2, shortcut=skip))
        channels = out
    layers += [GlobalAvgPool("avgpool"), Flatten("flatten"), Linear("readout", weight(classes, channels), bias(classes))]
    network = Network(tuple(input_shape), layers, input_levels, "resnet-test")
    network = calibrate(network, random_inputs(network, rng, 16), percentile=95.0)
    return network, quantize(network, weight_bits=weight_bits)
