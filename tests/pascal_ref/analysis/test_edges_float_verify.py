"""verify reports a float SNN / ANN disagreement that really happens (issue 17).

``tests/pascal_ref/golden/test_engines.py::test_float_timestep_engine_can_disagree_and_verify_reports_it``
feeds 0.1 + 0.2 to a threshold of 0.3 in one analog step: both paths compute
the same float and agree, so it asserts 0 == 0. Here the disagreement is
real: with count-coded input (L_in = 3) the float SNN adds 0.9 * (1/3) three
times (0.8999999999999999 < theta = 0.9: no spike) where the ANN computes
0.9 * (3/3) = 0.9 (level 1). The report must count exactly that neuron, at
distance 0 from the rounding boundary, and still be ``ok`` (the integer
paths agree).
"""
from __future__ import annotations

import numpy as np

from pascal_ref import Linear, Network, QCFS
from pascal_ref.analysis.verify import verify
from pascal_ref.golden.ann import float_ann
from pascal_ref.golden.snn import simulate


def disagreeing_network() -> Network:
    return Network((1,), [Linear("fc", np.array([[0.9]]), np.array([0.0])), QCFS("act", 0.9, 1, phi=0.0),
                          Linear("readout", np.array([[1.0]]))], input_levels=3, name="float_tie")


def test_the_float_paths_really_disagree():
    x = np.array([[0.0], [1 / 3], [2 / 3], [1.0]])
    net = disagreeing_network()
    assert 0.3 + 0.3 + 0.3 < 0.9
    np.testing.assert_array_equal(float_ann(net, x).levels["act"].ravel(), [0, 0, 0, 1])
    np.testing.assert_array_equal(simulate(net, x, engine="timestep").counts["act"].ravel(), [0, 0, 0, 0])


def test_verify_counts_the_disagreement_exactly():
    x = np.array([[0.0], [1 / 3], [2 / 3], [1.0], [1.0]])
    report = verify(disagreeing_network(), x)
    first = report["layers"][0]
    assert (first["neurons"], first["float_mismatches"]) == (5, 2)
    assert first["float_max_boundary_distance"] == 0.0        # the pre-activation is exactly 1.0
    assert first["integer_mismatches"] == 0 and report["ok"]
