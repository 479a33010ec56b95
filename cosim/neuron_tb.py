"""cocotb testbench of the PASC-IF neuron unit (run by ``test_cosim_neuron.py``).

Reads ``cases.npz`` from ``$COSIM_RUN_DIR`` (one row per run: ``t_in``,
``t_out``, ``theta``, ``v0``, ``currents`` padded to the longest ``T1``, and
``gap``: idle cycles before the start, 0 = start in the last TRANSMIT cycle
of the previous run, back to back), runs every case in one simulation, and
writes ``record.npz``: the ports of every cycle after the first start.  The
checks against ``pasc_if`` are done on the pytest side.

Driving: inputs change at the falling edge from the registered state read
there (``stage``/``step``), outputs are sampled in the read-only phase of the
same half cycle, so combinational spikes belong to that cycle's step.
"""
from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

INTEGRATE, TRANSMIT, IDLE = 1, 3, 0


@cocotb.test()
async def run_cases(dut):
    run_dir = Path(os.environ["COSIM_RUN_DIR"])
    cases = np.load(run_dir / "cases.npz")
    t_in, t_out, theta, v0 = (cases[k].tolist() for k in ("t_in", "t_out", "theta", "v0"))
    currents, gaps = cases["currents"].tolist(), cases["gap"].tolist()
    n_cases = len(t_in)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.current.value = 0
    dut.t_in.value = 1
    dut.t_out.value = 1
    dut.theta.value = 1
    dut.v0.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    columns = ("case", "start", "stage", "step", "excitatory", "inhibitory", "spike", "v", "c", "count", "ready")
    record = {name: [] for name in columns}
    stage_h, step_h, ready_h = dut.stage, dut.step, dut.ready
    exc_h, inh_h, spike_h, v_h, c_h, count_h = dut.excitatory, dut.inhibitory, dut.spike, dut.v, dut.c, dut.count
    case = -1          # case whose run is in progress
    waiting = gaps[0] if n_cases else 0
    tail = None        # cycles still to record after the last start
    limit = sum(g + 2 * (a + b) for g, a, b in zip(gaps, t_in, t_out)) + 16
    for _ in range(limit):
        await FallingEdge(dut.clk)
        stage, step = int(stage_h.value), int(step_h.value)
        ready = int(ready_h.value)
        start = 0
        nxt = case + 1
        if nxt < n_cases and ready:
            last_transmit = stage == TRANSMIT and step == t_out[case] - 1
            if stage == IDLE and waiting > 0:
                waiting -= 1
            elif (stage == IDLE and waiting == 0) or (last_transmit and gaps[nxt] == 0):
                start = 1
        dut.start.value = start
        if start:
            dut.v0.value = v0[nxt]
            dut.theta.value = theta[nxt]
            dut.t_in.value = t_in[nxt]
            dut.t_out.value = t_out[nxt]
        dut.current.value = currents[case][step] if stage == INTEGRATE else 0
        await ReadOnly()
        if case >= 0:
            values = (case, start, stage, step, int(exc_h.value), int(inh_h.value), int(spike_h.value),
                      v_h.value.to_signed(), c_h.value.to_signed(), int(count_h.value), ready)
            for name, value in zip(columns, values):
                record[name].append(value)
        if start:
            case = nxt
            if case + 1 < n_cases:
                waiting = gaps[case + 1]
            else:
                # The whole run plus one IDLE cycle after it.
                tail = t_in[case] + max(t_in[case], t_out[case]) - 1 + t_out[case] + 1
        elif tail is not None:
            tail -= 1
            if tail == 0:
                break
    else:
        raise AssertionError(f"neuron testbench: {limit} cycles exhausted at case {case} of {n_cases}")
    np.savez(run_dir / "record.npz", **{k: np.asarray(v, dtype=np.int64) for k, v in record.items()})
