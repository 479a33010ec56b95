"""Proofs of the UART receiver and transmitter (:mod:`pascal_hdl.board.uart`, 8N1; issue 15).

Three harnesses, ``divisor`` clock cycles per bit (:data:`DIVISOR`, the smallest the blocks accept),
``rst`` free in every cycle (the harnesses' own registers reset with the design's, so every property
speaks about what happened since the last reset):

Transmitter alone (:class:`UartTxHarness`; free ``i.valid``, ``i.payload``). The harness records the
byte taken (``valid & ready``) and counts the frame's cycles itself; it checks

* ``handshake``: ``ready`` exactly while no frame is on the line (low from the cycle after a byte is
  taken to the last cycle of its stop bit: a byte is taken only when the line is free, and the Tx
  never refuses one while idle);
* ``idle``: the line is 1 when no frame is being sent;
* ``frame``: in the ``10 * divisor`` cycles after the byte is taken the line holds the start bit 0,
  data bits 0..7 of that byte (LSB first) and the stop bit 1, each exactly ``divisor`` cycles.

Receiver alone (:class:`UartRxHarness`; free ``rx``). The harness passes ``rx`` through two flip-flops
of its own (the documented synchroniser) and keeps the last ``9 * divisor + 1 + W`` values of the
synchronised line (``W = 9 * divisor + divisor // 2 + 2``: a frame from the cycle before its falling
edge to its stop bit's middle); a report (``o.valid`` or ``framing_error``) in cycle ``t`` is judged
on what the line held at the sample points of the frame it must come from, the falling edge ``e =
t - 1 - 9 * divisor - divisor // 2`` (the documented timing):

* ``falling edge``: the line was 1 in ``e - 1`` and 0 in ``e`` (no report without a start);
* ``start bit``: 0 at its middle ``e + divisor // 2``;
* ``data bit k``: the payload's bit ``k`` is the line at ``e + divisor // 2 + (k + 1) * divisor``;
* ``stop bit``: a byte only with 1 at ``e + divisor // 2 + 9 * divisor``, a framing error only with 0;
  never both in one cycle;
* ``one report per frame``: two reports at least ``9 * divisor + divisor // 2 + 1`` cycles apart (the
  next falling edge comes after the previous stop bit's sample);
* ``complete``: after ``9 * divisor + 2`` cycles of a quiet (1) line, a falling edge with a 0 at the
  start bit's middle gives, at the stop bit's middle, the byte of the line's data samples (stop 1) or
  a framing error (stop 0); a receiver that was busy with a frame the line no longer shows is idle
  after that many cycles of 1.

Between the sample points the line is free (any glitches).

Loopback (:class:`UartLoopbackHarness`; Tx's ``tx`` wired to Rx's ``rx``; free ``i.valid``,
``i.payload``). The harness queues every byte Tx takes (at most two in flight: at divisor 4 Tx takes
the next byte one cycle before Rx reports the last) and checks ``delivered``: Rx reports a byte exactly
:meth:`UartLoopbackHarness.latency` cycles after Tx took it and only then, with that byte: every byte
once, unchanged, in order; and ``no framing error``.

Each harness has cover statements (a whole ``0xA5`` frame sent / received, back-to-back bytes, two
bytes in flight at once, a framing error and a byte after it, a glitch and a byte after it, a reset in
the middle of a frame followed by a byte) and the mutants of
:data:`pascal_hdl.formal.mutants.UART_MUTATIONS` it must refute (:data:`UART_MUTANT_PROOFS`).

Proof mode: k-induction (unbounded: every input and reset sequence of any length), the state being
small and the harnesses stating the invariants that keep the induction short (the harness counters'
ranges; in the loopback, Tx busy exactly for the ``10 * divisor`` cycles after taking a byte and
Rx busy exactly from the falling edge it sees to the stop bit's middle, on its ``state`` port). The
cover runs go from power-up to :attr:`UartProof.cover_depth` (two frames, with the quiet line before
them for Rx).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Assert, Cat, Cover, Elaboratable, Module, Mux, Signal

from .engine_proofs import reset_interrupted
from .sby import ProofResult, run_proof

__all__ = ["DIVISOR", "UART_PROOFS", "UART_MUTANT_PROOFS", "UartProof", "UartLoopbackHarness", "UartRxHarness",
           "UartTxHarness", "loopback_latency", "prove_uart", "uart_module", "uart_proofs"]

DIVISOR = 4


def uart_module():
    """The design, imported at run time: the import contract puts the board layer above the formal one
    (``pyproject.toml``), as the conv proofs import their gateware."""
    return importlib.import_module("pascal_hdl.board.uart")


class UartTxHarness(Elaboratable):
    """The transmitter's properties (module docstring)."""

    def __init__(self, divisor: int = DIVISOR, module=None):
        self.divisor = divisor
        self.dut = (module or uart_module()).UartTx(divisor)

    @property
    def ports(self):
        return [self.dut.i.valid, self.dut.i.payload]

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = dut = self.dut
        d = self.divisor
        take = dut.i.valid & dut.i.ready
        active = Signal(name="h_active")
        byte = Signal(8, name="h_byte")
        bit = Signal(range(10), name="h_bit")        # the frame's bit on the line: 0 start, 1..8 data, 9 stop
        sub = Signal(range(d), name="h_sub")         # cycle within the bit
        with m.If(take):
            m.d.sync += [active.eq(1), byte.eq(dut.i.payload), bit.eq(0), sub.eq(0)]
        with m.Elif(active):
            with m.If(sub == d - 1):
                m.d.sync += sub.eq(0)
                with m.If(bit == 9):
                    m.d.sync += active.eq(0)
                with m.Else():
                    m.d.sync += bit.eq(bit + 1)
            with m.Else():
                m.d.sync += sub.eq(sub + 1)

        m.d.comb += Assert(dut.i.ready == ~active, "handshake: ready exactly while no frame is on the line")
        m.d.comb += Assert(bit <= 9, "harness: the frame has ten bits")   # an invariant for k-induction
        with m.If(~active):
            m.d.comb += Assert(dut.tx, "idle: the line is 1")
        with m.Elif(bit == 0):
            m.d.comb += Assert(~dut.tx, "frame: start bit 0")
        with m.Elif(bit == 9):
            m.d.comb += Assert(dut.tx, "frame: stop bit 1")
        for k in range(8):
            with m.If(active & (bit == k + 1)):
                m.d.comb += Assert(dut.tx == byte[k], f"frame: data bit {k} of the byte taken (LSB first)")

        # Non-vacuity: a whole frame of 0xA5, a byte taken in the first cycle Tx is ready again, a frame
        # after a reset that hit one on the line.
        end = active & (bit == 9) & (sub == d - 1)
        again = Signal(name="h_again")
        m.d.sync += again.eq(end)
        m.d.comb += [Cover(end & (byte == 0xA5)), Cover(again & take),
                     Cover(end & reset_interrupted(m, active))]
        return m


