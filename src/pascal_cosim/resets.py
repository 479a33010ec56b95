"""Resets in the middle of samples: the network core's Verilog, ``rst`` at random cycles, then exact samples.

The core promises (docs/hardware.md, "Reset") that ``rst`` at any cycle returns it to a clean state:
every accumulator and feature map is cleared before the next sample is accepted, results in flight
are dropped, and sample numbers start again from 0. This bench checks that on the generated Verilog.

The samples are split into *epochs*. In each epoch the driver sends the epoch's samples back to back.
Every epoch but the last ends with a reset. The reset comes ``delay`` cycles after the driver has had
``cut`` input events accepted. ``cut`` is drawn inside a sample that is not the epoch's first, and
``delay`` is drawn below the sample's latency, so samples are in flight when ``rst`` rises. The events
of the epoch not sent by then are dropped. The next epoch starts with the cycle after the reset, on
a core that is still clearing its memories, with ``i.ready`` low.

For each epoch, the judge (:func:`judge`) expects this:

* the results that left before the reset equal the integer golden model on the epoch's first
  samples, numbered from 0;
* every sample a stage finished sending before the reset (its events up to ``last``, captured on the
  stage's ``monitor_*`` port) has that stage's counts of the golden model (an interrupted sample's
  partial events are dropped), and each stage finished at least the samples whose results left;
* at least one sample was in flight when ``rst`` rose (started, its result not yet taken);
* the last epoch gives every one of its samples.

A core that kept partial sums across the reset would give wrong logits for the next epoch's
samples. So would a core that kept stale feature-map words or kept counting sample numbers.

The testbench drives the core itself, one cycle at a time: the input is offered back to back and
the result is taken with probability ``ready_probability``. It runs about 10x slower than the
harnessed streams of :mod:`pascal_cosim.core`, so it is for short runs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np

__all__ = ["ResetRun", "core_reset_design", "cosim_resets", "judge", "judge_monitors", "reset_plan"]


@dataclass
class ResetRun:
    """What :func:`cosim_resets` returns: the plan's epochs, the testbench's report per epoch, wall times."""

    epochs: list[dict]
    report: dict
    run_dir: Path
    build_s: float
    run_s: float


def core_reset_design(folder, name: str | None = None):
    """The core of a build folder as a simulation top level of its own (ports ``clk``, ``rst``, ``i``, ``o``)."""
    from pascal_cosim.core import core_dut
    from pascal_cosim.runner import Design

    dut = core_dut(folder)
    if dut.memory_differences:
        raise ValueError(f"core reset bench: memory images differ from the Verilog: {dut.memory_differences[0]}")
    return dut, Design(name or f"{dut.top}_resets", dut.verilog, dut.top, dut.runtime_files, public_vars=())


def reset_plan(config, levels, epochs: int, latency, rng) -> list[dict]:
    """Epochs of samples (``levels``: one row per sample) with a reset inside each epoch but the last.

    ``latency`` per sample (cycles with one in flight) bounds the delay after the cut."""
    from pascal_cosim.core import input_words

    count = len(levels)
    if epochs < 1 or count < 3 * epochs:
        raise ValueError(f"reset plan: {count} samples are too few for {epochs} epochs of 3 or more")
    bounds = np.linspace(0, count, epochs + 1).astype(int)
    plan = []
    for number, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        words, firsts = input_words(levels[start:stop], config.input_features, config.input_levels, config.input_min)
        epoch = {"samples": [int(start), int(stop)], "words": [int(w) for w in words]}
        if number < epochs - 1:
            cut_sample = int(rng.integers(1, stop - start))      # a sample after the first one is cut
            ends = firsts[1:] + [len(words)]
            epoch["cut"] = int(rng.integers(firsts[cut_sample] + 1, ends[cut_sample] + 1))
            epoch["delay"] = int(rng.integers(0, max(1, int(latency[start + cut_sample]))))
        plan.append(epoch)
    return plan


def cosim_resets(folder, config, model, levels, simulator: str, *, run_name: str, root=None, epochs: int = 4,
                 ready_probability: float = 0.7, seed: int = 5) -> tuple[ResetRun, list[str]]:
    """Build the core of ``folder`` and run the epochs (:func:`reset_plan`) on ``simulator``.

    Returns the run and the judge's errors (empty: every result equals the golden model)."""
    from pascal_cosim.harness import CLOCK_PERIOD_NS
    from pascal_cosim.payload import PayloadLayout
    from pascal_cosim.runner import run
    from pascal_hdl.gateware.core import core_result_layout
    from pascal_hdl.gateware.engine import event_layout
    from pascal_hdl.model.core import expected_cycles

    levels = np.asarray(levels).reshape(len(levels), -1)
    rng = np.random.default_rng(seed)
    latency = expected_cycles(config, levels)
    epochs_plan = reset_plan(config, levels, epochs, latency, rng)
    _, design = core_reset_design(folder)
    worst = config.worst_case_cycles() + 16
    monitors = [{"port": f"monitor_{layer.name}", "layer": layer.name,
                 "layout": PayloadLayout.from_amaranth(event_layout(layer.out_features, layer.t_out)).to_json()}
                for layer in config.hidden]
    plan = {"testcase": "core_reset_session", "clock_period_ns": CLOCK_PERIOD_NS, "epochs": epochs_plan,
            "monitors": monitors,
            "result_layout": PayloadLayout.from_amaranth(core_result_layout(config)).to_json(),
            "last_bit": PayloadLayout.from_amaranth(event_layout(config.input_features, config.input_levels,
                                                                 config.input_min))["last"].offset,
            "ready_probability": ready_probability, "seed": int(rng.integers(1, 1 << 31)),
            "cycle_limit": int(len(levels) * worst / ready_probability) + config.clear_cycles * (epochs + 1) + 1000}
    result = run(design, simulator, plan, run_name, root, test_module=__name__, label="core reset testbench")
    outcome = ResetRun(epochs_plan, result.report, result.run_dir, result.build_s, result.run_s)
    return outcome, judge(outcome, config, model, levels)


