"""Amaranth harnesses: the per-cycle work of a testbench, in hardware.

A harness wraps a generated design (its Verilog module, as an ``Instance``) so
that the simulator runs at its own speed and Python wakes only when a ring
buffer needs refilling or draining, or at the end::

    ring memory (beats + idle gaps) -> StimulusSource --i--> [ DUT ] --o--> capture ring   (ready: ReadyLfsr)
                                                               |  monitor_<layer> --> capture ring
                                          StreamChecker on i and o: valid held, payload stable until accepted

Python (``pascal_cosim.components``) writes the stimulus ring and reads the
capture rings through the simulator's VPI while the simulation is paused on a
``ValueChange`` of the harness's ``attention`` output, which toggles when a
ring's ``half`` flag changes or ``done`` rises; no Python code runs per clock
cycle.

Ring protocol (same for stimulus and capture rings, depth ``D`` a power of
two): entry ``k`` of the stream lives at address ``k mod D``; the ``half``
output is bit ``log2(D) - 1`` of the running count, so it toggles each time
``D/2`` entries have been fetched (stimulus) or written (capture).

:func:`harness_verilog` converts a harness to Verilog and :func:`clock_wrapper`
adds the top level that generates the clock in HDL (``always #5``), so the
simulator needs no callback per cycle either.
"""
import re

from amaranth import (
    Cat,
    ClockSignal,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    unsigned,
)
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.widths import Stage, check_int

__all__ = [
    "CLOCK_PERIOD_NS",
    "COUNT_WIDTH",
    "READY_ALWAYS",
    "CaptureRing",
    "NeuronHarness",
    "ReadyLfsr",
    "StimulusSource",
    "StreamChecker",
    "StreamHarness",
    "clock_wrapper",
    "harness_verilog",
    "ready_threshold",
]

COUNT_WIDTH = 32
"""Width of every count a harness exposes (beats, entries, samples)."""
READY_THRESHOLD_WIDTH = 17
READY_ALWAYS = 1 << 16
"""``ready_threshold`` value for a sink that is always ready."""
LFSR_TAPS = 0x80200003
"""Galois LFSR ``x^32 + x^22 + x^2 + x + 1`` (maximal length)."""
CLOCK_PERIOD_NS = 10


def ready_threshold(probability: float) -> int:
    """The ``ready_threshold`` for a sink that is ready in a cycle with ``probability``."""
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"ready probability must be in (0, 1], got {probability}")
    return READY_ALWAYS if probability >= 1.0 else max(1, round(probability * READY_ALWAYS))


def _log2(owner: str, name: str, depth: int) -> int:
    check_int(owner, name, depth, 2, 1 << 24)
    if depth & (depth - 1):
        raise ValueError(f"{owner}: {name} must be a power of two, got {depth}")
    return depth.bit_length() - 1


