"""The gateware mutation tier (issue 17): its fixed default subset, the mutant list, the runner.

The default run applies a few mutants of :data:`GATEWARE_MUTATIONS`, each in a
pytest process of its own (plugin :mod:`pascal_hdl.formal.mutant_plugin`),
and asserts that the named test kills it. The whole list runs with
``python -m pascal_hdl.formal.mutation`` (docs/formal.md), or here with
``--runslow``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pascal_hdl.config import CoreConfig, LayerConfig
from pascal_hdl.formal.mutant_plugin import ENV
from pascal_hdl.formal.mutants import (
    ACCEPTED_SURVIVORS,
    ENGINE_MUTATIONS,
    GATEWARE_MUTATIONS,
    NEURON_MUTATIONS,
    load_mutant,
    mutation_named,
)
from pascal_hdl.formal.mutation import REPO, MutantResult, TierRun, score, tier_command

GATEWARE = "tests/pascal_hdl/gateware"

# (mutant, the test that must kill it): the weak spots of issue 17, a handshake
# bug, a counter off by one, a reset that leaves partial sums (issue 13), the two
# double-buffer bugs, and one that only a proof sees.
DEFAULT_SUBSET = [pytest.param(name, node_id, id=name) for name, node_id in [
    ("accept_index_in_features", f"{GATEWARE}/test_engine.py::test_bad_events_are_rejected_and_dropped"),
    ("accept_count_above_t1", f"{GATEWARE}/test_engine.py::test_bad_events_are_rejected_and_dropped"),
    ("readout_last_maximum", f"{GATEWARE}/test_engine.py::test_readout_ties_go_to_the_first_maximum"),
    ("emit_ignores_ready", f"{GATEWARE}/test_engine.py::test_engine_matches_model_and_contract[13x9_T4-3_lanes4]"),
    ("cycles_from_zero", f"{GATEWARE}/test_core.py::test_core_as_transactions"),
    ("clear_never_writes",
     f"{GATEWARE}/test_engine.py::test_reset_in_the_middle_of_samples_leaves_no_partial_sum[0-readout]"),
    # the double buffer (issue 13): its proofs run with --runslow, the simulator must catch these
    ("drain_reads_fill_bank",
     f"{GATEWARE}/test_engine.py::test_double_buffered_engine_matches_model_and_contract[13x9_T4-3_lanes4]"),
    ("bank_not_cleared_after_drain",
     f"{GATEWARE}/test_engine.py::test_double_buffered_engine_matches_model_and_contract[13x9_T4-3_lanes4]"),
]] + [pytest.param("start_ignores_ready", "tests/pascal_hdl/formal/test_neuron.py::test_neuron_k_induction[small-equivalence]",
                   marks=pytest.mark.formal, id="start_ignores_ready-formal")]


def run_with_mutant(name: str, *node_ids: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{ENV: name})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
                           "pascal_hdl.formal.mutant_plugin", "-rf", "--tb=line", "-x", *node_ids],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name, node_id", DEFAULT_SUBSET)
def test_default_mutant_is_killed(name, node_id):
    proc = run_with_mutant(name, node_id)
    out = proc.stdout + proc.stderr
    assert f"gateware mutant installed: {name} " in out, out[-2000:]
    assert proc.returncode == 1 and f"FAILED {node_id}" in out, \
        f"mutant {name} ({mutation_named(name).description}) survives {node_id}:\n{out[-3000:]}"


def test_every_gateware_mutant_applies_and_elaborates(tmp_path):
    """Each mutation matches its design exactly once and the mutant still builds, so a kill is the
    tests' doing, not a crash; names are unique; the formal subsets are drawn from the list."""
    from amaranth.hdl import Fragment

    hidden = LayerConfig("h", np.arange(20).reshape(5, 4) % 7 - 3, 3, 2, np.full(5, 7), np.zeros(5, np.int64), 2)
    readout = LayerConfig("r", np.arange(15).reshape(3, 5) % 5 - 2, 2, None, None, np.zeros(3, np.int64), 2)
    core = CoreConfig("c", 4, 3, (hidden, readout))
    blocks = {"neuron": 0, "engine": 0, "core": 0}
    for mutation in GATEWARE_MUTATIONS:
        module = load_mutant(mutation, tmp_path)
        if mutation.block == "neuron":
            Fragment.get(module.PascIfNeuron(current_width=4, v0_width=4, theta_width=3, max_t_in=2, max_t_out=2), None)
        elif mutation.block == "engine":
            for layer in (hidden, readout):
                Fragment.get(module.LayerEngine(layer), None)
        else:
            Fragment.get(module.NetworkCore(core), None)
        blocks[mutation.block] += 1
    assert len({m.name for m in GATEWARE_MUTATIONS}) == len(GATEWARE_MUTATIONS)
    assert min(blocks.values()) >= 8, blocks
    assert set(NEURON_MUTATIONS + ENGINE_MUTATIONS) <= set(GATEWARE_MUTATIONS)
    assert set(ACCEPTED_SURVIVORS) <= {m.name for m in GATEWARE_MUTATIONS}


def test_mutation_runner_commands_and_score():
    sim = tier_command("sim", "engine", stop_first=True)
    assert sim[-1] == "-x" and "tests/pascal_hdl/gateware/test_engine.py" in sim and "not mutant" in sim
    assert "tests/pascal_hdl/gateware/test_neuron.py" not in sim      # an engine mutant cannot reach it
    assert tier_command("formal", "core", stop_first=True) is None   # no core harness
    results = [MutantResult("a", "engine", "", "killed", "sim", [TierRun("sim", "killed", 1.0, ["t"])]),
               MutantResult("b", "engine", "", "survived", None, [TierRun("sim", "survived", 1.0)]),
               MutantResult("c", "core", "", "error", None, [TierRun("sim", "error", 1.0)])]
    assert score(results) == {"all": {"killed": 1, "total": 2, "percent": 50.0},
                              "core": {"killed": 0, "total": 0, "percent": None},
                              "engine": {"killed": 1, "total": 2, "percent": 50.0}, "errors": ["c"]}


@pytest.mark.slow
def test_gateware_mutation_score(tmp_path):
    """The full list, quick tier (simulator, then formal): at least 95 % killed, every survivor explained."""
    out = tmp_path / "mutation.json"
    proc = subprocess.run([sys.executable, "-m", "pascal_hdl.formal.mutation", "--tier", "quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert json.loads(out.read_text())["score"]["all"]["percent"] >= 95