def judge(outcome: ResetRun, config, model, levels) -> list[str]:
    """The errors of a run: per epoch, results against the integer golden model, in order and numbered
    from 0, a sample in flight at each reset, every sample of the last epoch; every stage's monitored
    samples (:func:`judge_monitors`)."""
    from pascal_ref.golden.quantize import integer_ann

    errors = judge_monitors(outcome, config, model, levels)
    report = outcome.report
    if report.get("error"):
        errors.append(report["error"])
    for number, (epoch, seen) in enumerate(zip(outcome.epochs, report["epochs"])):
        start, stop = epoch["samples"]
        results = seen["results"]
        last = number == len(outcome.epochs) - 1
        if last and len(results) != stop - start:
            errors.append(f"epoch {number}: {len(results)} results for its {stop - start} samples")
        if not last and seen["in_flight_at_reset"] < 1:
            errors.append(f"epoch {number}: no sample was in flight when rst rose")
        if len(results) > stop - start:
            errors.append(f"epoch {number}: {len(results)} results for {stop - start} samples sent")
            results = results[:stop - start]
        if not results:
            continue
        shown = levels[start:start + len(results)]
        golden = integer_ann(model, x_int=shown.reshape((len(shown),) + tuple(model.network.input_shape)))
        want_logits = np.asarray(golden.integer_logits, dtype=np.int64)
        for k, result in enumerate(results):
            image = start + k
            if result["sample"] != k:
                errors.append(f"epoch {number}: image {image} came out tagged sample {result['sample']}, expected {k}")
            if result["rejected"]:
                errors.append(f"epoch {number}: image {image} flagged rejected")
            if list(result["logits"]) != want_logits[k].tolist():
                errors.append(f"epoch {number}: image {image} logits {list(result['logits'])} != golden "
                              f"{want_logits[k].tolist()}")
            elif result["cls"] != int(np.argmax(want_logits[k])):
                errors.append(f"epoch {number}: image {image} class {result['cls']} != {int(np.argmax(want_logits[k]))}")
    if len(report["epochs"]) != len(outcome.epochs):
        errors.append(f"{len(report['epochs'])} epochs ran of {len(outcome.epochs)}")
    return errors