class StimulusSource(wiring.Component):
    """Beats from a ring memory to a stream, each after its own number of idle cycles.

    Ring word: ``payload`` in the low ``payload_width`` bits, the idle ``gap``
    (cycles with ``valid`` low before the beat is offered) above it.

    Members
    -------
    o : Out(stream.Signature(payload_width))
        Beats in ring order; ``valid`` is held with a stable payload until accepted
        (the beat sits in an output register). Back to back when every gap is 0.
    total : In(COUNT_WIDTH)
        Beats in the whole stimulus.
    loaded : In(COUNT_WIDTH)
        Beats written into the ring so far; a beat is fetched only once it is
        loaded (one cycle after ``loaded`` passes it).
    fetched : Out(COUNT_WIDTH)
        Beats moved from the ring into the output register.
    half : Out(1)
        Bit ``log2(depth) - 1`` of ``fetched``: when it toggles, the half of the
        ring just left may be refilled (every address except ``fetched mod depth``).
    starved : Out(COUNT_WIDTH)
        Cycles with no beat to offer although the stimulus is not finished
        (the driver was late); 0 in a correct run.
    """

    def __init__(self, payload_width: int, *, gap_width: int = 8, depth: int = 4096):
        check_int("StimulusSource", "payload_width", payload_width, 1)
        check_int("StimulusSource", "gap_width", gap_width, 0, 32)
        self.payload_width = payload_width
        self.gap_width = gap_width
        self.depth = depth
        self.address_width = _log2("StimulusSource", "depth", depth)
        super().__init__({
            "o": Out(stream.Signature(unsigned(payload_width))),
            "total": In(COUNT_WIDTH),
            "loaded": In(COUNT_WIDTH),
            "fetched": Out(COUNT_WIDTH),
            "half": Out(1),
            "starved": Out(COUNT_WIDTH),
        })

    @property
    def word_width(self) -> int:
        return self.payload_width + self.gap_width

    def elaborate(self, platform):
        m = Module()
        m.submodules.ring = ring = memory.Memory(shape=unsigned(self.word_width), depth=self.depth, init=[])
        port = ring.read_port()
        fetched, starved = self.fetched, self.starved
        primed = Signal()            # the read port holds ring[fetched] (one cycle after reset)
        loaded_late = Signal(COUNT_WIDTH)  # `loaded` one cycle late: the ring write is visible by then
        have = Signal()
        payload = Signal(self.payload_width)
        wait = Signal(max(self.gap_width, 1))
        m.d.sync += [primed.eq(1), loaded_late.eq(self.loaded)]

        take = self.o.valid & self.o.ready
        fetch = primed & (fetched != loaded_late) & (~have | take)
        # The read address runs one fetch ahead, so the data port always shows ring[fetched].
        # (Adders whose inputs change only per beat: event-driven simulators re-evaluate less.)
        following = Signal(COUNT_WIDTH)
        m.d.comb += [
            following.eq(fetched + 1),
            port.addr.eq(Mux(fetch, following, fetched)[:self.address_width]),
            self.o.valid.eq(have & (wait == 0)),
            self.o.payload.eq(payload),
            self.half.eq(fetched[self.address_width - 1]),
        ]
        with m.If(fetch):
            m.d.sync += [fetched.eq(following), have.eq(1), payload.eq(port.data[:self.payload_width])]
            if self.gap_width:
                m.d.sync += wait.eq(port.data[self.payload_width:])
        with m.Else():
            with m.If(take):
                m.d.sync += have.eq(0)
            with m.If(have & (wait != 0)):
                m.d.sync += wait.eq(wait - 1)
            with m.If(primed & ~have & (fetched != self.total)):
                m.d.sync += starved.eq(starved + 1)
        return m


class ReadyLfsr(wiring.Component):
    """A pseudo-random ``ready``: high in a cycle when the LFSR's low 16 bits are below ``threshold``.

    32-bit Galois LFSR (:data:`LFSR_TAPS`), loaded with ``seed`` (0 counts as 1)
    in the first cycle after reset and stepped every cycle, so the same seed
    gives the same ready pattern on every simulator. ``threshold =``
    :data:`READY_ALWAYS` makes ``ready`` constantly high (and the LFSR stands
    still: logic that toggles every cycle is what costs in an event-driven
    simulator).
    """

    seed: In(COUNT_WIDTH)
    threshold: In(READY_THRESHOLD_WIDTH)
    ready: Out(1)

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=1)
        seeded = Signal()
        with m.If(~seeded):
            m.d.sync += [state.eq(Mux(self.seed == 0, 1, self.seed)), seeded.eq(1)]
        with m.Elif(self.threshold != READY_ALWAYS):
            m.d.sync += state.eq(Mux(state[0], (state >> 1) ^ LFSR_TAPS, state >> 1))
        m.d.comb += self.ready.eq(seeded & (state[:16] < self.threshold))
        return m


