"""pytest plugin of the golden mutation tier: make sure ``pascal_ref`` comes from the mutated copy.

``PASCAL_REF_MUTANT`` is ``<name>@<folder>`` (set by :mod:`mutation.golden`).
At configure time the plugin imports ``pascal_ref`` and refuses to run when it
does not come from ``<folder>`` (an installed copy ahead of ``PYTHONPATH``
would make every mutant "survive"); the session header names the mutant,
which is how the runner checks that it was in place. Without the variable it
does nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "PASCAL_REF_MUTANT"


def pytest_configure(config):
    value = os.environ.get(ENV)
    if not value:
        return
    name, _, folder = value.partition("@")
    import pascal_ref

    origin = Path(pascal_ref.__file__).resolve()
    if not origin.is_relative_to(Path(folder).resolve()):
        raise pytest.UsageError(f"golden mutant {name}: pascal_ref imported from {origin}, not from the copy {folder}")
    config._pascal_ref_mutant = (name, folder)


def pytest_report_header(config):
    mutant = getattr(config, "_pascal_ref_mutant", None)
    if mutant is not None:
        return f"golden mutant installed: {mutant[0]} from {mutant[1]}"
    return None
