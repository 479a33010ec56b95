"""UART receiver and transmitter (8N1) for the host link; cycle models in :mod:`pascal_hdl.model.uart`.

``divisor`` clock cycles per bit (:func:`pascal_hdl.board.hostlink.uart_divisor` derives it from
``clk_freq`` and ``baud``). The receiver synchronises ``rx`` through two flip-flops, checks the start
bit at its middle and samples every bit ``divisor`` cycles after the previous one (mid-bit); a 0
stop bit is a framing error. Both are tested cycle by cycle against their models
(``tests/pascal_hdl/board/test_uart.py``) and their control is proved in
:mod:`pascal_hdl.formal.uart_proofs`.
"""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from pascal_hdl.model.uart import RX_BREAK, RX_DATA, RX_IDLE, RX_START, RX_STOP

__all__ = ["UartRx", "UartTx", "RxState"]


def _check_divisor(owner: str, divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"{owner}: divisor (cycles per bit) must be an integer >= 4, got {divisor!r}")
    return divisor


class RxState(enum.Enum, shape=3):
    IDLE = RX_IDLE
    START = RX_START
    DATA = RX_DATA
    STOP = RX_STOP
    BREAK = RX_BREAK


class UartRx(wiring.Component):
    """UART receiver, 8N1.

    Members
    -------
    rx : In(1)
        The line (idle 1); asynchronous, synchronised by two flip-flops (2 cycles of latency).
    o : Out(stream.Signature(8, always_ready=True))
        A received byte, ``valid`` for one cycle at the middle of its stop bit (no back-pressure:
        the consumer takes it in that cycle).
    framing_error : Out(1)
        One cycle at the middle of a stop bit that was 0; the receiver then waits for the line to
        return to 1 before it looks for the next start bit.
    state : Out(RxState)
        The receiver's state (for the proofs and tests).

    Timing: the falling edge of a start bit seen (after the synchroniser) in cycle ``e``: the start
    bit is checked in cycle ``e + divisor // 2`` (a 1 there is a glitch: idle again), data bit ``k``
    sampled in cycle ``e + divisor // 2 + (k + 1) * divisor``, the stop bit ``divisor`` later.
    """

    def __init__(self, divisor: int):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.divisor = _check_divisor("UartRx", divisor)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8, always_ready=True)),
                          "framing_error": Out(1), "state": Out(RxState)})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        first = Signal(init=1)
        line = Signal(init=1)           # the second synchroniser stage
        m.d.sync += [first.eq(self.rx), line.eq(first)]
        state = Signal(RxState)
        timer = Signal(range(divisor))
        bit = Signal(3)
        shift = Signal(8)
        m.d.comb += [self.state.eq(state), self.o.payload.eq(shift)]
        m.d.sync += [self.o.valid.eq(0), self.framing_error.eq(0)]
        with m.If(state == RxState.IDLE):
            with m.If(~line):
                m.d.sync += [state.eq(RxState.START), timer.eq(divisor // 2 - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(state == RxState.START):
            with m.If(~line):
                m.d.sync += [state.eq(RxState.DATA), timer.eq(divisor - 1), bit.eq(0)]
            with m.Else():
                m.d.sync += state.eq(RxState.IDLE)
        with m.Elif(state == RxState.DATA):
            m.d.sync += [shift.eq(shift[1:] | (line << 7)), timer.eq(divisor - 1), bit.eq(bit + 1)]
            with m.If(bit == 7):
                m.d.sync += state.eq(RxState.STOP)
        with m.Elif(state == RxState.STOP):
            with m.If(line):
                m.d.sync += [self.o.valid.eq(1), state.eq(RxState.IDLE)]
            with m.Else():
                m.d.sync += [self.framing_error.eq(1), state.eq(RxState.BREAK)]
        with m.Else():                  # BREAK
            with m.If(line):
                m.d.sync += state.eq(RxState.IDLE)
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1.

    Members
    -------
    i : In(stream.Signature(8))
        A byte to send; ``ready`` while no frame is being sent. A byte taken in cycle ``k`` puts its
        start bit on ``tx`` in cycles ``k+1 .. k+divisor``, data bit ``b`` (LSB first) in the next
        ``divisor`` cycles each, then the stop bit; ``ready`` again in the cycle after the stop bit.
    tx : Out(1)
        The line (idle 1).
    """

    def __init__(self, divisor: int):
        self._MustUse__silence = True  # no "never used" warning if validation fails
        self.divisor = _check_divisor("UartTx", divisor)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        busy = Signal()
        timer = Signal(range(divisor))
        remaining = Signal(range(10))    # bits still to put on the line after the current one
        shift = Signal(9)                # data bits then the stop bit, LSB next
        m.d.comb += self.i.ready.eq(~busy)
        with m.If(self.i.valid & ~busy):
            m.d.sync += [busy.eq(1), timer.eq(divisor - 1), self.tx.eq(0), remaining.eq(9),
                         shift.eq(self.i.payload | (1 << 8))]
        with m.Elif(busy):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(remaining != 0):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift[1:]), remaining.eq(remaining - 1),
                             timer.eq(divisor - 1)]
            with m.Else():
                m.d.sync += busy.eq(0)
        return m
