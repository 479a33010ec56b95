"""Co-simulation of the PASC-IF neuron unit's Verilog against ``pasc_if(..., trace=True)``.

Thousands of random runs per simulator go through one simulation (one build,
one simulator start): random ``T1``/``T2`` in 1..16 (L=1 and T1 != T2
included), thresholds, initial potentials and currents at the edges of the
port ranges, back-to-back starts and idle gaps. The unit is driven by a
harness in hardware (:class:`pascal_cosim.harness.NeuronHarness`) that starts
the cases of a ring memory and writes every port of every cycle into a trace
ring, so Python wakes once per several thousand cycles. Every stage step's
spikes of both signs, the membrane and counter after every step, the output
train and the count must equal the reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from jobboard import CosimJob

from pascal_cosim.neuron import run_neuron
from pascal_hdl.widths import Stage
from pascal_ref.golden.neuron import pasc_if

pytestmark = pytest.mark.cosim

PARAMS = {"current_width": 8, "v0_width": 10, "theta_width": 8, "max_t_in": 16, "max_t_out": 16}
N_CASES = 5000
SLOW_CASES = 20000


def random_cases(n: int, seed: int) -> dict:
    """Random runs that exercise both spike signs, L=1 and T1 != T2."""
    rng = np.random.default_rng(seed)
    cur_lo, cur_hi = -(1 << (PARAMS["current_width"] - 1)), (1 << (PARAMS["current_width"] - 1)) - 1
    v0_lo, v0_hi = -(1 << (PARAMS["v0_width"] - 1)), (1 << (PARAMS["v0_width"] - 1)) - 1
    levels = np.array([1, 1, 2, 3, 4, 5, 8, 16])
    t_in = rng.choice(levels, n)
    t_out = rng.choice(levels, n)
    theta = np.where(rng.random(n) < 0.3, rng.integers(1, 9, n), rng.integers(1, (1 << PARAMS["theta_width"]), n))
    theta[rng.random(n) < 0.05] = (1 << PARAMS["theta_width"]) - 1
    v0 = np.clip(rng.integers(-2, 3, n) * theta // 2 + rng.integers(-theta, theta + 1), v0_lo, v0_hi)
    v0[rng.random(n) < 0.05] = v0_lo
    v0[rng.random(n) < 0.05] = v0_hi
    scale = np.maximum(1, theta * rng.choice([0.3, 1.0, 2.0, 8.0], n)).astype(np.int64)
    bias = rng.choice([-1.0, -0.3, 0.0, 0.3, 1.0], n)
    currents = rng.normal(bias[:, None], 1.0, (n, PARAMS["max_t_in"])) * scale[:, None]
    currents = np.clip(np.rint(currents), cur_lo, cur_hi).astype(np.int64)
    extreme = rng.random(n) < 0.05
    currents[extreme] = rng.choice([cur_lo, cur_hi], (int(extreme.sum()), PARAMS["max_t_in"]))
    gap = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 4, n))
    gap[0] = 1
    return {"t_in": t_in, "t_out": t_out, "theta": theta, "v0": v0, "currents": currents, "gap": gap}


def check_run(case: int, rows: dict, t_in: int, t_out: int, theta: int, v0: int, currents) -> list[str]:
    """Compare the recorded cycles of one run with the reference trace; returns mismatches."""
    ref = pasc_if(np.asarray(currents[:t_in], dtype=np.int64), theta, v0, t_out, trace=True)
    s1, s2, s3 = ref.trace
    settle = max(t_in, t_out) - 1
    want_stage = [Stage.INTEGRATE.value] * t_in + [Stage.SETTLE.value] * settle + [Stage.TRANSMIT.value] * t_out
    want_step = list(range(t_in)) + list(range(settle)) + list(range(t_out))
    n = len(want_stage)
    errors = []
    stage, step = rows["stage"], rows["step"]
    if len(stage) < n or stage[:n].tolist() != want_stage or step[:n].tolist() != want_step:
        return [f"case {case}: stage/step sequence {list(zip(stage.tolist(), step.tolist()))} != {list(zip(want_stage, want_step))}"]
    if rows["v"][0] != v0 or rows["c"][0] != 0:
        errors.append(f"case {case}: state after start v={rows['v'][0]} c={rows['c'][0]}, want v0={v0} c=0")
    # After-step state is on v/c one cycle later (the last step's in the TRANSMIT rows).
    want_v = np.concatenate([s1.v, s2.v, np.full(t_out, ref.v)])
    want_c = np.concatenate([s1.c, s2.c, np.full(t_out, ref.c)])
    want_exc = np.concatenate([s1.excitatory, s2.excitatory, s3.excitatory]).astype(int)
    want_inh = np.concatenate([s1.inhibitory, s2.inhibitory, s3.inhibitory]).astype(int)
    for name, got, want in (("excitatory", rows["excitatory"][:n], want_exc), ("inhibitory", rows["inhibitory"][:n], want_inh),
                            ("v after step", rows["v"][1:n], want_v[:n - 1]), ("c after step", rows["c"][1:n], want_c[:n - 1]),
                            ("v in TRANSMIT", rows["v"][t_in + settle:n], np.full(t_out, ref.v)),
                            ("c in TRANSMIT", rows["c"][t_in + settle:n], np.full(t_out, ref.c))):
        if not np.array_equal(got, want):
            bad = int(np.flatnonzero(got != want)[0])
            errors.append(f"case {case}: {name} differs first at cycle {bad} ({want_stage[bad] if bad < n else 'after'}): "
                          f"got {got.tolist()} want {want.tolist()}")
    spikes = rows["spike"][t_in + settle:n]
    if not np.array_equal(spikes, ref.spikes.astype(int)):
        errors.append(f"case {case}: output train {spikes.tolist()} != {ref.spikes.astype(int).tolist()}")
    if np.any(rows["spike"][:t_in + settle]) or np.any(rows["spike"][n:]):
        errors.append(f"case {case}: spike outside TRANSMIT")
    # count is valid from TRANSMIT until the next accepted start (whose cycle changes t_out).
    counts = rows["count"][t_in + settle:][rows["start"][t_in + settle:] == 0]
    if np.any(counts != int(ref.counts)):
        errors.append(f"case {case}: count {counts.tolist()} != {int(ref.counts)}")
    return errors


_CASES = {"test_neuron_matches_pasc_if_trace": (N_CASES, 5), "test_neuron_matches_pasc_if_trace_many": (SLOW_CASES, 55)}


def _run(simulator, root, n_cases, seed):
    cases = random_cases(n_cases, seed)
    trace, result, run = run_neuron(PARAMS, cases, simulator, f"neuron-{n_cases}-{simulator}", root)
    return cases, trace, result, run


def cosim_job(item, root) -> CosimJob | None:
    if item.originalname not in _CASES:
        return None
    simulator = item.callspec.params["simulator"]
    n_cases, seed = _CASES[item.originalname]
    cost = n_cases / 1000 * (2 if simulator == "icarus" else 1)
    return CosimJob(("neuron", n_cases, simulator), cost, lambda: _run(simulator, root, n_cases, seed))


def check_neuron(simulator, request, cosim_jobs) -> None:
    cases, record, result, run = cosim_jobs.result(request.node)
    n_cases = len(cases["t_in"])
    assert not result.errors, "\n".join(result.errors)
    case_col = record["case"]
    errors = []
    bounds = np.searchsorted(case_col, np.arange(n_cases + 1))
    for k in range(n_cases):
        rows = {name: column[bounds[k]:bounds[k + 1]] for name, column in record.items()}
        if len(rows["stage"]) == 0:
            errors.append(f"case {k}: never started")
            continue
        errors += check_run(k, rows, int(cases["t_in"][k]), int(cases["t_out"][k]), int(cases["theta"][k]),
                            int(cases["v0"][k]), cases["currents"][k])
    stats = {"simulator": simulator, "cases": n_cases, "cycles": len(case_col), "mismatching_cases": len(errors),
                 "l1_cases": int(np.sum((cases["t_in"] == 1) & (cases["t_out"] == 1))),
                 "unequal_cases": int(np.sum(cases["t_in"] != cases["t_out"])),
                 "inhibitory_spikes": int(record["inhibitory"].sum()), "excitatory_settle_spikes": int(
                     record["excitatory"][record["stage"] == Stage.SETTLE.value].sum()),
                 "python_wakes": result.counters["wakes"], "build_s": round(run.build_s, 2), "run_s": round(run.run_s, 2)}
    print(f"\nneuron cosim {simulator}: {stats}")
    assert not errors, f"{len(errors)} of {n_cases} runs differ from pasc_if:\n" + "\n".join(errors[:10])
    # The stimulus must reach every behaviour it is meant to check.
    assert stats["inhibitory_spikes"] > 0 and stats["excitatory_settle_spikes"] > 0 and stats["l1_cases"] > 0
    # Many cases per wake-up of Python: the trace comes back a ring half at a time.
    assert stats["python_wakes"] * 100 < n_cases


def test_neuron_matches_pasc_if_trace(simulator, request, cosim_jobs):
    check_neuron(simulator, request, cosim_jobs)


@pytest.mark.slow
def test_neuron_matches_pasc_if_trace_many(simulator, request, cosim_jobs):
    check_neuron(simulator, request, cosim_jobs)
