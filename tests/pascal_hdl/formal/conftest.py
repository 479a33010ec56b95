"""Shared by the proof tests: ``proved``, the check that a SymbiYosys run passed."""
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
