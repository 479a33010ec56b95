"""The UART receiver and transmitter (:mod:`pascal_hdl.board.uart`) cycle by cycle against their cycle
models (:mod:`pascal_hdl.model.uart`) in the Amaranth simulator."""
from __future__ import annotations

import numpy as np
import pytest

from pascal_hdl.board.uart import UartRx, UartTx
from pascal_hdl.model.uart import UartRxModel, UartTxModel, uart_bits
from pascal_hdl.testing import simulate


@pytest.mark.parametrize("divisor", [4, 5, 9])
def test_receiver_matches_its_model_every_cycle(divisor):
    rng = np.random.default_rng(divisor)
    data = [0x00, 0xFF, 0xA5, 0x5A] + [int(b) for b in rng.integers(0, 256, 12)]
    line = []
    for byte in data:
        line += [bit for bit in uart_bits(byte) for _ in range(divisor)] + [1] * int(rng.integers(0, 3))
    line += [0] * (divisor // 2 - 1) + [1] * 3 * divisor          # a glitch shorter than half a bit
    line += [bit for bit in [0, 1, 0, 1, 0, 1, 0, 1, 0, 0] for _ in range(divisor)]   # stop bit 0
    line += [1] * 3 * divisor + [bit for bit in uart_bits(0x3C) for _ in range(divisor)] + [1] * 2 * divisor
    dut, model = UartRx(divisor), UartRxModel(divisor)
    seen, errors = [], 0

    async def bench(ctx):
        nonlocal errors
        for cycle, level in enumerate(line):
            ctx.set(dut.rx, level)
            assert (ctx.get(dut.o.valid), ctx.get(dut.framing_error), ctx.get(dut.state).value) == \
                (model.valid, model.framing_error, model.state), f"cycle {cycle}"
            if model.valid:
                assert ctx.get(dut.o.payload) == model.data
                seen.append(model.data)
            errors += model.framing_error
            await ctx.tick()
            model.step(level)

    simulate(dut, bench)
    assert seen == data + [0x3C] and errors == 1


@pytest.mark.parametrize("divisor", [4, 7])
def test_transmitter_matches_its_model_and_the_line(divisor):
    rng = np.random.default_rng(divisor)
    data = [int(b) for b in rng.integers(0, 256, 8)]
    dut, model = UartTx(divisor), UartTxModel(divisor)
    line = []

    async def bench(ctx):
        queue = list(data)
        for cycle in range(12 * divisor * len(data) + 40):
            valid = bool(queue) and rng.random() < 0.7
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload, queue[0] if queue else 0)
            assert (ctx.get(dut.i.ready), ctx.get(dut.tx)) == (model.ready, model.tx), f"cycle {cycle}"
            line.append(model.tx)
            await ctx.tick()
            if model.step(valid, queue[0] if queue else 0):
                queue.pop(0)
        assert not queue

    simulate(dut, bench)
    receiver, got = UartRxModel(divisor), []
    for level in line:
        receiver.step(level)
        if receiver.valid:
            got.append(receiver.data)
        assert not receiver.framing_error
    assert got == data


def test_divisor_is_checked():
    with pytest.raises(ValueError, match="divisor"):
        UartRx(3)
    with pytest.raises(ValueError, match="divisor"):
        UartTxModel(2)
