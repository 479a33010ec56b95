"""Cycle models of the UART receiver and transmitter (:mod:`pascal_hdl.board.uart`), no amaranth.

Both follow the gateware register by register: per cycle read the outputs, then :meth:`step`.
8N1 (one start bit, 8 data bits LSB first, one stop bit), ``divisor`` clock cycles per bit.
"""
from __future__ import annotations

__all__ = ["UartRxModel", "UartTxModel", "uart_bits", "RX_IDLE", "RX_START", "RX_DATA", "RX_STOP", "RX_BREAK"]

RX_IDLE, RX_START, RX_DATA, RX_STOP, RX_BREAK = range(5)


def _check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART: divisor (cycles per bit) must be an integer >= 4, got {divisor!r}")
    return divisor


def uart_bits(byte: int) -> list[int]:
    """The line levels of one 8N1 frame: start 0, data LSB first, stop 1."""
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"UART: {byte!r} is not a byte")
    return [0] + [(byte >> k) & 1 for k in range(8)] + [1]


class UartRxModel:
    """The receiver: a 2-FF synchroniser (``rx`` seen two cycles later), then the bit FSM.

    Idle: a 0 on the synchronised line starts a byte; the start bit is checked at its middle
    (``divisor // 2`` cycles after the falling edge is seen; a 1 there was a glitch: back to idle),
    each data bit and the stop bit ``divisor`` cycles after the previous sample. At the stop sample
    the byte is offered for one cycle (``valid``) if the stop bit is 1, else ``framing_error`` is
    high for one cycle and the receiver waits for the line to be 1 again (``RX_BREAK``).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        self.reset()

    def reset(self) -> None:
        self.sync = [1, 1]          # the two synchroniser stages
        self.state = RX_IDLE
        self.timer = 0
        self.bit = 0
        self.shift = 0
        self.valid = False
        self.data = 0
        self.framing_error = False

    def step(self, rx: int) -> None:
        """One clock edge with the line at ``rx``; afterwards :attr:`valid`, :attr:`data` and
        :attr:`framing_error` are the outputs of the next cycle."""
        line = self.sync[1]
        self.valid = self.framing_error = False
        if self.state == RX_IDLE:
            if line == 0:
                self.state, self.timer = RX_START, self.divisor // 2 - 1
        elif self.timer:
            self.timer -= 1
        elif self.state == RX_START:
            if line == 0:
                self.state, self.timer, self.bit = RX_DATA, self.divisor - 1, 0
            else:
                self.state = RX_IDLE
        elif self.state == RX_DATA:
            self.shift = (self.shift >> 1) | (line << 7)
            self.timer = self.divisor - 1
            if self.bit == 7:
                self.state = RX_STOP
            self.bit = (self.bit + 1) & 7
        elif self.state == RX_STOP:
            if line:
                self.valid, self.data, self.state = True, self.shift, RX_IDLE
            else:
                self.framing_error, self.state = True, RX_BREAK
        elif self.state == RX_BREAK:
            if line:
                self.state = RX_IDLE
        self.sync = [int(rx), self.sync[0]]


class UartTxModel:
    """The transmitter: ``ready`` while idle; a byte taken starts a frame of 10 bits of ``divisor``
    cycles each (the start bit on ``tx`` from the next cycle); ``ready`` again in the cycle after
    the stop bit's last cycle."""

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        self.reset()

    def reset(self) -> None:
        self.tx = 1
        self.busy = False
        self.bits: list[int] = []
        self.timer = 0

    @property
    def ready(self) -> bool:
        return not self.busy

    def step(self, valid: bool, data: int = 0) -> bool:
        """One clock edge; returns whether a byte was taken. :attr:`tx` is the line in the next cycle."""
        taken = bool(valid) and not self.busy
        if taken:
            self.bits = uart_bits(int(data))
            self.busy, self.timer, self.tx = True, self.divisor - 1, self.bits.pop(0)
        elif self.busy:
            if self.timer:
                self.timer -= 1
            elif self.bits:
                self.tx, self.timer = self.bits.pop(0), self.divisor - 1
            else:
                self.busy = False
        return taken
