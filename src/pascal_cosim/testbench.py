"""The cocotb test that runs every harness of a simulation (run by :func:`pascal_cosim.runner.run`).

Not named ``test_*``: pytest must not collect it. Reads ``plan.json`` from
``$COSIM_RUN_DIR`` (written by :mod:`pascal_cosim.bench`): per harness
instance its description, stimulus file, settings and channels with their
payload layouts and expected transactions. Holds reset for two cycles while
the drivers load the rings and the settings, runs every harness to its
``done`` concurrently, and writes ``report.json`` (per harness: counters,
scoreboard messages and per-layer mismatch counts) and
``<instance>.capture.npz`` (what the hardware produced). Mismatches do not
fail this test: the host judges the report and names them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Timer

from pascal_cosim.components import HarnessSession
from pascal_cosim.payload import PayloadLayout, hex_to_words
from pascal_cosim.scoreboard import ChannelBoard, Scoreboard

RESET_CYCLES = 2


def _bench(dut, run_dir: Path, bench: dict, period_ns: int):
    """A :class:`HarnessSession` with its scoreboard and the sinks of its channels."""
    words = hex_to_words((run_dir / bench["stimulus"]).read_text())
    expected = np.load(run_dir / bench["expected"]) if bench.get("expected") else {}
    scoreboard = Scoreboard(bench.get("noun", "sample"))
    raw: dict[str, list[int]] = {}
    sinks = {}
    layouts = {}
    for channel in bench["channels"]:
        name, kind = channel["name"], channel["kind"]
        layout = PayloadLayout.from_json(channel["layout"])
        layouts[name] = layout
        if kind == "raw":
            raw[name] = []
            sinks[name] = raw[name].extend
            continue
        fields = {key.split("/", 1)[1]: expected[key] for key in expected.files if key.split("/", 1)[0] == name}
        scoreboard.add_channel(ChannelBoard(name, kind, channel["layer"], fields, channel["samples"],
                                            channel.get("features")))

        def sink(words, name=name, kind=kind, layout=layout):
            columns = layout.unpack_many(words)
            if kind == "events":
                scoreboard.events(name, columns["index"], columns["count"], columns["last"])
            else:
                scoreboard.results(name, columns)
        sinks[name] = sink
    session = HarnessSession(dut, bench["description"], words, bench["settings"], sinks,
                             cycle_limit=bench.get("cycle_limit", 0), period_ns=period_ns)
    return session, scoreboard, raw, layouts


@cocotb.test()
async def harness_session(dut):
    run_dir = Path(os.environ["COSIM_RUN_DIR"])
    plan = json.loads((run_dir / "plan.json").read_text())
    period = plan["clock_period_ns"]
    dut.rst.value = 1
    benches = [(bench, *_bench(dut, run_dir, bench, period)) for bench in plan["benches"]]
    for _, session, _, _, _ in benches:
        session.load()
    await Timer(RESET_CYCLES * period + 1, unit="ns")
    dut.rst.value = 0
    start, cpu = time.perf_counter(), time.process_time()
    tasks = [cocotb.start_soon(session.run()) for _, session, _, _, _ in benches]
    counters = [await task for task in tasks]
    # Wall and CPU time of the simulated part (the simulator and Python share this process).
    report = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, "benches": {}}
    for (bench, session, scoreboard, raw, layouts), counts in zip(benches, counters):
        scoreboard.finish()
        instance = bench["description"]["instance"]
        arrays = scoreboard.captured()
        for name, words in raw.items():
            for field, column in layouts[name].unpack_many(words).items():
                arrays[f"{name}.{field}"] = column
        np.savez(run_dir / f"{instance}.capture.npz", **arrays)
        report["benches"][instance] = {
            "counters": counts, "errors": scoreboard.errors, "error_count": scoreboard.error_count,
            "mismatches_per_layer": scoreboard.mismatches_per_layer(),
            "received": {board.name: board.received for board in scoreboard.channels.values()},
            "captured": {name: len(words) for name, words in raw.items()},
        }
    (run_dir / "report.json").write_text(json.dumps(report, indent=1))