def judge_monitors(outcome: ResetRun, config, model, levels) -> list[str]:
    """Per epoch and stage, the samples the stage finished sending (``monitor_*`` events up to ``last``)
    against the golden model's counts of those images, in order; the events of a sample a reset
    interrupted are dropped. A stage must have finished every sample whose result left, and in the last
    epoch every sample."""
    from pascal_cosim.core import hidden_counts
    from pascal_cosim.scoreboard import ChannelBoard, Scoreboard
    from pascal_ref.golden.quantize import integer_ann

    levels = np.asarray(levels)
    golden = integer_ann(model, x_int=levels.reshape((len(levels),) + tuple(model.network.input_shape)))
    expected = hidden_counts(config, golden, levels)
    errors = []
    for number, (epoch, seen) in enumerate(zip(outcome.epochs, outcome.report["epochs"])):
        start, stop = epoch["samples"]
        last_epoch = number == len(outcome.epochs) - 1
        board = Scoreboard(noun="image")
        for layer, counts in zip(config.hidden, expected):
            channel = ChannelBoard(f"monitor_{layer.name}", "events", layer.name, {"counts": counts}, stop,
                                   layer.out_features)
            channel.received = start          # samples are numbered by image: the epoch's first is `start`
            board.add_channel(channel)
            events = seen.get("monitors", {}).get(f"monitor_{layer.name}")
            if events is None:
                errors.append(f"epoch {number}: nothing captured on monitor_{layer.name}")
                continue
            ends = [k for k, event in enumerate(events) if event[2]]
            complete = events[:ends[-1] + 1] if ends else []
            if last_epoch and len(complete) != len(events):
                errors.append(f"epoch {number}: layer {layer.name}: events after its last complete image")
            if complete:
                index, count, end = (np.array(column) for column in zip(*complete))
                board.events(channel.name, index, count, end)
            finished = channel.received - start
            needed = stop - start if last_epoch else len(seen["results"])
            if finished < needed:
                errors.append(f"epoch {number}: layer {layer.name} finished {finished} images, {needed} results "
                              f"{'were sent' if last_epoch else 'left before the reset'}")
        errors.extend(f"epoch {number}: {message}" for message in board.errors)
    return errors


# -- the cocotb test (run by pascal_cosim.runner.run with this module; not named test_*)


@cocotb.test()
async def core_reset_session(dut):
    """Performs ``plan.json``'s epochs on the core, writes ``report.json``."""
    import random
    import time

    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, ReadOnly

    from pascal_cosim.payload import PayloadLayout

    run_dir = Path(os.environ["COSIM_RUN_DIR"])
    plan = json.loads((run_dir / "plan.json").read_text())
    layout = PayloadLayout.from_json(plan["result_layout"])
    monitors = [(m["port"], getattr(dut, f"{m['port']}__valid"), getattr(dut, f"{m['port']}__payload"),
                 PayloadLayout.from_json(m["layout"])) for m in plan["monitors"]]
    chance = random.Random(plan["seed"])
    cocotb.start_soon(Clock(dut.clk, plan["clock_period_ns"], unit="ns").start())
    report = {"epochs": [], "error": None}
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    cycles, limit, start = 0, plan["cycle_limit"], time.perf_counter()
    for epoch in plan["epochs"]:
        words, cut, delay = epoch["words"], epoch.get("cut"), epoch.get("delay", 0)
        samples = epoch["samples"][1] - epoch["samples"][0]
        results, position, started, countdown = [], 0, 0, None
        events = {port: [] for port, _, _, _ in monitors}
        seen = {"results": results, "in_flight_at_reset": None, "monitors": events}
        report["epochs"].append(seen)
        while True:
            if cycles >= limit:
                report["error"] = f"cycle limit {limit} reached in epoch {len(report['epochs']) - 1}"
                break
            if countdown == 0:                # rst for one cycle, nothing offered or taken
                seen["in_flight_at_reset"] = started - len(results)
                dut.rst.value, dut.i__valid.value, dut.o__ready.value = 1, 0, 0
                await FallingEdge(dut.clk)
                dut.rst.value = 0
                cycles += 1
                break
            offer = position < len(words) and (cut is None or position < cut)
            dut.i__valid.value = int(offer)
            if offer:
                dut.i__payload.value = words[position]
            take = chance.random() < plan["ready_probability"]
            dut.o__ready.value = int(take)
            await ReadOnly()
            if offer and dut.i__ready.value:
                if position == 0 or (words[position - 1] >> plan["last_bit"]) & 1:   # a sample's first event
                    started += 1
                position += 1
            for port, valid, payload, event in monitors:       # a transfer between two stages
                if valid.value:
                    fields = event.unpack(int(payload.value))
                    events[port].append([int(fields["index"]), int(fields["count"]), int(fields["last"])])
            if take and dut.o__valid.value:
                fields = layout.unpack(int(dut.o__payload.value))
                results.append({key: (list(map(int, value)) if np.ndim(value) else int(value))
                                for key, value in fields.items()})
            if countdown is not None:
                countdown -= 1
            elif cut is not None and position == cut:
                countdown = delay
            await FallingEdge(dut.clk)
            cycles += 1
            if cut is None and len(results) == samples:
                break
        if report["error"]:
            break
    report["cycles"] = cycles
    report["wall_s"] = time.perf_counter() - start
    (run_dir / "report.json").write_text(json.dumps(report))