class CaptureRing(wiring.Component):
    """Writes the payload of every cycle with ``valid`` into a ring memory.

    Members
    -------
    valid : In(1)
        Capture in this cycle (a stream handshake, or a monitor's valid).
    payload : In(payload_width)
    count : Out(COUNT_WIDTH)
        Entries written; entry ``k`` is at address ``k mod depth``.
    half : Out(1)
        Bit ``log2(depth) - 1`` of ``count``: toggles when a half of the ring is full.
    """

    def __init__(self, payload_width: int, *, depth: int = 4096):
        check_int("CaptureRing", "payload_width", payload_width, 1)
        self.payload_width = payload_width
        self.depth = depth
        self.address_width = _log2("CaptureRing", "depth", depth)
        super().__init__({
            "valid": In(1),
            "payload": In(payload_width),
            "count": Out(COUNT_WIDTH),
            "half": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ring = ring = memory.Memory(shape=unsigned(self.payload_width), depth=self.depth, init=[])
        port = ring.write_port()
        m.d.comb += [
            port.addr.eq(self.count[:self.address_width]),
            port.data.eq(self.payload),
            port.en.eq(self.valid),
            self.half.eq(self.count[self.address_width - 1]),
        ]
        with m.If(self.valid):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class StreamChecker(wiring.Component):
    """The stream contract on one stream: once offered, ``valid`` stays high and
    the payload stable until the beat is accepted.

    ``violations`` counts the cycles that break it (saturating). A harness ends
    its run (``done``) in the cycle after the first one, so the testbench knows
    that cycle without a cycle counter in hardware.
    """

    def __init__(self, payload_width: int):
        check_int("StreamChecker", "payload_width", payload_width, 1)
        super().__init__({
            "valid": In(1),
            "ready": In(1),
            "payload": In(payload_width),
            "violations": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        stalled = Signal()
        held = Signal.like(self.payload)
        m.d.sync += stalled.eq(self.valid & ~self.ready)
        with m.If(self.valid & ~self.ready):  # (held only when needed: cheaper in event-driven simulators)
            m.d.sync += held.eq(self.payload)
        broken = stalled & (~self.valid | (self.payload != held))
        with m.If(broken & (self.violations != (1 << 16) - 1)):
            m.d.sync += self.violations.eq(self.violations + 1)
        return m


def _port_map(ports) -> dict[str, tuple[str, int]]:
    """``{name: (direction, width)}`` from :func:`pascal_hdl.flow.generate.verilog_ports` rows."""
    return {p["name"]: (p["direction"], int(p["width"])) for p in ports}


class _HarnessBase(wiring.Component):
    """Run control shared by the harnesses: ``done`` and ``attention``.

    No cycle counter: a counter toggling every cycle costs an event-driven
    simulator as much as a small block of the design. The testbench measures
    cycles as simulation time and enforces the cycle limit with a timer.
    """

    def _run_control(self, m, finished, halves):
        """``done`` (sticky) from the cycle after ``finished``; ``attention`` toggles in every cycle in which
        ``done`` or one of the rings' ``halves`` flags changes, so the testbench needs one value-change
        callback per harness (a simulator checks every registered callback after every evaluation)."""
        with m.If(finished):
            m.d.sync += self.done.eq(1)
        watched = Cat(self.done, *halves)
        previous = Signal(len(watched))
        parity = Signal()
        changed = watched != previous
        m.d.sync += [previous.eq(watched), parity.eq(parity ^ changed)]
        m.d.comb += self.attention.eq(parity ^ changed)

    def _held(self, m, *names) -> dict:
        """The setting inputs ``names`` through a register each (without reset: valid from the first
        cycle after reset). The logic then depends on registers only, so a compiled simulator does not
        re-evaluate it whenever it evaluates the top-level inputs (Verilator: every evaluation step)."""
        held = {}
        for name in names:
            port = getattr(self, name)
            held[name] = Signal.like(port, name=f"{name}_held", reset_less=True)
            m.d.sync += held[name].eq(port)
        return held


_RUN_MEMBERS = {
    "done": Out(1),
    "attention": Out(1),
}


class StreamHarness(_HarnessBase):
    """A stream design between a stimulus ring and capture rings.

    Parameters
    ----------
    module : str
        Verilog module of the design (compiled beside the harness).
    ports : list of dict
        Its ports (``pascal_hdl.flow.generate.verilog_ports`` or a manifest's
        ``ports``), named as Amaranth flattens streams: ``<stream>__valid``,
        ``__ready``, ``__payload``; ``clk`` and ``rst``.
    input, output : str
        The input and output streams (``i``, ``o``).
    monitors : sequence of str
        Observation ports ``<name>__valid``/``__payload`` to capture (no ready).
    end_bit : int or None
        Bit of the output payload that ends a sample (an event's ``last``);
        None: every output beat is one sample.
    stim_depth, capture_depth, gap_width : int
        Ring sizes (powers of two) and the width of the idle gap per beat.

    Members
    -------
    stim_total, stim_loaded, stim_fetched, stim_half, stim_starved
        The stimulus ring (:class:`StimulusSource`).
    samples : In(COUNT_WIDTH)
        Output samples to wait for; ``done`` rises when the last one is taken.
    ready_threshold, seed
        Back-pressure on the output (:class:`ReadyLfsr`).
    done : Out(1)
        The last sample has been taken, or a stream checker saw a violation
        (in the cycle before ``done``; the run stops there).
    attention : Out(1)
        Toggles whenever ``done`` or a ring's ``half`` flag changes: the one
        signal the testbench waits on.
    accepted : Out(COUNT_WIDTH)
        Input beats the design accepted.
    cap_<channel>_count, cap_<channel>_half
        One :class:`CaptureRing` per captured channel (the output, then the monitors).
    <stream>_violations
        A :class:`StreamChecker` on the input and on the output stream.
    """

    def __init__(self, module: str, ports, *, input: str = "i", output: str = "o", monitors=(),
                 end_bit: int | None = None, stim_depth: int = 4096, capture_depth: int = 4096,
                 gap_width: int = 8):
        owner = "StreamHarness"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module):
            raise ValueError(f"{owner}: module must be a Verilog identifier, got {module!r}")
        table = _port_map(ports)
        needed = {"clk": "input", "rst": "input", f"{input}__valid": "input", f"{input}__ready": "output",
                  f"{input}__payload": "input", f"{output}__valid": "output", f"{output}__ready": "input",
                  f"{output}__payload": "output"}
        for name in monitors:
            needed.update({f"{name}__valid": "output", f"{name}__payload": "output"})
        for name, direction in needed.items():
            if name not in table:
                raise ValueError(f"{owner}: module {module} has no port {name!r}")
            if table[name][0] != direction:
                raise ValueError(f"{owner}: port {name!r} of {module} is an {table[name][0]}, expected {direction}")
        unknown_inputs = sorted(n for n, (d, _) in table.items() if d == "input" and n not in needed)
        if unknown_inputs:
            raise ValueError(f"{owner}: inputs of {module} the harness cannot drive: {', '.join(unknown_inputs)}")
        self.module = module
        self.ports = table
        self.input, self.output = input, output
        self.monitors = tuple(monitors)
        out_width = table[f"{output}__payload"][1]
        if end_bit is not None:
            check_int(owner, "end_bit", end_bit, 0, out_width - 1)
        self.end_bit = end_bit
        self.stim_depth, self.capture_depth, self.gap_width = stim_depth, capture_depth, gap_width
        self.source = StimulusSource(table[f"{input}__payload"][1], gap_width=gap_width, depth=stim_depth)
        self.channels = (output,) + self.monitors
        self.captures = {name: CaptureRing(table[f"{name}__payload"][1], depth=capture_depth)
                         for name in self.channels}
        members = dict(_RUN_MEMBERS)
        members.update({
            "stim_total": In(COUNT_WIDTH),
            "stim_loaded": In(COUNT_WIDTH),
            "stim_fetched": Out(COUNT_WIDTH),
            "stim_half": Out(1),
            "stim_starved": Out(COUNT_WIDTH),
            "samples": In(COUNT_WIDTH),
            "ready_threshold": In(READY_THRESHOLD_WIDTH),
            "seed": In(COUNT_WIDTH),
            "accepted": Out(COUNT_WIDTH),
        })
        for name in self.channels:
            members[f"cap_{name}_count"] = Out(COUNT_WIDTH)
            members[f"cap_{name}_half"] = Out(1)
        for name in (input, output):
            members[f"{name}_violations"] = Out(16)
        super().__init__(members)

    def describe(self, instance: str) -> dict:
        """What the cocotb components need: port and memory names under ``instance``, ring depths."""
        return {
            "kind": "stream", "instance": instance, "module": self.module,
            "stim_ring": "source.ring", "stim_depth": self.stim_depth, "gap_width": self.gap_width,
            "stim_payload_width": self.source.payload_width,
            "capture_depth": self.capture_depth,
            "channels": {name: {"ring": f"cap_{name}.ring", "width": self.captures[name].payload_width}
                         for name in self.channels},
            "output": self.output, "input": self.input, "monitors": list(self.monitors),
            "payload_widths": {"input": self.source.payload_width,
                               "output": self.captures[self.output].payload_width},
        }

    def elaborate(self, platform):
        m = Module()
        m.submodules.source = source = self.source
        m.submodules.backpressure = ready = ReadyLfsr()
        i, o = self.input, self.output
        sig = {name: Signal(width, name=f"dut_{name}") for name, (_, width) in self.ports.items()
               if name not in ("clk", "rst")}
        connections = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for name, s in sig.items():
            connections[("i_" if self.ports[name][0] == "input" else "o_") + name] = s
        m.submodules.dut = Instance(self.module, **connections)

        setting = self._held(m, "stim_total", "stim_loaded", "samples", "ready_threshold", "seed")
        m.d.comb += [
            source.total.eq(setting["stim_total"]),
            source.loaded.eq(setting["stim_loaded"]),
            self.stim_fetched.eq(source.fetched),
            self.stim_half.eq(source.half),
            self.stim_starved.eq(source.starved),
            sig[f"{i}__valid"].eq(source.o.valid),
            sig[f"{i}__payload"].eq(source.o.payload),
            source.o.ready.eq(sig[f"{i}__ready"]),
            ready.seed.eq(setting["seed"]),
            ready.threshold.eq(setting["ready_threshold"]),
            sig[f"{o}__ready"].eq(ready.ready),
        ]
        with m.If(source.o.valid & source.o.ready):
            m.d.sync += self.accepted.eq(self.accepted + 1)

        taken = sig[f"{o}__valid"] & sig[f"{o}__ready"]
        for name, capture in self.captures.items():
            m.submodules[f"cap_{name}"] = capture
            valid = taken if name == o else sig[f"{name}__valid"]
            m.d.comb += [capture.valid.eq(valid), capture.payload.eq(sig[f"{name}__payload"]),
                         getattr(self, f"cap_{name}_count").eq(capture.count),
                         getattr(self, f"cap_{name}_half").eq(capture.half)]
        for name in (i, o):
            m.submodules[f"check_{name}"] = checker = StreamChecker(self.ports[f"{name}__payload"][1])
            m.d.comb += [checker.valid.eq(sig[f"{name}__valid"]), checker.ready.eq(sig[f"{name}__ready"]),
                         checker.payload.eq(sig[f"{name}__payload"]),
                         getattr(self, f"{name}_violations").eq(checker.violations)]

        ends = Signal(COUNT_WIDTH)
        end = taken if self.end_bit is None else taken & sig[f"{o}__payload"][self.end_bit]
        ends_after = Signal(COUNT_WIDTH)
        m.d.comb += ends_after.eq(ends + 1)
        with m.If(end):
            m.d.sync += ends.eq(ends_after)
        violated = (getattr(self, f"{i}_violations") != 0) | (getattr(self, f"{o}_violations") != 0)
        self._run_control(m, (Mux(end, ends_after, ends) >= setting["samples"]) | violated,
                          [source.half] + [capture.half for capture in self.captures.values()])
        return m


def neuron_case_layout(neuron, gap_width: int = 8) -> data.StructLayout:
    """A case of :class:`NeuronHarness`: parameters, currents ``I[0..max_t_in-1]``, idle ``gap``."""
    from amaranth import signed
    return data.StructLayout({
        "t_in": unsigned(neuron.max_t_in.bit_length()),
        "t_out": unsigned(neuron.max_t_out.bit_length()),
        "theta": unsigned(neuron.theta_width),
        "v0": signed(neuron.v0_width),
        "currents": data.ArrayLayout(signed(neuron.current_width), neuron.max_t_in),
        "gap": unsigned(gap_width),
    })


def neuron_trace_layout(neuron, case_width: int = 24) -> data.StructLayout:
    """One traced cycle of :class:`NeuronHarness`: the case in progress and every port of the unit."""
    from amaranth import signed
    return data.StructLayout({
        "case": unsigned(case_width),
        "start": 1,
        "stage": Stage,
        "step": range(max(neuron.max_t_in, neuron.max_t_out)),
        "excitatory": 1,
        "inhibitory": 1,
        "spike": 1,
        "v": signed(neuron.widths.v_width),
        "c": signed(neuron.widths.c_width),
        "count": range(neuron.max_t_out + 1),
        "ready": 1,
    })


class NeuronHarness(_HarnessBase):
    """Runs a PASC-IF neuron unit through a ring of cases and traces every cycle.

    The per-cycle driving of the unit is done here, in hardware. A case is
    started (``start`` with its ``v0``, ``theta``, ``t_in``, ``t_out``) when
    the unit is ready and either it is IDLE and has been for ``gap`` cycles,
    or ``gap == 0`` and this is the last TRANSMIT cycle of the previous run
    (back to back); IDLE cycles are counted while the case is offered. ``current`` is ``currents[step]`` of the case in progress in
    INTEGRATE cycles, else 0. From the first start on, every cycle is written
    to the trace ring (:func:`neuron_trace_layout`, ``case`` = the case in
    progress before this cycle's start); after the last start, the whole run
    and one IDLE cycle, then ``done``.

    Parameters
    ----------
    neuron : PascIfNeuron
        The unit's parameters (its Verilog, module ``module``, is compiled beside).
    module : str
        Verilog module name of the unit.
    """

    def __init__(self, neuron, module: str, *, case_depth: int = 4096, trace_depth: int = 16384,
                 gap_width: int = 8, case_width: int = 24):
        self.neuron = neuron
        self.module = module
        self.case_layout = neuron_case_layout(neuron, gap_width)
        self.trace_layout = neuron_trace_layout(neuron, case_width)
        self.case_width = case_width
        self.source = StimulusSource(self.case_layout.size, gap_width=0, depth=case_depth)
        self.trace = CaptureRing(self.trace_layout.size, depth=trace_depth)
        members = dict(_RUN_MEMBERS)
        members.update({
            "stim_total": In(COUNT_WIDTH),
            "stim_loaded": In(COUNT_WIDTH),
            "stim_fetched": Out(COUNT_WIDTH),
            "stim_half": Out(1),
            "stim_starved": Out(COUNT_WIDTH),
            "cap_trace_count": Out(COUNT_WIDTH),
            "cap_trace_half": Out(1),
        })
        super().__init__(members)

    def describe(self, instance: str) -> dict:
        return {
            "kind": "neuron", "instance": instance, "module": self.module,
            "stim_ring": "source.ring", "stim_depth": self.source.depth, "gap_width": 0,
            "stim_payload_width": self.case_layout.size,
            "capture_depth": self.trace.depth,
            "channels": {"trace": {"ring": "cap_trace.ring", "width": self.trace_layout.size}},
        }

    def elaborate(self, platform):
        m = Module()
        n = self.neuron
        m.submodules.source = source = self.source
        m.submodules.cap_trace = trace = self.trace
        setting = self._held(m, "stim_total", "stim_loaded")
        total = setting["stim_total"]
        m.d.comb += [source.total.eq(total), source.loaded.eq(setting["stim_loaded"]),
                     self.stim_fetched.eq(source.fetched), self.stim_half.eq(source.half),
                     self.stim_starved.eq(source.starved),
                     self.cap_trace_count.eq(trace.count), self.cap_trace_half.eq(trace.half)]

        port = {name: Signal(member.shape, name=f"unit_{name}") for name, member in n.signature.members.items()}
        connections = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for name, member in n.signature.members.items():
            connections[("i_" if member.flow == In else "o_") + name] = port[name]
        m.submodules.unit = Instance(self.module, **connections)

        nxt = data.View(self.case_layout, source.o.payload)
        current = Signal(self.case_layout, init={"t_in": 1, "t_out": 1, "theta": 1})
        stage, step = port["stage"], port["step"]
        started = Signal(COUNT_WIDTH)
        idle_cycles = Signal(self.case_layout["gap"].shape)
        tail = Signal(COUNT_WIDTH)        # cycles still to trace after the last start
        last_transmit = (stage == Stage.TRANSMIT) & (step == current.t_out - 1)
        start = Signal()
        m.d.comb += start.eq(source.o.valid & port["ready"] & (
            ((stage == Stage.IDLE) & (idle_cycles == nxt.gap)) | (last_transmit & (nxt.gap == 0))))
        m.d.comb += source.o.ready.eq(start)
        params = Mux(start, nxt.as_value(), current.as_value())
        chosen = data.View(self.case_layout, params)
        m.d.comb += [
            port["start"].eq(start),
            port["v0"].eq(nxt.v0),
            port["theta"].eq(chosen.theta),
            port["t_in"].eq(chosen.t_in),
            port["t_out"].eq(chosen.t_out),
            port["current"].eq(Mux(stage == Stage.INTEGRATE, current.currents[step], 0)),
        ]
        with m.If(start):
            m.d.sync += [current.eq(nxt), started.eq(started + 1), idle_cycles.eq(0)]
        with m.Elif((stage == Stage.IDLE) & source.o.valid & (idle_cycles != (1 << len(idle_cycles)) - 1)):
            m.d.sync += idle_cycles.eq(idle_cycles + 1)

        row = Signal(self.trace_layout)
        m.d.comb += [row.case.eq(started - 1), row.start.eq(start), row.stage.eq(stage), row.step.eq(step),
                     row.excitatory.eq(port["excitatory"]), row.inhibitory.eq(port["inhibitory"]),
                     row.spike.eq(port["spike"]), row.v.eq(port["v"]), row.c.eq(port["c"]),
                     row.count.eq(port["count"]), row.ready.eq(port["ready"])]
        tracing = (started != 0) & ((started != total) | (tail != 0))
        m.d.comb += [trace.valid.eq(tracing), trace.payload.eq(row)]
        last_start = start & (started + 1 == total)
        t_in, t_out = nxt.t_in, nxt.t_out
        with m.If(last_start):
            # The run (T1 + max(T1, T2) - 1 + T2 cycles) and one IDLE cycle.
            m.d.sync += tail.eq(t_in + Mux(t_in > t_out, t_in, t_out) + t_out)
        with m.Elif(tail != 0):
            m.d.sync += tail.eq(tail - 1)
        finished = (total == 0) | ((started == total) & (tail == 1) & ~start)
        self._run_control(m, finished, [source.half, trace.half])
        return m


_MEMORY_INIT = r"(\n  reg \[\d+:0\] {name} \[\d+:0\];\n)  initial begin\n(?:    {name}\[\d+\] = [^;\n]+;\n)*  end\n"


def harness_verilog(harness, name: str, rings=()) -> str:
    """Verilog of a harness, module ``name``.

    The harness's own ring memories (``rings``: Verilog memory names of the
    harness modules, e.g. ``ring``) lose the zero initialization Amaranth
    writes for them (thousands of lines a simulator would compile for
    nothing: the driver writes every entry before it is read).
    """
    from amaranth.back import verilog

    text = verilog.convert(harness, name=name, emit_src=False)
    for ring in rings:
        text = re.sub(_MEMORY_INIT.format(name=re.escape(ring)), r"\1", text)
    return text


def clock_wrapper(instances, name: str = "cosim_top") -> str:
    """A Verilog top level that generates the clock in HDL and instantiates harnesses.

    ``instances``: ``(harness module, instance name, harness ports)`` triples.
    The clock (period :data:`CLOCK_PERIOD_NS` ns) and ``rst`` are shared; every
    other port of instance ``inst`` is a top-level port ``inst__<port>``, driven
    or read by the testbench.
    """
    ports, decls, blocks = ["rst"], ["  input wire rst;"], []
    for module, instance, harness_ports in instances:
        conns = ["    .clk(clk)", "    .rst(rst)"]
        for p in harness_ports:
            if p["name"] in ("clk", "rst"):
                continue
            top = f"{instance}__{p['name']}"
            width = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
            ports.append(top)
            decls.append(f"  {p['direction']} wire {width}{top};")
            conns.append(f"    .{p['name']}({top})")
        blocks.append(f"  {module} {instance} (\n" + ",\n".join(conns) + "\n  );")
    half = CLOCK_PERIOD_NS // 2
    return ("`timescale 1ns/1ps\n// Clock in HDL: no simulator callback per cycle.\n"
            f"module {name}({', '.join(ports)});\n" + "\n".join(decls) + "\n"
            f"  reg clk = 1'b0;\n  always #{half} clk = ~clk;\n" + "\n".join(blocks) + "\nendmodule\n")
