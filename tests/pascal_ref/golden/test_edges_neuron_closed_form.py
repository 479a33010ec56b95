"""The closed form clip(floor((v0 + S) / theta), 0, T2) in float, where floor and round differ (issue 17).

The theorem tests use integers, where a rounded division and a floored one
differ too, but the float branch of :func:`neuron_count` was only reached with
quotients that are integers. Here the quotients end in .5 and .75 and the
stage machine :func:`pasc_if` is the reference.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.golden.neuron import neuron_count, pasc_if


def test_float_closed_form_floors():
    theta, v0 = 0.5, 0.125
    totals = np.array([0.25, 0.75, 1.125, 1.5, -0.375, 3.0])          # (v0 + S) / theta = 0.75 1.75 2.5 3.25 -0.5 6.25
    expected = np.array([0, 1, 2, 3, 0, 4])                           # floor, clipped to 0..T2 = 4
    np.testing.assert_array_equal(neuron_count(totals, theta, v0, 4), expected)
    # The stage machine gives the same counts with the whole current in one step.
    np.testing.assert_array_equal(pasc_if(totals[None], theta, v0, 4).counts, expected)


def test_integer_closed_form_floors_negative_quotients():
    totals = np.array([-7, -6, -1, 0, 5, 6, 40])
    np.testing.assert_array_equal(neuron_count(totals, 3, 1, 8), [0, 0, 0, 0, 2, 2, 8])
    np.testing.assert_array_equal(pasc_if(totals[None], 3, 1, 8).counts, [0, 0, 0, 0, 2, 2, 8])
