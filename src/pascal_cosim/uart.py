"""UART co-simulation of the host link: the board's top level on one side of a serial line, the
driver's protocol code on the other.

::

    host (Python: protocol.encode_frame)  --UartSource-->  rx [ HostLink: UART, parser, queue, core ]
    host (Python: protocol.FrameReader)   <--UartSink----  tx [           reply framer, UART        ]

The design is :class:`pascal_hdl.board.hostlink.HostLink` converted to Verilog (the core, its
weights inline, as a bitstream would have them) under the clock wrapper of the other co-simulations
(:func:`pascal_cosim.harness.clock_wrapper`: the clock runs in HDL). The cocotb side
(:func:`uart_session`) sends the bytes of a :class:`Script` with cocotbext-uart's ``UartSource``,
drives ``rx`` itself for a byte with a broken stop bit, pulses ``rst``, and decodes ``tx`` with
cocotbext-uart's ``UartSink`` and :class:`~pascal_hdl.board.protocol.FrameReader`: Python wakes on
the UART's bit timers, a line's falling edge and each received byte, never on the clock (no callback
per cycle: an idle line costs Python nothing). It writes what it received (every frame and when it completed)
to ``report.json``; the host (:func:`run_script`, :func:`judge`) compares it with what
:class:`~pascal_hdl.board.protocol.LinkModel` predicts (the board's parser at the frame level, the
integer golden model for the results) and with the cycle model
(:func:`pascal_hdl.model.core.expected_cycles`) for each result's ``cycles``.

Line and clock: the simulated clock has a period of :data:`~pascal_cosim.harness.CLOCK_PERIOD_NS`
(100 MHz), the link is built with ``clk_freq = 100 MHz`` and ``baud = clk_freq / DIVISOR`` (4 cycles
per bit, the least :func:`~pascal_hdl.board.hostlink.uart_divisor` allows: 25 Mbaud in simulated
time), and ``timeout_cycles`` of :data:`TIMEOUT_BYTES` byte times.
The host's bit edges fall on the clock's falling edge (no race with the sampling edge).

Flow control is the driver's (:meth:`pascal_hdl.board.driver.Board.classify`): a step is sent once
at most ``window - 1`` replies are outstanding (``window`` 1: once every earlier reply is in).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np

from pascal_hdl.board import protocol
from pascal_hdl.board.protocol import ErrorCode, ErrorReply, Frame, FrameType, LinkModel, Result, Status, encode_frame

__all__ = ["DIVISOR", "TIMEOUT_BYTES", "RESET_CYCLES", "UartLink", "Segment", "Script", "UartRun", "uart_link",
           "run_script", "run_errors", "model_cycles", "compare_frames", "judge", "judge_queue_full", "judge_after_garbage",
           "link_figures", "uart_session"]

DIVISOR = 4                 # clock cycles per UART bit in simulation (the least HostLink takes)
TIMEOUT_BYTES = 8           # the link's timeout_cycles, in byte times (at least 2)
RESET_CYCLES = 4            # cycles of rst for a reset step
BITS_PER_BYTE = 10          # 8N1
TESTCASE = "uart_session"


# -- the design


@dataclass
class UartLink:
    """A host link ready for simulation: the component (identity, divisor, timeout) and its design."""

    link: object            # pascal_hdl.board.hostlink.HostLink
    config: object          # pascal_hdl.config.CoreConfig
    design: object          # pascal_cosim.runner.Design
    instance: str = "link"

    @property
    def identity(self) -> protocol.Identity:
        return self.link.identity

    @property
    def divisor(self) -> int:
        return self.link.divisor

    @property
    def timeout_cycles(self) -> int:
        return self.link.timeout_cycles

    @property
    def byte_cycles(self) -> int:
        return BITS_PER_BYTE * self.divisor


def uart_link(config, *, model_name: str, digest: bytes | None = None, queue_depth: int | None = None,
              divisor: int = DIVISOR, design_name: str | None = None) -> UartLink:
    """:class:`HostLink` of ``config`` clocked as the simulation's clock (``clk_freq`` = 1 / period),
    ``divisor`` cycles per bit, and its design: the link's Verilog (module ``hostlink``) and the clock
    wrapper (instance ``link``: top-level ports ``link__rx``, ``link__tx``, ``link__busy``,
    ``link__error``). ``digest`` defaults to :func:`protocol.weight_digest` of ``config``."""
    from amaranth.back import verilog

    from pascal_cosim.harness import CLOCK_PERIOD_NS, clock_wrapper
    from pascal_cosim.runner import Design
    from pascal_hdl.board.hostlink import DEFAULT_QUEUE_DEPTH, HostLink
    from pascal_hdl.flow.generate import verilog_ports

    clk_freq = 10**9 // CLOCK_PERIOD_NS
    if (10**9) % (divisor * CLOCK_PERIOD_NS):
        raise ValueError(f"uart cosim: a bit of {divisor * CLOCK_PERIOD_NS} ns must divide a second "
                         "(cocotbext-uart times bits in whole ns)")
    link = HostLink(config, clk_freq=clk_freq, baud=clk_freq // divisor, model_name=model_name,
                    digest=protocol.weight_digest(config) if digest is None else digest,
                    queue_depth=DEFAULT_QUEUE_DEPTH if queue_depth is None else queue_depth,
                    timeout_cycles=TIMEOUT_BYTES * BITS_PER_BYTE * divisor)
    text = verilog.convert(link, name="hostlink", emit_src=False)
    wrapper = clock_wrapper([("hostlink", "link", verilog_ports(text, "hostlink"))])
    name = design_name or f"uart_{config.name}"
    design = Design(name, {"hostlink.v": text, "cosim_top.v": wrapper}, "cosim_top", public_vars=())
    return UartLink(link, config, design)


# -- the host's script and what the board must answer


@dataclass
class Segment:
    """A part of a script judged on its own: the steps ``[first, end)`` and the replies to them.

    ``expected`` are the replies :class:`LinkModel` predicts (``None``: the segment is judged by a
    rule of its own), ``levels`` the sample of each expected RESULT in order, ``samples`` the levels
    of every SAMPLE frame sent (for rule-judged segments)."""

    name: str
    first: int
    end: int = 0
    expected: list[Frame] | None = field(default_factory=list)
    levels: list[np.ndarray] = field(default_factory=list)
    samples: list[np.ndarray] = field(default_factory=list)


class Script:
    """The steps the cocotb side performs, built with the replies the board must give.

    Every step is also applied to a :class:`LinkModel` (``classify(levels) -> (logits, class)``: the
    integer golden model), so each step knows how many replies it brings (a rule-judged segment,
    ``predicted=False``, gives the count itself). Steps: ``send`` (bytes to the source, once at
    most ``window - 1`` replies are outstanding), ``idle`` (the source done, then the line idle for
    some cycles), ``broken_byte`` (the host drives ``rx``: a byte whose stop bit is 0), ``reset``
    (``rst`` for :data:`RESET_CYCLES` cycles, with the line idle or a number of bit times after the
    last send began), ``quiet`` (wait until no reply came for some cycles; its replies are not
    counted in advance), ``drain`` (wait for every reply) and ``tail`` (wait, to catch extra replies).
    """

    def __init__(self, ulink: UartLink, classify):
        self.ulink = ulink
        self.classify = classify
        self._classified: list[np.ndarray] = []
        self.model = LinkModel(ulink.identity, self._record)
        self.steps: list[dict] = []
        self.segments: list[Segment] = []

    def _record(self, levels):
        self._classified.append(np.asarray(levels, dtype=np.int64))
        return self.classify(levels)

    # -- segments

    def segment(self, name: str, predicted: bool = True) -> Segment:
        """Start a segment; the previous one ends with a drain (every reply in before this one begins)."""
        if self.segments:
            self.drain()
            self.segments[-1].end = len(self.steps)
        segment = Segment(name, len(self.steps), expected=[] if predicted else None)
        self.segments.append(segment)
        return segment

    @property
    def current(self) -> Segment:
        return self.segments[-1]

    def _collect(self, replies: list[Frame]) -> int:
        segment = self.current
        if segment.expected is not None:
            segment.expected.extend(replies)
            results = sum(frame.type == FrameType.RESULT for frame in replies)
            if results:
                segment.levels.extend(self._classified[-results:])
        return len(replies)

    # -- steps

    def send(self, data: bytes, window: int = 1, replies: int | None = None) -> None:
        """``data`` to the board; ``replies`` only in a segment that the model does not predict."""
        data = bytes(data)
        if self.current.expected is not None:
            if replies is not None:
                raise ValueError("Script.send: replies are predicted in this segment")
            replies = self._collect(self.model.feed(data))
        elif replies is None:
            raise ValueError(f"Script.send: segment '{self.current.name}' needs the number of replies")
        self.steps.append({"op": "send", "data": data.hex(), "replies": int(replies), "window": int(window)})

    def sample(self, levels, window: int = 1, replies: int | None = None) -> None:
        levels = np.asarray(levels, dtype=np.int64)
        self.current.samples.append(levels)
        self.send(encode_frame(FrameType.SAMPLE, bytes(int(v) for v in levels)), window, replies)

    def burst(self, samples, replies: int) -> None:
        """SAMPLE frames of ``samples`` back to back in one step (a rule-judged segment: ``replies``)."""
        samples = [np.asarray(levels, dtype=np.int64) for levels in samples]
        self.current.samples.extend(samples)
        self.send(b"".join(encode_frame(FrameType.SAMPLE, bytes(int(v) for v in levels)) for levels in samples),
                  replies=replies)

    def request(self, frame_type: FrameType, replies: int | None = None) -> None:
        self.send(encode_frame(frame_type), replies=replies)

    def idle(self, cycles: int | None = None) -> None:
        """The line idle for ``cycles`` (default: the link's timeout and four byte times more)."""
        cycles = self.ulink.timeout_cycles + 4 * self.ulink.byte_cycles if cycles is None else int(cycles)
        replies = 0
        if self.current.expected is not None:
            self.model.idle(cycles)
            replies = self._collect(self.model.feed(b""))
        self.steps.append({"op": "idle", "cycles": cycles, "replies": replies})

    def broken_byte(self, value: int) -> None:
        """``value`` with a stop bit of 0, then the line back to 1: a UART framing error."""
        from pascal_hdl.model.uart import uart_bits

        replies = 0
        if self.current.expected is not None:
            self.model.framing_error()
            replies = self._collect(self.model.feed(b""))
        self.steps.append({"op": "bits", "levels": uart_bits(value)[:-1] + [0], "replies": replies})

    def reset(self, after_bits: float | None = None) -> None:
        """``rst``: with the line idle (``after_bits`` None) or ``after_bits`` bit times after the last
        send began (the model is reset; what the board makes of the rest of a byte cut by a reset is
        not predicted: use it in a rule-judged segment)."""
        self.model.reset()
        step = {"op": "reset", "cycles": RESET_CYCLES}
        if after_bits is not None:
            step["after_bits"] = float(after_bits)
        self.steps.append(step)

    def quiet(self, cycles: int | None = None) -> None:
        """Once the source is done, wait until no reply arrived for ``cycles`` (default: the idle of
        :meth:`idle`, so the link is hunting again); the replies meanwhile were not counted in advance."""
        cycles = self.ulink.timeout_cycles + 4 * self.ulink.byte_cycles if cycles is None else int(cycles)
        self.steps.append({"op": "quiet", "cycles": cycles})

    def drain(self) -> None:
        self.steps.append({"op": "drain"})

    def tail(self, cycles: int) -> None:
        self.steps.append({"op": "tail", "cycles": int(cycles)})

    def plan(self, reply_timeout_cycles: int) -> dict:
        from pascal_cosim.harness import CLOCK_PERIOD_NS

        if self.segments:
            self.segments[-1].end = len(self.steps)
        identity = self.ulink.identity
        return {"testcase": TESTCASE, "clock_period_ns": CLOCK_PERIOD_NS, "divisor": self.ulink.divisor,
                "instance": self.ulink.instance, "reset_cycles": RESET_CYCLES,
                "max_payload": max(protocol.IDENTITY_BYTES, identity.result_bytes),
                "reply_timeout_cycles": int(reply_timeout_cycles), "steps": self.steps}


# -- running and judging


@dataclass
class UartRun:
    """What the host received in one simulation."""

    simulator: str
    frames: list[Frame]
    times_ps: list[int]              # when each frame's last byte was read
    steps: list[dict]                # per step: time_ps when it began, received (frames by then)
    faults: list[str]                # FrameReader errors on tx, a reply cut by a reset
    hang: str | None                 # a reply that never came
    busy_at_end: int                 # the link's busy and error outputs after the last step
    error_at_end: int
    period_ps: int
    sim_cycles: int
    wall_s: float
    cpu_s: float
    build_s: float
    run_s: float
    bytes_sent: int
    bytes_received: int
    run_dir: Path

    def frames_of(self, segment: Segment) -> tuple[list[Frame], list[int]]:
        """The frames received from the start of ``segment`` to the start of the next one."""
        first = self.steps[segment.first]["received"] if segment.first < len(self.steps) else len(self.frames)
        end = self.steps[segment.end]["received"] if segment.end < len(self.steps) else len(self.frames)
        return self.frames[first:end], self.times_ps[first:end]

    @property
    def cycles_per_s(self) -> float:
        return self.sim_cycles / max(self.wall_s, 1e-9)


def run_script(ulink: UartLink, script: Script, simulator: str, run_name: str, root=None,
               reply_timeout_cycles: int | None = None) -> UartRun:
    """Build (once per simulator) and run ``script`` against ``ulink``'s design.

    ``reply_timeout_cycles``: a reply that does not come within this many cycles ends the run (a
    hang, reported); default: the link's timeout plus a worst-case sample's core cycles and a
    reply's byte times, for every sample slot.
    """
    from pascal_cosim.harness import CLOCK_PERIOD_NS
    from pascal_cosim.runner import run

    if reply_timeout_cycles is None:
        longest_reply = protocol.FRAME_OVERHEAD + max(protocol.IDENTITY_BYTES, ulink.identity.result_bytes)
        per_sample = ulink.config.worst_case_cycles() + 2 * longest_reply * ulink.byte_cycles
        reply_timeout_cycles = ulink.timeout_cycles + (ulink.link.queue_depth + 2) * per_sample
    plan = script.plan(reply_timeout_cycles)
    result = run(ulink.design, simulator, plan, run_name, root, test_module=__name__, label="UART testbench")
    report, build_s, run_s, run_dir = result.report, result.build_s, result.run_s, result.run_dir
    frames = [Frame(entry["type"], bytes.fromhex(entry["payload"])) for entry in report["frames"]]
    return UartRun(simulator, frames, [entry["time_ps"] for entry in report["frames"]], report["steps"],
                   report["faults"], report["hang"], report["busy"], report["error"], CLOCK_PERIOD_NS * 1000,
                   report["sim_time_ps"] // (CLOCK_PERIOD_NS * 1000),
                   report["wall_s"], report["cpu_s"], build_s, run_s, report["bytes_sent"], report["bytes_received"],
                   run_dir)


def _describe(frame: Frame, identity: protocol.Identity) -> str:
    try:
        if frame.type == FrameType.ERROR:
            return f"ERROR {ErrorReply.decode(frame.payload).describe()}"
        if frame.type == FrameType.STATUS_REPLY:
            return f"STATUS_REPLY {Status.decode(frame.payload)}"
        if frame.type == FrameType.IDENTITY:
            return f"IDENTITY {protocol.Identity.decode(frame.payload)}"
        if frame.type == FrameType.RESULT:
            return f"RESULT {Result.decode(frame.payload, identity.classes, identity.logit_bytes)}"
    except protocol.ProtocolError as error:
        return f"frame type 0x{frame.type:02x} that does not decode ({error})"
    return f"frame type 0x{frame.type:02x} payload {frame.payload.hex()}"


_CYCLES: dict = {}


def model_cycles(config, levels) -> np.ndarray:
    """:func:`pascal_hdl.model.core.expected_cycles` of ``levels`` (kept per config and samples: the
    Python cycle model takes ~20 ms a sample)."""
    from pascal_hdl.model.core import expected_cycles

    levels = np.asarray(levels, dtype=np.int64).reshape(len(levels), -1)
    key = (id(config), levels.tobytes())
    if key not in _CYCLES:
        _CYCLES[key] = (config, expected_cycles(config, levels))
    return _CYCLES[key][1]


def compare_frames(name: str, frames: list[Frame], expected: list[Frame], levels, config,
                   identity: protocol.Identity) -> tuple[list[str], int]:
    """Messages for every reply that differs from ``expected`` (RESULT: sample number, class, flags and
    logits equal to the model's, ``cycles`` equal to :func:`expected_cycles` of its sample; every other
    frame byte for byte), and the number of RESULTs that differ."""
    errors, bad_results = [], 0
    if len(frames) != len(expected):
        errors.append(f"{name}: {len(frames)} replies, expected {len(expected)}: got "
                      f"[{', '.join(_describe(f, identity) for f in frames[:6])}], want "
                      f"[{', '.join(_describe(f, identity) for f in expected[:6])}]")
    cycles = model_cycles(config, levels) if len(levels) else []
    result_index = 0
    for position, (got, want) in enumerate(zip(frames, expected)):
        if want.type != FrameType.RESULT:
            if got != want:
                errors.append(f"{name}: reply {position}: {_describe(got, identity)}, "
                              f"expected {_describe(want, identity)}")
            continue
        wanted = Result.decode(want.payload, identity.classes, identity.logit_bytes)
        want_cycles = int(cycles[result_index])
        result_index += 1
        if got.type != FrameType.RESULT:
            bad_results += 1
            errors.append(f"{name}: reply {position}: {_describe(got, identity)}, expected a RESULT for sample "
                          f"{wanted.sample}")
            continue
        try:
            result = Result.decode(got.payload, identity.classes, identity.logit_bytes)
        except protocol.ProtocolError as error:
            bad_results += 1
            errors.append(f"{name}: reply {position}: {error}")
            continue
        fields = [(key, getattr(result, key), getattr(wanted, key)) for key in ("sample", "cls", "rejected", "logits")]
        fields.append(("cycles", result.cycles, want_cycles))
        wrong = [f"{key} {value} want {other}" for key, value, other in fields if value != other]
        if wrong:
            bad_results += 1
            errors.append(f"{name}: sample {wanted.sample}: " + "; ".join(wrong))
    return errors, bad_results


def run_errors(run: UartRun) -> list[str]:
    """Faults of the whole run: a hang, frames from the board that do not decode, a link still busy
    after the last step."""
    errors = [f"hang: {run.hang}"] if run.hang else []
    if not run.hang and run.busy_at_end:
        errors.append("the link is still busy after the last step")
    return errors + [f"tx: {fault}" for fault in run.faults]


def judge(run: UartRun, script: Script, segment: Segment) -> tuple[list[str], int]:
    """A predicted segment: its replies against the model's (:func:`compare_frames`)."""
    frames, _ = run.frames_of(segment)
    return compare_frames(segment.name, frames, segment.expected, segment.levels, script.ulink.config,
                          script.ulink.identity)


def judge_after_garbage(run: UartRun, script: Script, segment: Segment, garbage_steps: int) -> dict:
    """A segment that begins with bytes cut by a reset (``garbage_steps`` steps, the last a ``quiet``):
    every reply to them must be an ERROR; after them, the good samples and the STATUS must be what a
    freshly reset :class:`LinkModel` answers, its error counter at the number of those ERRORs."""
    frames, _ = run.frames_of(segment)
    boundary = run.steps[segment.first + garbage_steps]["received"] - run.steps[segment.first]["received"]
    garbage, rest = frames[:boundary], frames[boundary:]
    identity = script.ulink.identity
    errors = [f"{segment.name}: reply {k} to the cut frame is {_describe(f, identity)}, not an ERROR"
              for k, f in enumerate(garbage) if f.type != FrameType.ERROR]
    model = LinkModel(identity, script.classify)
    model.errors = len(garbage)
    expected, levels = [], []
    for step in script.steps[segment.first + garbage_steps:segment.end]:
        if step["op"] == "send":
            data = bytes.fromhex(step["data"])
            if data[2] == FrameType.SAMPLE:
                levels.append(np.frombuffer(data[5:-2], dtype=np.uint8).astype(np.int64))
            expected += model.feed(data)
        elif step["op"] == "idle":
            model.idle(step["cycles"])
            expected += model.feed(b"")
    more, _ = compare_frames(segment.name, rest, expected, levels, script.ulink.config, identity)
    return {"errors": errors + more, "garbage": [_describe(f, identity) for f in garbage], "after": len(rest)}


def judge_queue_full(run: UartRun, script: Script, segment: Segment, burst_step: int) -> dict:
    """The burst segment: SAMPLE frames back to back (step ``burst_step`` of the segment), faster than
    the core takes them. Each gets one reply: a RESULT or ``ERROR QUEUE_FULL (detail 0)``. An ERROR is
    sent at the end of the frame it rejects and begins before the next frame ends (control replies go
    first, and a SAMPLE frame takes longer than a RESULT and an ERROR on the line): when it began names
    the frame. The accepted frames,
    fed to :class:`LinkModel` alone, must give the RESULTs (logits, class, numbers) and, with the
    rejections counted as errors, the STATUS and the rest of the segment."""
    frames, times = run.frames_of(segment)
    identity, config, ulink = script.ulink.identity, script.ulink.config, script.ulink
    step = script.steps[segment.first + burst_step]
    data = bytes.fromhex(step["data"])
    frame_bytes = protocol.FRAME_OVERHEAD + identity.input_features
    count = len(data) // frame_bytes
    bit_ps = ulink.divisor * run.period_ps
    start = run.steps[segment.first + burst_step]["time_ps"]
    ends = [start + (k + 1) * frame_bytes * BITS_PER_BYTE * bit_ps for k in range(count)]
    error_bits = (protocol.FRAME_OVERHEAD + protocol.ERROR_BYTES) * BITS_PER_BYTE
    errors, rejected = [], []
    burst, rest = frames[:count], frames[count:]
    for frame, done in zip(burst, times):
        if frame.type != FrameType.ERROR:
            continue
        if frame.payload != ErrorReply(ErrorCode.QUEUE_FULL, 0).encode():
            errors.append(f"{segment.name}: {_describe(frame, identity)} in the burst, expected QUEUE_FULL (detail 0)")
        began = done - (error_bits - 5) * bit_ps          # a few bits after the reply's start
        rejected.append(max((k for k in range(count) if ends[k] <= began), default=-1))
    if len(set(rejected)) != len(rejected) or -1 in rejected:
        errors.append(f"{segment.name}: the QUEUE_FULL replies do not name distinct frames: {rejected}")
    model = LinkModel(identity, script.classify)
    samples = segment.samples
    expected, levels = [], []
    for k in range(count):
        if k not in rejected:
            expected += model.feed(data[k * frame_bytes:(k + 1) * frame_bytes])
            levels.append(samples[k])
    got_results = [f for f in burst if f.type == FrameType.RESULT]
    more, _ = compare_frames(f"{segment.name} (accepted samples)", got_results, expected, levels, config, identity)
    errors += more
    model.errors = len(rejected)
    expected, levels = [], []
    for later in script.steps[segment.first + burst_step + 1:segment.end]:
        if later["op"] == "send":
            later_data = bytes.fromhex(later["data"])
            if later_data[2] == FrameType.SAMPLE:
                levels.append(np.frombuffer(later_data[5:-2], dtype=np.uint8).astype(np.int64))
            expected += model.feed(later_data)
    more, _ = compare_frames(f"{segment.name} (after the burst)", rest, expected, levels, config, identity)
    errors += more
    results = [Result.decode(f.payload, identity.classes, identity.logit_bytes) for f in got_results]
    return {"errors": errors, "sent": count, "rejected": sorted(rejected), "results": results}


def link_figures(identity: protocol.Identity, core_cycles_per_image: float, *, clk_freq: float = 12e6,
                 bauds=(115_200, 1_000_000)) -> dict:
    """Bytes per image each way, and images/s at each baud rate for a core clocked at ``clk_freq``:
    the link (8N1: 10 bits a byte, the slower direction; the two directions overlap) against the
    core (``clk_freq / core_cycles_per_image``), whichever is lower."""
    to_board = protocol.FRAME_OVERHEAD + identity.input_features
    from_board = protocol.FRAME_OVERHEAD + identity.result_bytes
    core = clk_freq / core_cycles_per_image
    rates = {}
    for baud in bauds:
        link = baud / BITS_PER_BYTE / max(to_board, from_board)
        rates[baud] = {"link_images_per_s": link, "core_images_per_s": core, "images_per_s": min(link, core),
                       "limited_by": "link" if link < core else "core"}
    return {"bytes_to_board": to_board, "bytes_from_board": from_board, "clk_freq": clk_freq,
            "core_cycles_per_image": core_cycles_per_image, "rates": rates}


# -- the cocotb side (runs inside the simulator)


class _Hang(Exception):
    pass


@cocotb.test()
async def uart_session(dut):
    """The cocotb test: performs ``plan.json``'s steps, writes ``report.json`` (not named ``test_*``:
    pytest must not collect it)."""
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import Event, First, Timer
    from cocotbext.uart import UartSink, UartSource

    run_dir = Path(os.environ["COSIM_RUN_DIR"])
    plan = json.loads((run_dir / "plan.json").read_text())
    period_ps = plan["clock_period_ns"] * 1000
    bit_ps = plan["divisor"] * period_ps
    baud = 10**12 // bit_ps
    instance = plan["instance"]
    rx, tx = getattr(dut, f"{instance}__rx"), getattr(dut, f"{instance}__tx")
    dut.rst.value = 1
    source = UartSource(rx, baud=baud)
    sink = UartSink(tx, baud=baud)
    reader = protocol.FrameReader(max_payload=plan["max_payload"])
    frames, faults, log = [], [], []
    counters = {"bytes_received": 0, "bytes_sent": 0}
    arrived = Event()

    def now() -> int:
        return int(get_sim_time("ps"))

    async def read_replies():
        while True:
            data = await sink.read()
            counters["bytes_received"] += len(data)
            for byte in data:
                try:
                    new = reader.feed(bytes([byte]))
                except protocol.ProtocolError as error:
                    faults.append(f"at {now()} ps: {error}")
                    continue
                for frame in new:
                    frames.append({"type": frame.type, "payload": frame.payload.hex(), "time_ps": now()})
                    arrived.set()

    async def wait_replies(count: int):
        limit = plan["reply_timeout_cycles"] * period_ps
        while len(frames) < count:
            before = len(frames)
            arrived.clear()
            await First(arrived.wait(), Timer(limit, "ps"))
            if len(frames) == before:
                raise _Hang(f"no reply for {plan['reply_timeout_cycles']} cycles while waiting for reply "
                            f"{before + 1} of {count} (at {now()} ps)")

    async def falling_edge_time():
        """To the next multiple of the clock period: the clock's falling edge (rising at period / 2)."""
        phase = now() % period_ps
        if phase:
            await Timer(period_ps - phase, "ps")

    await Timer(plan["reset_cycles"] * period_ps, "ps")
    await falling_edge_time()
    dut.rst.value = 0
    cocotb.start_soon(read_replies())
    expected, last_send = 0, 0
    hang = None
    start, cpu = time.perf_counter(), time.process_time()
    try:
        for step in plan["steps"]:
            op = step["op"]
            if op == "send":
                await wait_replies(expected - step["window"] + 1)
            log.append({"op": op, "time_ps": now(), "received": len(frames)})
            if op == "send":
                if source.idle():
                    await falling_edge_time()
                    log[-1]["time_ps"] = now()
                data = bytes.fromhex(step["data"])
                last_send = now()
                source.write_nowait(data)
                counters["bytes_sent"] += len(data)
            elif op == "drain":
                await wait_replies(expected)
            elif op in ("idle", "bits"):
                await source.wait()
                await falling_edge_time()
                if op == "idle":
                    await Timer(step["cycles"] * period_ps, "ps")
                else:
                    for level in step["levels"]:
                        rx.value = level
                        await Timer(bit_ps, "ps")
                    rx.value = 1
            elif op == "reset":
                if "after_bits" in step:
                    await Timer(max(period_ps, last_send + round(step["after_bits"] * bit_ps) - now()), "ps")
                else:
                    await source.wait()
                    await falling_edge_time()
                dut.rst.value = 1
                await Timer(step["cycles"] * period_ps, "ps")
                dut.rst.value = 0
                if reader.buffer:
                    faults.append(f"at {now()} ps: a reset cut a reply after {len(reader.buffer)} bytes")
                    reader.buffer = bytearray()
            elif op == "quiet":
                await source.wait()
                while True:
                    before = len(frames)
                    await Timer(step["cycles"] * period_ps, "ps")
                    if len(frames) == before and source.idle() and not sink.active and not reader.buffer:
                        break
                expected = len(frames)
            elif op == "tail":
                await Timer(step["cycles"] * period_ps, "ps")
            else:
                raise ValueError(f"unknown step {op!r}")
            expected += step.get("replies", 0)
    except _Hang as error:
        hang = str(error)
    busy, error = getattr(dut, f"{instance}__busy"), getattr(dut, f"{instance}__error")
    report = {"frames": frames, "faults": faults, "hang": hang, "steps": log, "sim_time_ps": now(),
              "busy": int(busy.value), "error": int(error.value),
              "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu, **counters}
    (run_dir / "report.json").write_text(json.dumps(report))

