"""The golden mutation tier (issue 17): every mutant applies, and a fixed subset is killed in the default run.

The whole list runs with ``python mutation/run.py --package golden`` (docs/mutation.md). Here the
mutants of the weak spots issue 17 found are each applied to a copy of ``src/pascal_ref`` and the
one test that must kill them is run on it (a few seconds each).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if "mutation.golden" in sys.modules:
    golden = sys.modules["mutation.golden"]
else:
    _spec = importlib.util.spec_from_file_location("mutation.golden", REPO / "mutation" / "golden.py")
    golden = importlib.util.module_from_spec(_spec)
    sys.modules["mutation.golden"] = golden      # dataclasses look their module up
    _spec.loader.exec_module(golden)

T = "tests/pascal_ref"
DEFAULT_SUBSET = [
    ("allow_getattr", f"{T}/io/test_edges_pickle_allowlist.py::test_the_reader_accepts_exactly_the_allowed_globals"),
    ("v0_floor", f"{T}/golden/test_edges_rounding.py::test_theta_v0_bias_above_and_at_ties"),
    ("theta_half_up", f"{T}/golden/test_edges_rounding.py::test_theta_v0_bias_at_ties_to_even"),
    ("input_coding_rint", f"{T}/golden/test_edges_rounding.py::test_input_coding_rounds_ties_up"),
    ("max_bits_one_short", f"{T}/golden/test_edges_rounding.py::test_max_bits_boundary_on_the_hidden_layer"),
    ("fast_upward_lt", f"{T}/fast/test_edges_float_division.py::test_float_division_equals_integer_floor_at_every_multiple"),
    ("verify_float_mismatch_blind", f"{T}/analysis/test_edges_float_verify.py::test_verify_counts_the_disagreement_exactly"),
]


def test_every_golden_mutant_applies_once_and_names_its_tests():
    """Each snippet occurs exactly once in today's source (an edit that moves it must update the list), the
    mutant still compiles, and every named test file exists."""
    assert len(golden.GOLDEN_MUTATIONS) >= 37
    for mutation in golden.GOLDEN_MUTATIONS:
        source = (golden.SOURCE / mutation.file).read_text()
        compile(mutation.apply(source), mutation.file, "exec")
        assert mutation.tests and all((REPO / t.split("::")[0]).is_file() for t in mutation.tests), mutation.name
    assert set(golden.ACCEPTED_SURVIVORS) <= {m.name for m in golden.GOLDEN_MUTATIONS}
    assert {name for name, _ in DEFAULT_SUBSET} <= {m.name for m in golden.GOLDEN_MUTATIONS}


@pytest.mark.parametrize("name, node_id", DEFAULT_SUBSET, ids=[name for name, _ in DEFAULT_SUBSET])
def test_default_golden_mutant_is_killed(name, node_id, tmp_path):
    result = golden.run_tests(golden.mutation_named(name), (node_id,), tmp_path, timeout=600)
    assert result.status == "killed" and node_id in result.failing, \
        f"golden mutant {name} ({result.why}) survives {node_id}: {result.status}\n{result.detail}"
