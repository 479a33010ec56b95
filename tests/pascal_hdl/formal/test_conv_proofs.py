"""Bounded proofs of the Conv2d engine's address generation and scatter and of the pooling unit (issue 12),
with one and two banks (issue 13), each with mutants it must refute; see :mod:`pascal_hdl.formal.conv_proofs`."""
from __future__ import annotations

import pytest

from pascal_hdl.formal.conv_proofs import (
    CASES,
    CONV_BANKED_PROOFS,
    CONV_MUTATIONS,
    CONV_PROOFS,
    OVERLAP_COVER,
    POOL_BANKED_PROOFS,
    POOL_PROOFS,
    RESET_COVER,
    REUSE_COVER,
    covers_reached,
    load_case_mutant,
    prove,
    receptive_field,
)
from pascal_hdl.formal.mutants import all_mutation_names

pytestmark = pytest.mark.formal

ONE_BANK = CONV_PROOFS + POOL_PROOFS
# Double-buffered: in the default suite (28-59 s each, docs/formal.md), no --runslow needed.
BANKED = CONV_BANKED_PROOFS + POOL_BANKED_PROOFS


def test_configurations_reach_the_cases_the_proofs_are_about():
    """The conv proofs' maps have inputs with fields of every size (corners, edges, centre, stride gaps
    reaching nothing), the ports carry invalid events, the pooling windows overlap; the banked conv map's
    inputs reach one or two outputs, the banked pooling case is a one-bank one with two banks."""
    sizes = [sorted({len(receptive_field(case.config, j)) for j in range(case.config.in_features)})
             for case in CONV_PROOFS + CONV_BANKED_PROOFS]
    assert sizes == [[2, 4, 8], [0, 1], [1, 2]]
    first = CONV_PROOFS[0].config
    assert first.groups == 2 and first.in_features < 16
    second = CONV_PROOFS[1].config
    assert second.groups == 1 < second.lanes and second.input_layout == "hwc" and second.t_in == 2
    for case in POOL_PROOFS + POOL_BANKED_PROOFS:
        pool = case.config
        assert pool.in_features < 4 and pool.t_in + 1 < 4                 # 2-bit index and count
        assert max(pool.event_work(j) for j in range(pool.in_features)) == 2   # an input in two windows
    assert [c.banks for c in ONE_BANK] == [1] * 4 and [c.banks for c in BANKED] == [2, 2]
    assert all(c.reuse_depth == 0 for c in ONE_BANK) and all(c.reuse_depth > 0 for c in BANKED)


@pytest.mark.parametrize("case", ONE_BANK + BANKED, ids=lambda c: c.name)
def test_bounded_proof(case, tmp_path, proved):
    """Conv: every spike reaches exactly its receptive field's synapses, once per spike, and all before the
    neurons read the accumulators; a spike goes only into a bank whose sample has been read out; outputs
    in increasing order, `last` on the last neuron. Pool: every pooled count is the max / sum of its window,
    zeros skipped. Banked: the same for every sample in flight (one reading out, one filling the other bank)."""
    proved(prove(case, tmp_path))


@pytest.mark.parametrize("case", ONE_BANK + BANKED, ids=lambda c: c.name)
def test_bound_reaches_the_interesting_cases(case, tmp_path, proved):
    """Cover: a full-count border event is scattered completely and a sample reaches its output (conv);
    a result whose two cells are nonzero (pool): within the proof's bound. Banked, within the proof's bound
    too: an output while the next sample is complete in the other bank, and the output of the third sample
    after a reset (scattered or pooled into the first one's bank after that was read out: a bank reused).
    An output after a reset that hit a sample in flight (spikes still to scatter, nonzero cells): within the
    cover bound (a sample, a reset, the CLEAR, the next sample)."""
    result = prove(case, tmp_path, mode="cover")
    proved(result)
    steps = covers_reached(result)
    expected = (3 if case in CONV_PROOFS + CONV_BANKED_PROOFS else 2) + (2 if case.banks == 2 else 0)
    assert len(steps) == expected, (steps, result.log)
    assert steps[RESET_COVER] < case.cover_depth
    assert max(step for message, step in steps.items() if message != RESET_COVER) < case.depth, steps
    if case.banks == 2:
        assert {OVERLAP_COVER, REUSE_COVER} <= set(steps)


@pytest.mark.parametrize("case", BANKED, ids=lambda c: c.name)
def test_banked_bound_needs_its_reuse_depth(case, tmp_path):
    """Without :attr:`ProofCase.reuse_depth` the bound would not reach a bank's reuse (the cover run at that
    depth does not reach it)."""
    result = prove(case, tmp_path, mode="cover", depth=case.depth - case.reuse_depth)
    steps = covers_reached(result)
    assert steps and REUSE_COVER not in steps, steps


def test_bank_clear_mutant_needs_the_reuse_depth(tmp_path):
    """A bank that is not cleared after its read-out is seen only where it is reused: the mutant survives
    the bound without :attr:`ProofCase.reuse_depth` (it is refuted with it, below)."""
    mutation, case_name, _ = CONV_MUTATIONS["bank_not_cleared_after_sweep"]
    case = CASES[case_name]
    module = load_case_mutant(mutation, case, tmp_path / "src")
    result = prove(case, tmp_path, module=module, depth=case.depth - case.reuse_depth, name="shallow")
    assert result.passed, result.summary()


@pytest.mark.parametrize("name", list(CONV_MUTATIONS))
def test_mutant_has_counterexample(name, tmp_path, refuted):
    mutation, case_name, messages = CONV_MUTATIONS[name]
    module = load_case_mutant(mutation, CASES[case_name], tmp_path / "src")
    result = prove(CASES[case_name], tmp_path, module=module, name=f"mutant_{name}")
    refuted(result, mutation, messages)


def test_every_bank_mutant_is_refuted_on_a_banked_case():
    """The bank logic's mutants name a double-buffered case (a one-bank proof cannot see them), every
    banked case has a mutant, and the table's names are unique across every mutation table."""
    banked = {c.name for c in BANKED}
    bank_mutants = {name: case for name, (_, case, _) in CONV_MUTATIONS.items() if CASES[case].banks == 2}
    assert set(bank_mutants.values()) == banked
    assert {"conv_hand_over_mid_drain", "pool_hand_over_mid_sweep", "bank_not_cleared_after_sweep"} <= set(bank_mutants)
    assert not set(CONV_MUTATIONS) & set(all_mutation_names())
    assert all(name == mutation.name for name, (mutation, _, _) in CONV_MUTATIONS.items())
