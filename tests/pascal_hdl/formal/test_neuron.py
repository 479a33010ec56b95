"""Formal proofs of the hardware PASC-IF neuron unit (issue 7); see docs/formal.md.

Every proof runs SymbiYosys (yowasp-sby, yosys-smtbmc, Yices 2 or z3) on an
Amaranth harness from ``pascal_hdl.formal``.  Selected with ``-m formal``.
"""
from __future__ import annotations

import pytest

from pascal_hdl.formal.mutants import NEURON_MUTATIONS, load_mutant
from pascal_hdl.formal.neuron_proofs import (
    LARGE,
    MEDIUM,
    NEURON_PROOFS,
    SMALL,
    WIDE,
    bundled_neuron_configs,
    neuron_trace_summary,
    prove_neuron,
)
from pascal_hdl.formal.reference import NeuronRanges

pytestmark = pytest.mark.formal

BUNDLED = bundled_neuron_configs()
BUNDLED_T2_8 = bundled_neuron_configs(max_t_out=8)


def test_bundled_models_emit_neuron_units():
    # The generator emits at least the digits MLP's hidden layer; its widths come from the model.
    assert BUNDLED, "no bundled model gives a neuron unit: nothing to prove"
    assert any(c.name.startswith("digits_mlp") for c in BUNDLED)
    for config in BUNDLED:
        assert config.max_t_in == 1  # the engine runs every unit with T1 = 1 (I[0] = S)
    # The widths docs/formal.md states for the digits MLP's unit (current, v0, theta, T1, T2).
    digits = next(c for c in BUNDLED if c.name.startswith("digits_mlp"))
    assert (digits.current_width, digits.v0_width, digits.theta_width, digits.max_t_in, digits.max_t_out) == \
        (17, 14, 13, 1, 4)


@pytest.mark.parametrize("proof", NEURON_PROOFS)
@pytest.mark.parametrize("config", [SMALL, WIDE, *BUNDLED], ids=lambda c: c.name)
def test_neuron_k_induction(config, proof, tmp_path, proved):
    """k-induction (unbounded): every input sequence, every run, from any reachable state."""
    proved(prove_neuron(config, proof, tmp_path))


@pytest.mark.parametrize("config", [LARGE, *BUNDLED_T2_8], ids=lambda c: c.name)
def test_neuron_equivalence_large(config, tmp_path, proved):
    proved(prove_neuron(config, "equivalence", tmp_path))


@pytest.mark.parametrize("config", [SMALL, *BUNDLED], ids=lambda c: c.name)
def test_neuron_contract_not_vacuous(config, tmp_path, proved):
    """The assumptions leave the interesting runs: clipped low (after inhibitory
    spikes), clipped high at the longest T2, and unclipped, all reach their end."""
    result = prove_neuron(config, "cover", tmp_path, mode="cover", depth=config.schedule_depth())
    proved(result)
    assert len(result.cover_steps) == 3, result.log


@pytest.mark.parametrize("proof", NEURON_PROOFS)
@pytest.mark.parametrize("mutation", NEURON_MUTATIONS, ids=lambda m: m.name)
def test_neuron_mutant_has_counterexample(mutation, proof, tmp_path, refuted):
    """A design with one operator flipped fails each proof with a trace from reset."""
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_neuron(SMALL, proof, tmp_path, module=module, mode="bmc", depth=SMALL.schedule_depth(),
                          name=f"mutant_{mutation.name}_{proof}")
    refuted(result, mutation)
    assert result.trace.name == "trace.vcd"
    print(neuron_trace_summary(result, SMALL))


def test_ranges_cover_the_design_widths():
    # The reference's declared membrane range is the design's derived range.
    for config in [SMALL, MEDIUM, LARGE, WIDE, *BUNDLED]:
        widths = config.widths()
        ranges = config.ranges
        assert ranges.membrane == (widths.v_min, widths.v_max), config.name
        assert ranges.counter == (widths.c_min, widths.c_max), config.name


def test_ranges_validated():
    with pytest.raises(ValueError, match="theta must be >= 1"):
        NeuronRanges(current=(-1, 1), theta=(0, 3), v0=(0, 0), max_t_in=1, max_t_out=1)
    with pytest.raises(ValueError, match="empty"):
        NeuronRanges(current=(2, 1), theta=(1, 3), v0=(0, 0), max_t_in=1, max_t_out=1)
