"""pytest plugin: run a whole pytest session against one gateware mutant.

    PASCAL_HDL_MUTANT=readout_last_maximum python -m pytest -p pascal_hdl.formal.mutant_plugin tests/pascal_hdl/gateware

With ``PASCAL_HDL_MUTANT`` set to the name of one of
:data:`pascal_hdl.formal.mutants.GATEWARE_MUTATIONS`, the mutated module is
installed under the real module name (:func:`~pascal_hdl.formal.mutants.install_mutant`)
before any test module is imported, so the Amaranth-simulator tests, the
formal harnesses and the Verilog generator all build the broken design.
Tests that apply mutants themselves (their name contains ``mutant``) are
deselected: they would mutate the mutant. The session header names the
mutant, which is how the runner makes sure it was in place. Without the
variable the plugin does nothing.
"""
from __future__ import annotations

import os

ENV = "PASCAL_HDL_MUTANT"


def _active(config):
    return getattr(config, "_pascal_hdl_mutant", None)


def pytest_configure(config):
    name = os.environ.get(ENV)
    if not name:
        return
    from .mutants import install_mutant, mutation_named

    mutation = mutation_named(name)
    install_mutant(mutation)
    config._pascal_hdl_mutant = mutation


def pytest_report_header(config):
    mutation = _active(config)
    if mutation is not None:
        return f"gateware mutant installed: {mutation.name} in {mutation.target} ({mutation.description})"
    return None


def pytest_collection_modifyitems(config, items):
    if _active(config) is None:
        return
    keep, drop = [], []
    for item in items:
        (drop if "mutant" in item.name else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
