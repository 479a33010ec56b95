"""The import arrows of the house, checked: import-linter contracts and a core-only import.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): the golden
model is layered and never imports the hardware side, the hardware widths,
configuration and cycle models never import Amaranth, and only the PyTorch
exporter imports torch. A second check imports every core module in a
process where the optional extras cannot be imported, as a ``pip install .``
without extras would leave it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# What a core-only install lacks: every optional extra's top-level modules.
OPTIONAL = ("amaranth", "cocotb", "cocotb_tools", "torch", "matplotlib", "distributed", "dask")

# A None in sys.modules makes ``import m`` fail and ``find_spec(m)`` answer None, as for an absent package.
BLOCKER = """
import sys
for name in {optional!r}:
    sys.modules[name] = None
"""


def _lint(cwd: Path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_import_contracts_are_kept():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, contract, message", [
    ("pascal_ref/golden/neuron.py", "import pascal_hdl.config", "the golden model never imports the hardware side",
     "pascal_ref.golden.neuron -> pascal_hdl.config"),
    ("pascal_ref/ir/network.py", "import pascal_ref.golden.ops", "pascal_ref layers",
     "pascal_ref.ir.network -> pascal_ref.golden.ops"),
    ("pascal_hdl/config.py", "import amaranth", "widths, config, cycle models never import amaranth",
     "pascal_hdl.config -> amaranth"),
    ("pascal_hdl/model/engine.py", "import pascal_hdl.gateware.engine", "pascal_hdl layers",
     "pascal_hdl.model.engine -> pascal_hdl.gateware.engine"),
    ("pascal_ref/analysis/al.py", "import torch", "only the PyTorch exporter imports torch",
     "pascal_ref.analysis.al -> torch"),
    ("pascal_hdl/flow/generate.py", "import pascal_cosim.runner", "the golden model and the generator never import",
     "pascal_hdl.flow.generate -> pascal_cosim.runner"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract, message):
    """Each contract can fail: a copy of the tree with one forbidden import added is refused."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "src" / module, "a") as handle:
        handle.write(f"\n{line}  # added on purpose by the test\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "src"))
    proc = _lint(tmp_path, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = [l for l in proc.stdout.splitlines() if "BROKEN" in l]
    assert any(l.startswith(contract) for l in broken), proc.stdout
    assert message in proc.stdout, proc.stdout


CORE_CHECK = BLOCKER + """
import importlib, pkgutil, io, contextlib
import pascal_ref, pascal_hdl
skip = {{'pascal_ref.convert.torch_export', 'pascal_ref.cli.__main__'}}
amaranth_side = ('pascal_hdl.gateware', 'pascal_hdl.flow.generate', 'pascal_hdl.formal',
                 'pascal_hdl.board.axis', 'pascal_hdl.board.uart', 'pascal_hdl.board.hostlink')
loaded = []
for package in (pascal_ref, pascal_hdl):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):
        if info.name in skip or info.name.startswith(amaranth_side):
            continue
        importlib.import_module(info.name)
        loaded.append(info.name)
leaked = sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in {optional!r})
assert not leaked, leaked
from pascal_ref.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(['hdl', 'digits-mlp', '-o', {out!r}])
print(code, err.getvalue().strip())
print(len(loaded), 'modules')
"""


def test_core_modules_import_without_the_extras(tmp_path):
    """Every golden-model module, the hardware widths/config/cycle models and the CLI import
    without any optional extra, and ``pascal-ref hdl`` then names the extra it needs."""
    code = CORE_CHECK.format(optional=OPTIONAL, out=str(tmp_path / "x"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("2 pascal-ref hdl: error: this command needs the 'hdl' extra"), first
    assert "pip install 'pascal-ref[hdl]'" in first
    assert not (tmp_path / "x").exists()
