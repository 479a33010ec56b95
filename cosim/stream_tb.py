"""cocotb testbench: drive one input stream, drain one output stream, record everything.

Used for the layer engine and the network core (``test_cosim_engine.py``,
``test_cosim_network.py``).  Reads ``$COSIM_RUN_DIR/stim.npz``:

* ``payload`` (object-free int arrays split in 60-bit limbs, see
  :func:`join_limbs`) and ``gap`` -- the input beats in order, and the idle
  cycles the driver waits before offering each one;
* ``config``: a JSON string with ``in_prefix``/``out_prefix`` (port name
  prefixes, ``i``/``o``), ``ready_prob`` (probability that the sink is ready
  in a cycle), ``seed``, ``samples`` (outputs to wait for, counted by
  ``end_bit`` of the output payload, or every output beat when ``end_bit``
  is -1), ``limit`` (cycle budget), ``monitors`` (optional: prefixes of
  observation ports with ``__valid``/``__payload``).

Writes ``record.npz``: every output beat taken (payload limbs, cycle), the
cycle every input beat was accepted, and every monitor beat (monitor number,
payload, cycle).  Valid is held with a stable payload
until the beat is accepted (the stream contract); ready is random.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

LIMB = 60


def join_limbs(limbs) -> int:
    value = 0
    for k, limb in enumerate(limbs):
        value |= int(limb) << (LIMB * k)
    return value


def split_limbs(value: int, count: int) -> list[int]:
    mask = (1 << LIMB) - 1
    return [(value >> (LIMB * k)) & mask for k in range(count)]


@cocotb.test()
async def stream(dut):
    run_dir = Path(os.environ["COSIM_RUN_DIR"])
    stim = np.load(run_dir / "stim.npz")
    config = json.loads(str(stim["config"]))
    beats = [join_limbs(row) for row in stim["payload"].tolist()]
    gaps = stim["gap"].tolist()
    rng = random.Random(config["seed"])
    ready_prob = float(config["ready_prob"])
    end_bit = int(config["end_bit"])
    samples = int(config["samples"])
    i_valid = getattr(dut, f"{config['in_prefix']}__valid")
    i_ready = getattr(dut, f"{config['in_prefix']}__ready")
    i_payload = getattr(dut, f"{config['in_prefix']}__payload")
    o_valid = getattr(dut, f"{config['out_prefix']}__valid")
    o_ready = getattr(dut, f"{config['out_prefix']}__ready")
    o_payload = getattr(dut, f"{config['out_prefix']}__payload")
    out_limbs = max(1, -(-len(o_payload) // LIMB))
    monitors = [(getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__payload"))
                for name in config.get("monitors", [])]
    seen = []          # (monitor, payload, cycle)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    i_valid.value = 0
    i_payload.value = 0
    o_ready.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs, out_cycles, in_cycles = [], [], []
    done = 0
    nxt = 0            # next input beat
    wait = gaps[0] if gaps else 0
    offering = False
    cycle = 0
    limit = int(config["limit"])
    while done < samples:
        if cycle >= limit:
            raise AssertionError(f"stream testbench: {limit} cycles exhausted after {done} of {samples} samples, "
                                 f"{nxt} of {len(beats)} input beats accepted")
        await FallingEdge(dut.clk)
        if not offering and nxt < len(beats):
            if wait > 0:
                wait -= 1
            else:
                offering = True
                i_payload.value = beats[nxt]
        i_valid.value = int(offering)
        sink_ready = int(rng.random() < ready_prob)
        o_ready.value = sink_ready
        await ReadOnly()
        if offering and int(i_ready.value):
            in_cycles.append(cycle)
            offering = False
            nxt += 1
            if nxt < len(beats):
                wait = gaps[nxt]
        if sink_ready and int(o_valid.value):
            value = int(o_payload.value.to_unsigned())
            outputs.append(split_limbs(value, out_limbs))
            out_cycles.append(cycle)
            if end_bit < 0 or (value >> end_bit) & 1:
                done += 1
        for number, (valid, payload) in enumerate(monitors):
            if int(valid.value):
                seen.append((number, int(payload.value.to_unsigned()), cycle))
        cycle += 1
    np.savez(run_dir / "record.npz", outputs=np.asarray(outputs, dtype=np.int64).reshape(-1, out_limbs),
             out_cycles=np.asarray(out_cycles, dtype=np.int64), in_cycles=np.asarray(in_cycles, dtype=np.int64),
             cycles=np.int64(cycle), accepted=np.int64(nxt),
             monitor=np.asarray(seen, dtype=np.int64).reshape(-1, 3))
