"""Co-simulation of the AXI4-Stream wrapper (:class:`pascal_hdl.board.axis.AxiStreamCore`) with
cocotbext-axi's ``AxiStreamSource`` and ``AxiStreamSink``, random pauses on both sides.

::

    host: packets (lists of tdata) --plan.json--> cocotb: AxiStreamSource --s_axis--> [AxiStreamCore]
                                                          AxiStreamSink   <--m_axis--
    host: result words, handshake trace <--report.json, trace.npy--

The design is the wrapper's own Verilog (:func:`axis_design`, weights inline as Amaranth writes
them), built once per simulator (:func:`pascal_cosim.runner.build`). Its ``clk`` is driven by
cocotb's ``Clock``, not by the HDL clock of :func:`pascal_cosim.harness.clock_wrapper` that the
ring-buffer benches use: cocotbext-axi samples ``tready``/``tvalid`` in a ``RisingEdge`` callback and
needs the values from before the edge. With the clock toggled inside the design, Verilator runs that
callback after the whole time step is evaluated, so it reads the values from *after* the edge; the
source then takes a beat for accepted one cycle early (or late), beats are lost or doubled, two packets
merge, the sink waits for a result that never comes and the run never ends (the first version of this
module: no ``report.json``). With the clock driven through the VPI, both simulators run the callback
before the edge is evaluated. A per-cycle Python callback is the cost of cocotbext-axi anyway.

:func:`cosim_axis` writes the packets and the settings into a run folder and runs the cocotb test
:func:`axis_session`: every packet is one ``AxiStreamFrame`` (one beat per element, ``tlast`` on its
last), every result one frame of one beat; the run ends when one result per packet has arrived and
no further result comes within :data:`QUIET_CYCLES`, or, failing, at a cycle limit (the report then
names what arrived: never a hang). On request the testbench records the handshake signals of the first
``trace_cycles`` cycles, and :func:`replay_trace` runs the wrapper's cycle model
(:class:`pascal_hdl.model.axis.AxiStreamCoreModel`) on the recorded inputs: every ``s_axis.tready``,
``m_axis.tvalid`` and result word must equal the model's in every cycle, and every beat offered must be
the next one of the packets (the source's view of the handshake is the design's).

:func:`expected_results` is what each packet must give (the wrapper's framing rules,
:func:`pascal_hdl.model.axis.beat_event`, then the integer golden model); :func:`check_results`
compares, in order.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AXIS_TOP", "QUIET_CYCLES", "RESET_CYCLES", "TRACE_FLAGS", "AxisRun", "axis_design", "axis_session",
           "check_results", "cosim_axis", "expected_results", "packet_sample", "replay_trace", "trace_columns"]

AXIS_TOP = "pascal_axis_core"
RESET_CYCLES = 4
QUIET_CYCLES = 64
"""Cycles the testbench waits after the last expected result for one that should not come."""

TRACE_FLAGS = ("tlast", "s_valid", "s_ready", "m_valid", "m_ready")
"""The trace word of a cycle (the values before its rising edge): ``s_axis.tdata`` in the low
:func:`~pascal_hdl.model.axis.sample_data_width` bits, then ``s_axis.tlast``, ``s_axis.tvalid``,
``s_axis.tready``, ``m_axis.tvalid``, ``m_axis.tready``, one bit each, in this order."""


def axis_design(config, name: str | None = None):
    """The :class:`~pascal_cosim.runner.Design` of the wrapper of ``config``: its Verilog is the top
    level (``clk``, ``rst``, ``s_axis__tdata`` ...; the clock comes from the testbench)."""
    from pascal_cosim.runner import Design
    from pascal_hdl.board.axis import AxiStreamCore
    from pascal_hdl.flow.generate import component_verilog

    text = component_verilog(AxiStreamCore(config), AXIS_TOP)
    return Design(name or f"axis-{config.name}-inflight{config.in_flight}", {f"{AXIS_TOP}.v": text},
                  toplevel=AXIS_TOP, public_vars=())


def packet_sample(config, packet) -> tuple[np.ndarray, bool]:
    """The sample the wrapper makes of one packet (``tdata`` values, ``tlast`` on the last) and whether
    it is malformed: the framing rules of :func:`pascal_hdl.model.axis.beat_event` (a level above
    ``input_levels`` counts as 0, a short packet ends the sample early, beats after feature ``N-1``
    are dropped)."""
    from pascal_hdl.model.axis import beat_event

    if len(packet) == 0:
        raise ValueError("an AXI4-Stream packet has at least one beat")
    levels = np.zeros(config.input_features, dtype=np.int64)
    malformed = False
    for position, value in enumerate(packet):
        event, bad, ends = beat_event(config, position, {"tdata": int(value), "tlast": position == len(packet) - 1})
        malformed = malformed or bad
        if event is not None:
            levels[event["index"]] = event["count"]
        if ends:
            break
    return levels, malformed


def expected_results(config, model, packets) -> list[dict]:
    """Per packet, the result the wrapper must give: ``{logits, cls, rejected, sample}``
    (the integer golden model, ``pascal_ref.golden.quantize.integer_ann``, of :func:`packet_sample`;
    ``sample`` is the packet's number modulo 2**16)."""
    from pascal_hdl.model.core import SAMPLE_TAG_WIDTH
    from pascal_ref.golden.quantize import integer_ann

    samples = [packet_sample(config, packet) for packet in packets]
    levels = np.stack([levels for levels, _ in samples])
    logits = np.asarray(integer_ann(model, x_int=levels.reshape((len(levels),) + tuple(model.network.input_shape)))
                        .integer_logits, dtype=np.int64)
    return [{"logits": row.tolist(), "cls": int(np.argmax(row)), "rejected": malformed,
             "sample": index % (1 << SAMPLE_TAG_WIDTH)}
            for index, (row, (_, malformed)) in enumerate(zip(logits, samples))]


def check_results(config, expected: list[dict], words: list[int], limit: int = 10) -> list[str]:
    """One line per result that differs from ``expected`` (in order; at most ``limit`` lines, then a
    count), and one for a missing or extra result."""
    from pascal_hdl.model.axis import unpack_result

    errors, count = [], 0
    for index, (want, word) in enumerate(zip(expected, words)):
        got = unpack_result(config, word)
        wrong = [key for key in ("logits", "cls", "rejected", "sample") if got[key] != want[key]]
        if wrong:
            count += 1
            if count <= limit:
                errors.append(f"packet {index}: " + ", ".join(f"{key} {got[key]} want {want[key]}" for key in wrong))
    if count > limit:
        errors.append(f"... {count - limit} more packets differ")
    if len(words) != len(expected):
        errors.append(f"{len(words)} results for {len(expected)} packets")
    return errors


@dataclass
class AxisRun:
    """A finished AXI4-Stream co-simulation."""

    simulator: str
    words: list[int]
    """The result words received, in order."""
    cycles: int
    """Clock cycles from the end of reset to the last result (and :data:`QUIET_CYCLES` after it)."""
    wall_s: float
    """Wall time of the simulated part (simulator and Python share the process)."""
    build_s: float
    run_s: float
    run_dir: Path
    error: str | None
    """The testbench's own finding (a result frame of more than one beat, a missing or extra result)."""
    trace: np.ndarray
    """Per traced cycle, the handshake word (see :func:`replay_trace`)."""

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.wall_s if self.wall_s else 0.0

    def results(self, config) -> list[dict]:
        from pascal_hdl.model.axis import unpack_result

        return [unpack_result(config, word) for word in self.words]


def _cycle_limit(config, packets, source_pause: float) -> int:
    """A bound no correct run reaches: every packet at the core's worst case, its beats slowed by the
    source's pauses, twice over."""
    beats = sum(len(packet) for packet in packets)
    stretch = 1.0 / max(1e-3, 1.0 - source_pause)
    return int(2 * (len(packets) * (config.worst_case_cycles() + 16) + beats) * stretch) + 1000


def cosim_axis(config, packets, simulator: str, run_name: str, root=None, *, seed: int = 1,
               source_pause: float = 0.3, sink_pause: float = 0.3, trace_cycles: int = 0,
               results: int | None = None, cycle_limit: int | None = None) -> AxisRun:
    """Send ``packets`` (lists of ``tdata`` values, ``tlast`` on each one's last beat) through the wrapper
    of ``config`` on ``simulator``; pauses on the source and the sink with probability ``source_pause``
    and ``sink_pause`` per cycle (random, from ``seed``). ``trace_cycles``: record the handshakes of
    that many cycles after reset. ``results``: how many results to wait for (default one per packet;
    more only to test the cycle limit); ``cycle_limit``: cycles after reset before the testbench gives up
    (default: far above any correct run). Raises :class:`pascal_cosim.runner.SimulationFailed` if the
    simulator or the testbench fails; the testbench's findings are in :attr:`AxisRun.error`."""
    from pascal_cosim.harness import CLOCK_PERIOD_NS
    from pascal_cosim.runner import run
    from pascal_hdl.model.axis import sample_data_width

    for name, probability in (("source_pause", source_pause), ("sink_pause", sink_pause)):
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {probability}")
    packets = [[int(value) for value in packet] for packet in packets]
    width = sample_data_width(config)
    for index, packet in enumerate(packets):
        if not packet or any(not 0 <= value < 1 << width for value in packet):
            raise ValueError(f"packet {index}: want 1 or more tdata values in 0..{(1 << width) - 1}")
    want = len(packets) if results is None else int(results)
    plan = {"testcase": "axis_session", "packets": packets, "results": want, "seed": int(seed),
            "source_pause": float(source_pause), "sink_pause": float(sink_pause), "clock_period_ns": CLOCK_PERIOD_NS,
            "trace_cycles": int(trace_cycles),
            "cycle_limit": int(cycle_limit or _cycle_limit(config, packets, source_pause)), "tdata_width": width}
    result = run(axis_design(config), simulator, plan, run_name, root, test_module=__name__,
                 label="AXI4-Stream testbench")
    report, build_s, run_s, run_dir = result.report, result.build_s, result.run_s, result.run_dir
    trace_path = run_dir / "trace.npy"
    trace = np.load(trace_path) if trace_path.is_file() else np.zeros(0, dtype=np.int64)
    return AxisRun(simulator, [int(word, 16) for word in report["words"]], report["cycles"], report["wall_s"],
                   build_s, run_s, run_dir, report["error"], trace)


def trace_columns(config, trace) -> dict[str, np.ndarray]:
    """``{tdata, tlast, s_valid, s_ready, m_valid, m_ready}`` per traced cycle (see :data:`TRACE_FLAGS`)."""
    from pascal_hdl.model.axis import sample_data_width

    trace, width = np.asarray(trace, dtype=np.int64), sample_data_width(config)
    columns = {"tdata": trace & ((1 << width) - 1)}
    columns.update({name: (trace >> (width + bit)) & 1 for bit, name in enumerate(TRACE_FLAGS)})
    return columns


def replay_trace(config, packets, words, trace, limit: int = 10) -> tuple[list[str], int]:
    """Run :class:`~pascal_hdl.model.axis.AxiStreamCoreModel` on the traced cycles' inputs (``s_axis``
    beat and ``tvalid``, ``m_axis.tready``) and compare, cycle by cycle: the beat offered is the next
    one of ``packets`` (the beats already taken, by the model's handshakes, dropped), ``s_axis.tready``
    while a beat is offered, ``m_axis.tvalid``, and each result word taken with ``words`` in order.
    Returns ``(error lines (at most limit, then a count), results the trace covered)``."""
    from pascal_hdl.model.axis import AxiStreamCoreModel

    beats = [(value, index == len(packet) - 1) for packet in packets for index, value in enumerate(packet)]
    columns = {name: column.tolist() for name, column in trace_columns(config, trace).items()}
    model = AxiStreamCoreModel(config)
    errors, count, taken_beats, taken_words = [], 0, 0, 0

    def error(cycle, text):
        nonlocal count
        count += 1
        if count <= limit:
            errors.append(f"cycle {cycle}: {text}")

    for cycle in range(len(columns["tdata"])):
        s_valid, s_ready = bool(columns["s_valid"][cycle]), bool(columns["s_ready"][cycle])
        m_valid, m_ready = bool(columns["m_valid"][cycle]), bool(columns["m_ready"][cycle])
        beat = {"tdata": columns["tdata"][cycle], "tlast": bool(columns["tlast"][cycle])}
        if s_valid:
            if taken_beats >= len(beats):
                error(cycle, f"s_axis offers a beat {beat} after the last packet was taken")
            elif (beat["tdata"], beat["tlast"]) != beats[taken_beats]:
                error(cycle, f"s_axis offers {beat}, want beat {taken_beats} {beats[taken_beats]} (a beat lost or "
                             "doubled)")
            if model.s_ready(beat) != s_ready:
                error(cycle, f"s_axis.tready {int(s_ready)}, model {int(model.s_ready(beat))}")
        if model.m_valid() != m_valid:
            error(cycle, f"m_axis.tvalid {int(m_valid)}, model {int(model.m_valid())}")
        if model.m_valid() and m_ready:
            want = model.m_payload["tdata"]
            if taken_words >= len(words) or words[taken_words] != want:
                got = f"{words[taken_words]:#x}" if taken_words < len(words) else "none"
                error(cycle, f"result {taken_words} {got}, model {want:#x}")
        accepted, taken = model.step(s_valid, beat if s_valid else None, m_ready)
        taken_beats += accepted
        taken_words += taken
    if count > limit:
        errors.append(f"... {count - limit} more")
    return errors, taken_words


def _pauses(seed, probability: float):
    """A pause generator for cocotbext-axi: True (pause this cycle) with ``probability``."""
    rng = np.random.default_rng(seed)
    while True:
        yield from (rng.random(4096) < probability).tolist()


try:  # the cocotb test: collected by cocotb's runner only (cocotb is importable without a simulator too)
    import cocotb
except ImportError:  # pragma: no cover - cocotb is a dependency of the cosim extra
    cocotb = None


if cocotb is not None:
    @cocotb.test()
    async def axis_session(dut):
        """Reset, send every packet of ``plan.json``, receive one result frame per packet, write
        ``report.json`` (and ``trace.npy``). Findings go into the report; the host judges them."""
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
        from cocotb.utils import get_sim_time
        from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

        run_dir = Path(os.environ["COSIM_RUN_DIR"])
        plan = json.loads((run_dir / "plan.json").read_text())
        period = plan["clock_period_ns"]
        clock, reset = dut.clk, dut.rst
        # The clock in C++ (no Python per half period), low first: no rising edge before the reset below
        # is seen by the source and the sink (they start their drivers when it is released).
        Clock(clock, period, unit="ns", impl="gpi").start(start_high=False)
        s_bus = AxiStreamBus.from_prefix(dut, "s_axis", bus_separator="__")
        m_bus = AxiStreamBus.from_prefix(dut, "m_axis", bus_separator="__")
        source = AxiStreamSource(s_bus, clock, reset, byte_lanes=1)
        sink = AxiStreamSink(m_bus, clock, reset, byte_lanes=1)
        source.set_pause_generator(_pauses([plan["seed"], 0], plan["source_pause"]))
        sink.set_pause_generator(_pauses([plan["seed"], 1], plan["sink_pause"]))
        reset.value = 1
        await ClockCycles(clock, RESET_CYCLES)
        reset.value = 0

        trace = []

        async def record(cycles: int):
            signals = [s_bus.tlast, s_bus.tvalid, s_bus.tready, m_bus.tvalid, m_bus.tready]  # TRACE_FLAGS
            tdata, width = s_bus.tdata, plan["tdata_width"]
            edge = RisingEdge(clock)
            for _ in range(cycles):
                await edge
                word = int(tdata.value)
                for bit, signal in enumerate(signals):
                    word |= int(signal.value) << (width + bit)
                trace.append(word)

        if plan["trace_cycles"]:
            cocotb.start_soon(record(plan["trace_cycles"]))
        start, cpu, first = time.perf_counter(), time.process_time(), get_sim_time("ns")
        for packet in plan["packets"]:
            await source.send(AxiStreamFrame(packet))
        words, error = [], None

        async def receive():
            while len(words) < plan["results"]:
                frame = await sink.recv()
                if len(frame.tdata) != 1:
                    raise AssertionError(f"result frame {len(words)} has {len(frame.tdata)} beats, want 1 "
                                         "(tlast on every result beat)")
                words.append(f"{frame.tdata[0]:x}")

        try:
            await with_timeout(receive(), plan["cycle_limit"] * period, "ns")
            await ClockCycles(clock, QUIET_CYCLES)
            if not sink.empty():
                error = f"{sink.count()} result(s) more than the {plan['results']} expected"
        except SimTimeoutError:
            error = (f"no end within {plan['cycle_limit']} cycles: {len(words)} of {plan['results']} results "
                     f"(source idle: {source.idle()})")
        except AssertionError as failure:
            error = str(failure)
        cycles = int((get_sim_time("ns") - first) // period)
        report = {"words": words, "cycles": cycles, "wall_s": time.perf_counter() - start,
                  "cpu_s": time.process_time() - cpu, "error": error}
        if trace:
            np.save(run_dir / "trace.npy", np.asarray(trace, dtype=np.int64))
        (run_dir / "report.json").write_text(json.dumps(report))
else:  # pragma: no cover
    axis_session = None
