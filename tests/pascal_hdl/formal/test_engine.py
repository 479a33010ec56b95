"""Formal proof of the layer engine's accumulation (issue 7); see docs/formal.md."""
from __future__ import annotations

import pytest

from pascal_hdl.formal.engine_proofs import (
    GROUPED_ENGINE,
    HIDDEN_ENGINE,
    SMALL_ENGINE,
    engine_trace_summary,
    prove_engine,
)
from pascal_hdl.formal.mutants import ENGINE_MUTATIONS, load_mutant

pytestmark = pytest.mark.formal

CONFIGS = [SMALL_ENGINE, GROUPED_ENGINE, HIDDEN_ENGINE]


def _check(result):
    assert result.passed, f"{result.summary()}\nfailed: {result.failed}\ntrace: {result.trace}\n{result.log}"
    print(result.summary())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_engine_accumulation_bounded(config, tmp_path):
    """Every logit == bias + sum of the weights of the spiking inputs, any spike pattern and stall pattern."""
    _check(prove_engine(config, tmp_path))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_engine_depth_covers_longest_sample(config, tmp_path):
    """The bound is long enough: a result for a sample with every input at count T1 is reachable."""
    result = prove_engine(config, tmp_path, mode="cover")
    _check(result)
    assert result.cover_steps and max(result.cover_steps) < config.samples_depth()


@pytest.mark.parametrize("mutation", ENGINE_MUTATIONS, ids=lambda m: m.name)
def test_engine_mutant_has_counterexample(mutation, tmp_path):
    hidden = "hidden engine" in mutation.description
    config = HIDDEN_ENGINE if hidden else SMALL_ENGINE
    module = load_mutant(mutation, tmp_path / "src")
    result = prove_engine(config, tmp_path, module=module, name=f"mutant_{mutation.name}")
    assert result.status == "FAIL", f"{mutation.description}: {result.summary()}\n{result.log}"
    assert result.trace is not None and result.failed
    assert any(("count 0" if hidden else "accumulation") in f for f in result.failed), result.failed
    print(f"{mutation.name} ({mutation.description}): {result.summary()}")
    print("failed:", "; ".join(result.failed))
    print(engine_trace_summary(result, config))
