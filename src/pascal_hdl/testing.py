"""Helpers for the Amaranth-simulator tests of the gateware: transactions, lockstep runs, random parameters.

* :func:`simulate` runs testbenches on a design (with a 1 MHz clock);
  :func:`stream_put` and :func:`stream_get` move one payload through an
  ``amaranth.lib.stream`` interface, so a test reads as transactions;
  :func:`to_python` turns a sampled payload into plain ``dict``/``list``/``int``.
* :func:`lockstep` runs a design beside its cycle model
  (:class:`~pascal_hdl.model.engine.EngineModel`,
  :class:`~pascal_hdl.model.core.CoreModel`) under random idle and
  back-pressure, compares the handshakes, any extra probes and every offered
  payload in every cycle, and names the first cycle and signal that differ.
* :func:`random_layer` and :func:`random_neuron_cases` draw engine and neuron
  parameters; :func:`events_to_counts` turns an event stream back into counts.
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
from pascal_ref.testing import mnist_like_images, mnist_shape_network

__all__ = ["simulate", "stream_put", "stream_get", "to_python", "plain", "LockstepRun", "lockstep",
           "events_to_counts", "random_layer", "random_neuron_cases", "mnist_shape_network", "mnist_like_images"]


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
    """What :func:`lockstep` saw: the payloads the sink took (plain Python) and the cycles run."""

    outputs: list
    cycles: int


def lockstep(dut, model, inputs, *, until: Callable[[list], bool], seed: int, p_valid: float = 1.0,
             p_ready: float = 1.0, probes: dict | None = None, observe: Callable | None = None,
             max_cycles: int = 100_000) -> LockstepRun:
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
    ``until(outputs)`` holds, ``outputs`` being the payloads taken so far.
    """
    rng = np.random.default_rng(seed)
    queue = list(inputs)
    checks = {"i.ready": (dut.i.ready, model.in_ready), "o.valid": (dut.o.valid, model.out_valid)}
    checks.update(probes or {})
    outputs = []
    cycles = 0
    held = None          # payload offered and not taken in the previous cycle

    def compare(cycle: int, name: str, hardware, expected):
        assert hardware == expected, f"cycle {cycle}: {name}: hardware {hardware!r}, model {expected!r}"

    async def testbench(ctx):
        nonlocal cycles, held
        while not until(outputs):
            assert cycles < max_cycles, f"lockstep: no end within {max_cycles} cycles (the design hangs)"
            offer = bool(queue) and rng.random() < p_valid
            ready = bool(rng.random() < p_ready)
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, queue[0])
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
            if observe is not None:
                observe(ctx, cycles)
            accepted, _ = model.step(offer, queue[0] if offer else None, ready)
            await ctx.tick()
            if accepted:
                queue.pop(0)
            cycles += 1

    simulate(dut, testbench)
    return LockstepRun(outputs, cycles)


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

