"""The harness blocks in Amaranth's simulator (no HDL simulator needed): the stream checker,
the LFSR ready, the capture ring; a harness refuses a design it cannot drive."""
from __future__ import annotations

import gc
import warnings

import pytest

pytest.importorskip("amaranth")

from pascal_cosim.harness import (
    READY_ALWAYS,
    CaptureRing,
    ReadyLfsr,
    StreamChecker,
    StreamHarness,
    clock_wrapper,
    ready_threshold,
)
from pascal_hdl.testing import simulate


@pytest.fixture(autouse=True)
def _unelaborated_is_fine():
    """Harnesses built only to check their ports are never elaborated: collect them quietly."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def run_checker(beats) -> int:
    """``beats``: per cycle ``(valid, ready, payload)``; returns the checker's violation count."""
    checker = StreamChecker(8)
    out = {}

    async def bench(ctx):
        for valid, ready, payload in beats:
            ctx.set(checker.valid, valid)
            ctx.set(checker.ready, ready)
            ctx.set(checker.payload, payload)
            await ctx.tick()
        out["violations"] = ctx.get(checker.violations)

    simulate(checker, bench)
    return out["violations"]


def test_stream_checker():
    held = [(1, 0, 5), (1, 0, 5), (1, 1, 5), (0, 0, 9), (1, 1, 6), (0, 0, 0)]
    assert run_checker(held) == 0                         # held until taken; a new beat may follow at once
    assert run_checker([(1, 0, 5), (0, 0, 5), (0, 0, 0)]) == 1        # valid dropped before it was taken
    assert run_checker([(1, 0, 5), (1, 0, 6), (1, 1, 6), (0, 0, 0)]) == 1   # payload changed while offered


def ready_pattern(threshold: int, seed: int, cycles: int) -> list[int]:
    lfsr = ReadyLfsr()
    pattern = []

    async def bench(ctx):
        ctx.set(lfsr.threshold, threshold)
        ctx.set(lfsr.seed, seed)
        for _ in range(cycles):
            await ctx.tick()
            pattern.append(ctx.get(lfsr.ready))

    simulate(lfsr, bench)
    return pattern


def test_lfsr_ready_rate_and_reproducibility():
    always = ready_pattern(READY_ALWAYS, 7, 50)
    assert always == [1] * 50
    third = ready_pattern(ready_threshold(0.3), 7, 4000)
    assert third == ready_pattern(ready_threshold(0.3), 7, 4000)
    assert third != ready_pattern(ready_threshold(0.3), 8, 4000)
    assert 0.25 < sum(third) / len(third) < 0.35
    assert 0 < max(len(run) for run in "".join(map(str, third)).split("1")) < 40   # stalls of several cycles


def test_capture_ring_counts_and_half_flag():
    ring = CaptureRing(8, depth=4)
    seen = []

    async def bench(ctx):
        for k in range(9):
            ctx.set(ring.valid, k % 3 != 2)
            ctx.set(ring.payload, k)
            await ctx.tick()
            seen.append((ctx.get(ring.count), ctx.get(ring.half)))

    simulate(ring, bench)
    assert [count for count, _ in seen] == [1, 2, 2, 3, 4, 4, 5, 6, 6]
    assert [half for _, half in seen] == [0, 1, 1, 1, 0, 0, 0, 1, 1]     # bit 1 of the count


PORTS = [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1},
         {"name": "i__valid", "direction": "input", "width": 1}, {"name": "i__ready", "direction": "output", "width": 1},
         {"name": "i__payload", "direction": "input", "width": 9}, {"name": "o__valid", "direction": "output", "width": 1},
         {"name": "o__ready", "direction": "input", "width": 1}, {"name": "o__payload", "direction": "output", "width": 12}]


def test_stream_harness_checks_the_design_ports():
    harness = StreamHarness("core", PORTS)
    assert harness.describe("h")["payload_widths"] == {"input": 9, "output": 12}
    with pytest.raises(ValueError, match="module core has no port 'monitor_act1__valid'"):
        StreamHarness("core", PORTS, monitors=["monitor_act1"])
    with pytest.raises(ValueError, match="inputs of core the harness cannot drive: mode"):
        StreamHarness("core", PORTS + [{"name": "mode", "direction": "input", "width": 2}])
    flipped = [dict(p, direction="input") if p["name"] == "o__valid" else p for p in PORTS]
    with pytest.raises(ValueError, match="port 'o__valid' of core is an input, expected output"):
        StreamHarness("core", flipped)
    with pytest.raises(ValueError, match="depth must be a power of two"):
        StreamHarness("core", PORTS, stim_depth=1000)


def test_clock_wrapper_exposes_every_harness_port():
    text = clock_wrapper([("core_harness", "h", [{"name": "clk", "direction": "input", "width": 1},
                                                 {"name": "done", "direction": "output", "width": 1},
                                                 {"name": "samples", "direction": "input", "width": 32}])])
    assert "module cosim_top(rst, h__done, h__samples);" in text
    assert "always #5 clk = ~clk;" in text and "input wire [31:0] h__samples;" in text
    assert ".done(h__done)" in text