class UartRxHarness(Elaboratable):
    """The receiver's properties on a free line (module docstring)."""

    def __init__(self, divisor: int = DIVISOR, module=None):
        self.divisor = divisor
        self.dut = (module or uart_module()).UartRx(divisor)

    @property
    def ports(self):
        return [self.dut.rx]

    @property
    def window(self) -> int:
        """Cycles back from a report to the cycle before its falling edge."""
        d = self.divisor
        return 9 * d + d // 2 + 2

    @property
    def quiet(self) -> int:
        """Cycles of a 1 line after which the receiver is idle whatever it was doing."""
        return 9 * self.divisor + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = dut = self.dut
        d = self.divisor
        first, line = Signal(init=1, name="h_sync1"), Signal(init=1, name="h_line")
        m.d.sync += [first.eq(dut.rx), line.eq(first)]
        depth = self.window + self.quiet
        hist = Signal(depth, init=(1 << depth) - 1, name="h_history")   # bit j-1: the line j cycles ago
        m.d.sync += hist.eq(Cat(line, hist[:-1]))

        def past(j):                                  # the synchronised line j >= 1 cycles ago
            return hist[j - 1]

        w = self.window
        edge = past(w) & ~past(w - 1)                 # e - 1 and e
        start = ~past(w - 1 - d // 2)
        stop = past(1)
        data = Cat(*[past(1 + (8 - k) * d) for k in range(8)])
        quiet = hist[w:w + self.quiet] == (1 << self.quiet) - 1

        valid, error = dut.o.valid, dut.framing_error
        report = valid | error
        with m.If(report):
            m.d.comb += [Assert(edge, "falling edge: no report without a start bit's falling edge"),
                         Assert(start, "start bit: 0 at its middle")]
        with m.If(valid):
            m.d.comb += Assert(stop, "stop bit: a byte only with a 1 stop bit")
            for k in range(8):
                m.d.comb += Assert(dut.o.payload[k] == data[k], f"data bit {k}: the line at its middle")
        with m.If(error):
            m.d.comb += Assert(~stop, "stop bit: a framing error only with a 0 stop bit")
        m.d.comb += Assert(~(valid & error), "stop bit: never a byte and a framing error at once")

        gap = 9 * d + d // 2 + 1
        since = Signal(range(gap + 1), init=gap, name="h_since_report")
        m.d.comb += Assert(since <= gap, "harness: the report gap counter saturates")   # for k-induction
        with m.If(report):
            m.d.comb += Assert(since == gap, "one report per frame: the next falling edge after the stop sample")
            m.d.sync += since.eq(1)
        with m.Elif(since != gap):
            m.d.sync += since.eq(since + 1)

        frame = quiet & edge & start
        with m.If(frame & stop):
            m.d.comb += [Assert(valid, "complete: a frame after a quiet line is delivered"),
                         Assert(dut.o.payload == data, "complete: a frame after a quiet line is delivered")]
        with m.If(frame & ~stop):
            m.d.comb += Assert(error, "complete: a 0 stop bit after a quiet line is a framing error")

        # Non-vacuity: 0xA5 delivered, a framing error, a byte right after a framing error's line went
        # high, a glitch (a falling edge with a 1 at the start bit's middle) followed by a byte, a byte
        # after a reset that hit a frame in flight.
        glitch = Signal(name="h_glitch_seen")
        fe_seen = Signal(name="h_error_seen")
        with m.If(quiet & edge & ~start):
            m.d.sync += glitch.eq(1)
        with m.If(error):
            m.d.sync += fe_seen.eq(1)
        busy = dut.state.as_value() != 0
        m.d.comb += [Cover(valid & (dut.o.payload == 0xA5)), Cover(error), Cover(valid & fe_seen),
                     Cover(valid & glitch), Cover(valid & reset_interrupted(m, busy))]
        return m


def loopback_latency(divisor: int) -> int:
    """Cycles from Tx taking a byte to Rx reporting it: the start bit on the line one cycle later, two
    synchroniser cycles, the stop bit's middle ``divisor // 2 + 9 * divisor`` after the edge is seen,
    the report registered one cycle."""
    return 1 + 2 + divisor // 2 + 9 * divisor + 1


class UartLoopbackHarness(Elaboratable):
    """Tx's line into Rx: every byte delivered once, unchanged, in order (module docstring)."""

    def __init__(self, divisor: int = DIVISOR, module=None):
        self.divisor = divisor
        module = module or uart_module()
        self.tx, self.rx = module.UartTx(divisor), module.UartRx(divisor)

    @property
    def ports(self):
        return [self.tx.i.valid, self.tx.i.payload]

    def latency(self) -> int:
        return loopback_latency(self.divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = tx, rx = self.tx, self.rx
        m.d.comb += rx.rx.eq(tx.tx)
        lat = self.latency()
        take = tx.i.valid & tx.i.ready
        full = [Signal(name=f"q{k}_full") for k in range(2)]
        byte = [Signal(8, name=f"q{k}_byte") for k in range(2)]
        age = [Signal(range(lat + 1), name=f"q{k}_age") for k in range(2)]
        due = full[0] & (age[0] == lat)
        pop = rx.o.valid
        m.d.comb += [Assert(rx.o.valid == due, "delivered: Rx reports exactly when the oldest byte is due"),
                     Assert(~rx.framing_error, "no framing error")]
        with m.If(rx.o.valid):
            m.d.comb += Assert(rx.o.payload == byte[0], "delivered: the byte Tx took, in order")
        with m.If(take):
            m.d.comb += Assert(~full[1], "at most two bytes in flight")
        # Invariants (true properties that also make k-induction short): the queue fills in order; Tx is
        # busy exactly for the 10 * divisor cycles after taking the newest byte; Rx is busy exactly from
        # the cycle after it sees a byte's falling edge to its stop bit's middle.
        d = self.divisor
        m.d.comb += Assert(~full[1] | (full[0] & (age[0] > age[1])), "harness: the queue fills in order")
        newest_busy = Mux(full[1], age[1] <= 10 * d, full[0] & (age[0] <= 10 * d))
        m.d.comb += Assert(tx.i.ready == ~newest_busy, "Tx busy exactly for a frame after taking a byte")
        receiving = 0
        for k in range(2):
            receiving = receiving | (full[k] & (age[k] >= 4) & (age[k] < lat))
        m.d.comb += Assert((rx.state.as_value() != 0) == receiving,
                           "Rx busy exactly from the falling edge it sees to the stop bit's middle")
        for k in range(2):
            m.d.comb += Assert(~full[k] | (age[k] <= lat), "delivered: no byte older than the latency")
        aged = [Mux(full[k] & (age[k] != lat), age[k] + 1, age[k]) for k in range(2)]
        with m.If(pop):
            m.d.sync += [full[0].eq(full[1]), byte[0].eq(byte[1]), age[0].eq(aged[1]), full[1].eq(0)]
            with m.If(take):
                with m.If(full[1]):
                    m.d.sync += [full[1].eq(1), byte[1].eq(tx.i.payload), age[1].eq(1)]
                with m.Else():
                    m.d.sync += [full[0].eq(1), byte[0].eq(tx.i.payload), age[0].eq(1)]
        with m.Else():
            m.d.sync += [age[0].eq(aged[0]), age[1].eq(aged[1])]
            with m.If(take):
                with m.If(full[0]):
                    m.d.sync += [full[1].eq(1), byte[1].eq(tx.i.payload), age[1].eq(1)]
                with m.Else():
                    m.d.sync += [full[0].eq(1), byte[0].eq(tx.i.payload), age[0].eq(1)]
        # Non-vacuity: two different bytes back to back (the second taken in the first cycle Tx was
        # ready again), both delivered; where the latency allows it (divisor 4), two bytes in flight; a
        # byte delivered after a reset that hit one in flight.
        period = 10 * d + 1
        since = Signal(range(period + 2), name="h_since_delivery")
        last = Signal(8, name="h_last_delivered")
        with m.If(rx.o.valid):
            m.d.sync += [since.eq(1), last.eq(rx.o.payload)]
        with m.Elif((since != 0) & (since <= period)):
            m.d.sync += since.eq(since + 1)
        m.d.comb += Cover(rx.o.valid & (since == period) & (rx.o.payload != last))
        if lat > period:
            two = Signal(name="h_two_in_flight")
            with m.If(full[1]):
                m.d.sync += two.eq(1)
            m.d.comb += Cover(rx.o.valid & two & ~full[1])
        m.d.comb += Cover(rx.o.valid & reset_interrupted(m, full[0]))
        return m


@dataclass(frozen=True)
class UartProof:
    """One proof: its harness class, the induction depth ``k`` (the basecase checks the first ``k``
    cycles from power-up), the bound of the cover run and the number of its cover statements."""

    name: str
    harness_class: type
    depth: int
    cover_depth: int
    covers: int
    divisor: int = DIVISOR


def _cover_tx(d):
    return 2 * (10 * d + 1) + 4        # two whole frames back to back and margin


def _cover_rx(d):
    return 9 * d + 1 + 2 * (9 * d + d // 2 + 2) + 4   # a quiet line, two frames


def _cover_loop(d):
    return 10 * d + 1 + loopback_latency(d) + 4   # a frame, the next byte taken and delivered


# k: longer than any stretch of cycles an unreachable state can hide in without breaking a property: a
# frame (Tx, loopback: whose harnesses state Tx's and Rx's busy periods), a quiet line and a frame (Rx).
def uart_proofs(d: int = DIVISOR) -> tuple[UartProof, ...]:
    """The three proofs at ``d`` cycles per bit (:data:`UART_PROOFS` at :data:`DIVISOR`)."""
    return (UartProof("uart_tx", UartTxHarness, 10 * d + 6, _cover_tx(d), 3, d),
            UartProof("uart_rx", UartRxHarness, 21 * d, _cover_rx(d), 5, d),
            UartProof("uart_loopback", UartLoopbackHarness, 12 * d, _cover_loop(d),
                      2 + (loopback_latency(d) > 10 * d + 1), d))


UART_PROOFS = uart_proofs()
PROOFS = {p.name: p for p in UART_PROOFS}

# mutant name -> ((proof that must refute it, failed-assertion messages one of which it reports), ...)
UART_MUTANT_PROOFS = {
    "uart_rx_samples_at_edge": (("uart_rx", ("falling edge", "data bit", "start bit", "stop bit", "complete")),
                                ("uart_loopback", ("delivered", "Rx busy exactly"))),
    "uart_rx_accepts_zero_stop": (("uart_rx", ("stop bit: a byte only with a 1 stop bit",)),),
    "uart_rx_seven_data_bits": (("uart_rx", ("falling edge", "start bit", "data bit", "complete")),
                                ("uart_loopback", ("delivered", "Rx busy exactly"))),
    "uart_rx_never_delivers": (("uart_rx", ("complete: a frame after a quiet line is delivered",)),),
    "uart_tx_msb_first": (("uart_tx", ("frame: data bit",)),
                          ("uart_loopback", ("delivered: the byte Tx took, in order",))),
}


def prove_uart(proof: UartProof | str, workdir, module=None, mode: str = "prove", name: str | None = None,
               depth: int | None = None) -> ProofResult:
    """k-induction (``mode="prove"``, depth :attr:`UartProof.depth`), a bounded check (``"bmc"``, the
    same depth) or the cover run (``"cover"``, :attr:`UartProof.cover_depth`) of one UART harness at
    its divisor (:data:`DIVISOR` unless built by :func:`uart_proofs`)."""
    proof = PROOFS[proof] if isinstance(proof, str) else proof
    harness = proof.harness_class(proof.divisor, module)
    name = name or f"{proof.name}_{mode}"
    depth = depth or (proof.cover_depth if mode == "cover" else proof.depth)
    return run_proof(harness, harness.ports, name, Path(workdir), mode=mode, depth=depth)
