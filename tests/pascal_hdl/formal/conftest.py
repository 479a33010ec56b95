"""Shared by the proof tests: ``proved``, the check that a SymbiYosys run passed, and ``refuted``, the
check that a mutant's run failed on one of the properties named."""
from __future__ import annotations

import pytest


def _proved(result):
    """Fail with the proof's summary, failed assertions, trace and log tail unless ``result`` passed;
    print the summary either way (``pytest -s`` shows the proofs' times)."""
    assert result.passed, f"{result.summary()}\nfailed: {result.failed}\ntrace: {result.trace}\n{result.log}"
    print(result.summary())


@pytest.fixture
def proved():
    return _proved


def _refuted(result, mutation, messages=()):
    """Fail unless ``result`` (a run on ``mutation``) found a counterexample, with a trace, on a failed
    assertion whose message contains one of ``messages`` (any failed assertion when none are given);
    print the mutant, its summary and the failed assertions."""
    assert result.status == "FAIL", f"{mutation.description}: {result.summary()}\n{result.log}"
    assert result.trace is not None and result.failed, f"{mutation.name}: no trace or no failed assertion"
    if messages:
        assert any(message in f for f in result.failed for message in messages), result.failed
    print(f"{mutation.name} ({mutation.description}): {result.summary()}; failed: {'; '.join(result.failed)}")


@pytest.fixture
def refuted():
    return _refuted
