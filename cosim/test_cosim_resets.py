"""``rst`` at random cycles in the middle of samples, on the generated Verilog of cores with samples in
flight (issue 13): after each reset the next samples are exact (:mod:`pascal_cosim.resets`).

Designs, from ``cosim/designs.py``:

* ``digits-mlp-double-buffered``: two in flight, act1 double-buffered;
* ``digits-cnn-balanced``, ``digits-resnet-balanced``: three in flight, every stage double-buffered, ``--mac``.

Each runs on both simulators, on the first digits test images, split into epochs with a reset
inside every epoch but the last. Each reset lands with samples in flight. Every result must equal
the integer golden model: logits, class, the sample number from 0 again after each reset, and
``rejected`` clear; and every image a stage finished sending before a reset (its ``monitor_*``
events up to ``last``) must have that stage's golden counts. The last epoch gives all its samples.

``test_a_core_that_keeps_partial_sums_fails``: the same bench on the MLP generated with the mutant
``clear_never_writes`` (the engines' CLEAR phase runs but writes nothing, so a reset leaves the
interrupted sample's partial sums). The run must name the images after the resets whose logits
are wrong. The mutant is installed in a subprocess of its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from designs import case_of
from jobboard import CosimJob

from pascal_cosim.resets import cosim_resets

pytestmark = pytest.mark.cosim

# design: (images, epochs); the ResNet takes about 12,000 cycles a sample with three in flight
RUNS = {"digits-mlp-double-buffered": (16, 4), "digits-cnn-balanced": (12, 4), "digits-resnet-balanced": (9, 3)}
MUTANT_DESIGN, MUTANT = "digits-mlp-double-buffered", "clear_never_writes"
SEED = 5


def _mutant_run(root: Path, simulator: str) -> list[str]:
    """The judge's errors of the reset bench on the MLP generated with :data:`MUTANT` (a subprocess)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from pascal_hdl.formal.mutants import install_mutant, mutation_named\n"
        f"install_mutant(mutation_named({MUTANT!r}))\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from designs import design\n"
        "from pascal_cosim.resets import cosim_resets\n"
        "from pascal_hdl.flow.generate import core_config_from_network, generate_from_network\n"
        "from pascal_ref.io.data import load_digits_split\n"
        "root = Path(sys.argv[2])\n"
        f"network, options = design({MUTANT_DESIGN!r})\n"
        f"folder = root / 'src' / 'mutant_{MUTANT}'\n"
        "generate_from_network(network, folder, **options)\n"
        "config, model = core_config_from_network(network, **options)\n"
        "levels = model.encode_input(load_digits_split()[2][:12]).reshape(12, -1)\n"
        f"run, errors = cosim_resets(folder, config, model, levels, sys.argv[3], run_name='mutant-{MUTANT}-' + sys.argv[3],\n"
        f"                           root=root, epochs=4, seed={SEED})\n"
        "print(json.dumps(errors))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(root), simulator],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"mutant run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cosim_job(item, root) -> CosimJob | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    simulator = params.get("simulator")
    if simulator is None:
        return None
    if item.originalname == "test_a_core_that_keeps_partial_sums_fails":
        return CosimJob(("resets-mutant", simulator), 60, lambda: _mutant_run(root, simulator))
    name = params["name"]
    images, epochs = RUNS[name]

    def run():
        case = case_of(root, name)      # the pipeline tests' build folder and design
        return cosim_resets(case.folder, case.config, case.model, case.levels[:images], simulator,
                            run_name=f"{name}-resets-{simulator}", root=root, epochs=epochs, seed=SEED)
    cost = 30 if simulator == "verilator" else 15 * images
    return CosimJob((name, "resets", simulator), cost, run)


@pytest.mark.parametrize("name", tuple(RUNS))
def test_resets_in_the_middle_of_samples(name, simulator, request, cosim_jobs):
    run, errors = cosim_jobs.result(request.node)
    epochs = run.report["epochs"]
    print(f"\n{name} resets ({simulator}): {len(epochs)} epochs, in flight at each reset "
          f"{[e['in_flight_at_reset'] for e in epochs[:-1]]}, results per epoch {[len(e['results']) for e in epochs]}, "
          f"images each stage finished per epoch {[[sum(ev[2] for ev in events) for events in e['monitors'].values()] for e in epochs]}, "
          f"{run.report['cycles']:,} cycles in {run.report['wall_s']:.1f} s")
    assert not errors, f"{len(errors)} errors:\n" + "\n".join(errors[:10])
    assert len(epochs) == RUNS[name][1]
    assert all(e["in_flight_at_reset"] >= 1 for e in epochs[:-1])
    assert sum(len(e["results"]) for e in epochs) >= len(epochs[-1]["results"]) > 0


def test_a_core_that_keeps_partial_sums_fails(simulator, request, cosim_jobs):
    errors = cosim_jobs.result(request.node)
    print(f"\nmutant {MUTANT} ({simulator}): {len(errors)} errors: {errors[:6]}")
    wrong = [e for e in errors if "logits" in e]
    assert wrong, f"the mutant {MUTANT} passed the reset bench: {errors}"
    # the stale partial sums show first in the hidden layer's counts, named by image and layer
    assert any(e.startswith("epoch ") and " layer act1: neurons " in e for e in errors), errors
    assert all(e.startswith("epoch ") and " image " in e for e in wrong), wrong
    assert np.all([int(e.split()[1].rstrip(":")) >= 1 for e in wrong])   # after a reset, not before the first
