"""Formal proof of the layer engine's accumulation (issue 7), its boundaries (issue 17), reset at any cycle
and double-buffered engines (issue 13); see docs/formal.md."""
from __future__ import annotations

import pytest

from pascal_hdl.formal.engine_proofs import (
    BOUNDARY_ENGINE,
    ENGINE_CONFIGS,
    MUTANT_CONFIGS,
    engine_trace_summary,
    prove_engine,
)
from pascal_hdl.formal.mutants import ENGINE_MUTATIONS, load_mutant

pytestmark = pytest.mark.formal


def _slow_if_banked(configs):
    """The double-buffered proofs need a depth at which a bank is reused (two samples more): with yices
    each takes many minutes, so they run with --runslow; the default suite checks double buffering in
    simulation, cycle by cycle against the models (tests/pascal_hdl/gateware/test_engine.py)."""
    return [pytest.param(c, marks=pytest.mark.slow) if c.layer.banks == 2 else c for c in configs]


PROOF_CONFIGS = _slow_if_banked(ENGINE_CONFIGS)
MUTANTS = [pytest.param(m, marks=pytest.mark.slow) if MUTANT_CONFIGS[m.name][0].layer.banks == 2 else m
           for m in ENGINE_MUTATIONS]


def test_boundary_engine_carries_the_invalid_events_and_a_tie():
    """The port of the boundary configuration can carry index == in_features and count == T1 + 1,
    and its weights give equal maximal logits (the empty sample: logits 0, 0, -1)."""
    assert BOUNDARY_ENGINE.carries_boundary_events()
    assert BOUNDARY_ENGINE.tie_counts() == (0, 0, 0)
    # The other configurations: a 1-bit index cannot carry in_features = 2, and no tie is possible.
    assert [c.carries_boundary_events() for c in ENGINE_CONFIGS] == [False, False, False, True, False, False]
    assert [c.tie_counts() is not None for c in ENGINE_CONFIGS] == [False, False, False, True, False, False]
    assert [c.layer.banks for c in ENGINE_CONFIGS] == [1, 1, 1, 1, 2, 2]   # double-buffered engines proved too


@pytest.mark.parametrize("config", PROOF_CONFIGS, ids=lambda c: c.name)
def test_engine_accumulation_bounded(config, tmp_path, proved):
    """Every logit == bias + sum of the weights of the valid spiking inputs (cls the first maximum; hidden:
    every count == the contract's), any event, stall and reset pattern (rst free in every cycle: after a
    reset, the samples that follow see nothing of the interrupted one); the output obeys the stream rule."""
    proved(prove_engine(config, tmp_path))


@pytest.mark.parametrize("config", PROOF_CONFIGS, ids=lambda c: c.name)
def test_engine_depth_covers_longest_sample(config, tmp_path, proved):
    """The bound is long enough: a result for a sample with every input at count T1 is reachable, and so
    is a result after a reset that hit nonzero partial sums; where the weights allow a tie, a result with
    two equal maximal logits is reached too."""
    result = prove_engine(config, tmp_path, mode="cover")
    proved(result)
    covers = 2 + (config.tie_counts() is not None)
    assert len(result.cover_steps) == covers, result.log
    assert max(result.cover_steps) < config.samples_depth()


@pytest.mark.parametrize("mutation", MUTANTS, ids=lambda m: m.name)
def test_engine_mutant_has_counterexample(mutation, tmp_path, refuted):
    config, messages = MUTANT_CONFIGS[mutation.name]
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_engine(config, tmp_path, module=module, name=f"mutant_{mutation.name}")
    refuted(result, mutation, messages)
    print(engine_trace_summary(result, config))


def test_every_engine_mutant_has_a_configuration():
    assert {m.name for m in ENGINE_MUTATIONS} == set(MUTANT_CONFIGS)
