"""Bounded proofs of the Conv2d engine's address generation and scatter and of the pooling unit (issue 12),
each with mutants it must refute; see :mod:`pascal_hdl.formal.conv_proofs`."""
from __future__ import annotations

import pytest

from pascal_hdl.formal.conv_proofs import (
    CASES,
    CONV_MUTATIONS,
    CONV_PROOFS,
    POOL_PROOFS,
    prove,
    receptive_field,
)
from pascal_hdl.formal.mutants import load_mutant

pytestmark = pytest.mark.formal


def test_configurations_reach_the_cases_the_proofs_are_about():
    """The conv proofs' maps have inputs with fields of every size (corners, edges, centre, stride gaps
    reaching nothing), the ports carry invalid events, the pooling windows overlap."""
    sizes = [sorted({len(receptive_field(case.config, j)) for j in range(case.config.in_features)})
             for case in CONV_PROOFS]
    assert sizes == [[2, 4, 8], [0, 1]]
    first = CONV_PROOFS[0].config
    assert first.groups == 2 and first.in_features < 16
    second = CONV_PROOFS[1].config
    assert second.groups == 1 < second.lanes and second.input_layout == "hwc" and second.t_in == 2
    for case in POOL_PROOFS:
        pool = case.config
        assert pool.in_features < 4 and pool.t_in + 1 < 4                 # 2-bit index and count
        assert max(pool.event_work(j) for j in range(pool.in_features)) == 2   # an input in two windows


@pytest.mark.parametrize("case", CONV_PROOFS + POOL_PROOFS, ids=lambda c: c.name)
def test_bounded_proof(case, tmp_path, proved):
    """Conv: every spike reaches exactly its receptive field's synapses, once per spike, and all before the
    neurons read the accumulators. Pool: every pooled count is the max / sum of its window, zeros skipped."""
    proved(prove(case, tmp_path))


@pytest.mark.parametrize("case", CONV_PROOFS + POOL_PROOFS, ids=lambda c: c.name)
def test_bound_reaches_the_interesting_cases(case, tmp_path, proved):
    """Cover: a full-count border event is scattered completely and a sample reaches its output (conv);
    a result whose two cells are nonzero (pool): within the proof's bound. An output after a reset that
    hit a sample in flight (spikes still to scatter, nonzero cells): within the cover bound (the latest
    of the covers: a sample, a reset, the CLEAR, the next sample)."""
    result = prove(case, tmp_path, mode="cover")
    proved(result)
    assert len(result.cover_steps) == (3 if case in CONV_PROOFS else 2), result.log
    steps = sorted(result.cover_steps)
    assert max(steps[:-1]) < case.depth and steps[-1] < case.cover_depth


@pytest.mark.parametrize("name", list(CONV_MUTATIONS))
def test_mutant_has_counterexample(name, tmp_path, refuted):
    mutation, case_name, messages = CONV_MUTATIONS[name]
    module = load_mutant(mutation, tmp_path / "src")
    result = prove(CASES[case_name], tmp_path, module=module, name=f"mutant_{name}")
    refuted(result, mutation, messages)
