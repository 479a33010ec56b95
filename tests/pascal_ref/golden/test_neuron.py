"""The PASC-IF reference neuron: hand-computed trajectories and the theorem."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pascal_ref import neuron_count, pasc_if


def stage(result, index):
    return result.trace[index]


def test_internal_spike_then_negative_current():
    # theta=4, v0=2, currents +9, -8, +1: S=2, count = floor((2+2)/4) = 1.
    result = pasc_if(np.array([9, -8, 1]), theta=4, v0=2, t_out=3, trace=True)
    s1, s2, s3 = result.trace
    # stage 1: v 2+9=11 -> fire -> 7 (c=1); 7-8=-1 (c=1); -1+1=0 (c=1)
    np.testing.assert_array_equal(s1.v, [7, -1, 0])
    np.testing.assert_array_equal(s1.c, [1, 1, 1])
    np.testing.assert_array_equal(s1.excitatory, [True, False, False])
    # stage 2 (2 steps): v=0 in [0, theta): nothing
    np.testing.assert_array_equal(s2.v, [0, 0])
    np.testing.assert_array_equal(s2.inhibitory, [False, False])
    np.testing.assert_array_equal(result.spikes, [True, False, False])
    assert result.counts == 1


def test_early_spikes_corrected_by_inhibitory_spikes():
    # theta=2, v0=1: currents 5, 0, -6 -> S=-1, count = clip(floor(0/2)) = 0.
    result = pasc_if(np.array([5, 0, -6]), theta=2, v0=1, t_out=2, trace=True)
    s1, s2, _ = result.trace
    # stage 1: 1+5=6 -> 4 (c=1); 4 -> 2 (c=2); 2-6=-4 (c=2)
    np.testing.assert_array_equal(s1.v, [4, 2, -4])
    np.testing.assert_array_equal(s1.c, [1, 2, 2])
    # stage 2 (2 steps): -4 -> -2 (c=1, inhibitory) -> 0 (c=0, inhibitory)
    np.testing.assert_array_equal(s2.v, [-2, 0])
    np.testing.assert_array_equal(s2.c, [1, 0])
    np.testing.assert_array_equal(s2.inhibitory, [True, True])
    np.testing.assert_array_equal(s2.excitatory, [False, False])
    np.testing.assert_array_equal(result.spikes, [False, False])
    assert result.counts == 0


def test_saturates_at_t2():
    # theta=3, v0=1, currents 10, 10 (T1=2), T2=4: floor(21/3)=7 -> clipped to 4.
    result = pasc_if(np.array([10, 10]), theta=3, v0=1, t_out=4, trace=True)
    s1, s2, s3 = result.trace
    np.testing.assert_array_equal(s1.v, [8, 15])
    np.testing.assert_array_equal(s1.c, [1, 2])
    # stage 2: max(2,4)-1 = 3 steps: 15->12->9->6, c 3,4,5
    np.testing.assert_array_equal(s2.v, [12, 9, 6])
    np.testing.assert_array_equal(s2.c, [3, 4, 5])
    np.testing.assert_array_equal(result.spikes, [True] * 4)
    assert result.counts == 4
    np.testing.assert_array_equal(s3.excitatory, result.spikes)


def test_ends_below_zero():
    # theta=2, v0=1, currents -3, -4: S=-7; stage 2 (1 step) cannot lift v to 0.
    result = pasc_if(np.array([-3, -4]), theta=2, v0=1, t_out=2, trace=True)
    s1, s2, _ = result.trace
    np.testing.assert_array_equal(s1.v, [-2, -6])
    np.testing.assert_array_equal(s1.c, [0, 0])
    np.testing.assert_array_equal(s2.v, [-4])
    np.testing.assert_array_equal(s2.c, [-1])
    assert result.v == -4 and result.c == -1
    assert result.counts == 0
    assert not result.spikes.any()


def test_float_neuron_matches_hand_computation():
    result = pasc_if(np.array([0.7, 0.7, -0.2]), theta=0.5, v0=0.25, t_out=2, trace=True)
    # 0.95 -> 0.45 (c=1); 1.15 -> 0.65 (c=2); 0.45; stage 2: 0.45 stays; count 2
    np.testing.assert_allclose(result.trace[0].v, [0.45, 0.65, 0.45], atol=1e-12)
    assert result.counts == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(currents=np.zeros((0, 3)), theta=1, v0=0, t_out=1), "T1 = 0"),
    (dict(currents=np.zeros(3), theta=0, v0=0, t_out=1), "theta must be > 0"),
    (dict(currents=np.zeros(3), theta=1, v0=0, t_out=0), "t_out"),
    (dict(currents=np.zeros(3), theta=1, v0=0, t_out=1.5), "t_out"),
    (dict(currents=np.array([np.nan]), theta=1.0, v0=0, t_out=1), "NaN"),
    (dict(currents=np.array(["a"]), theta=1, v0=0, t_out=1), "integer or float"),
    (dict(currents=np.zeros((2, 3)), theta=np.ones(4), v0=0, t_out=1), "broadcast"),
    (dict(currents=5, theta=1, v0=0, t_out=1), "scalar"),
])
def test_bad_input(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pasc_if(**kwargs)


NEURONS = 256  # neurons per hypothesis example; 400 examples x 256 = 102,400 integer neurons


@settings(max_examples=400, deadline=None)
@given(t_in=st.integers(1, 16), t_out=st.integers(1, 16), seed=st.integers(0, 2**32 - 1),
       spread=st.sampled_from([1, 3, 10, 100, 10000]))
def test_theorem_integer(t_in, t_out, seed, spread):
    rng = np.random.default_rng(seed)
    currents = rng.integers(-spread, spread + 1, size=(t_in, NEURONS))
    theta = rng.integers(1, 2 * spread + 2, size=NEURONS)
    v0 = rng.integers(-2 * spread, 2 * spread + 1, size=NEURONS)
    result = pasc_if(currents, theta, v0, t_out)
    expected = np.clip((v0 + currents.sum(0)) // theta, 0, t_out)
    np.testing.assert_array_equal(result.counts, expected)
    np.testing.assert_array_equal(result.counts, neuron_count(currents.sum(0), theta, v0, t_out))
    # output is a burst of `counts` spikes
    np.testing.assert_array_equal(result.spikes, np.arange(t_out)[:, None] < expected[None])
    # any order of the same currents gives the same count
    shuffled = rng.permuted(currents, axis=0)
    np.testing.assert_array_equal(pasc_if(shuffled, theta, v0, t_out).counts, expected)
    # unless clipped, stage 2 leaves 0 <= v < theta
    inside = (v0 + currents.sum(0) >= 0) & ((v0 + currents.sum(0)) // theta <= t_out)
    assert np.all((result.v[inside] >= 0) & (result.v[inside] < theta[inside]))


@settings(max_examples=100, deadline=None)
@given(t_in=st.integers(1, 16), t_out=st.integers(1, 16), seed=st.integers(0, 2**32 - 1))
def test_theorem_float_with_dyadic_values(t_in, t_out, seed):
    """Float neurons on values exact in binary (multiples of 1/8): the
    theorem holds exactly; general floats are covered by the float reports."""
    rng = np.random.default_rng(seed)
    currents = rng.integers(-40, 41, size=(t_in, NEURONS)) / 8.0
    theta = rng.integers(1, 40, size=NEURONS) / 8.0
    v0 = rng.integers(-40, 41, size=NEURONS) / 8.0
    result = pasc_if(currents, theta, v0, t_out)
    expected = np.clip(np.floor((v0 + currents.sum(0)) / theta), 0, t_out)
    np.testing.assert_array_equal(result.counts, expected)


@settings(max_examples=50, deadline=None)
@given(currents=hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.just(4)), elements=st.integers(-50, 50)),
       theta=st.integers(1, 30), v0=st.integers(-30, 30), t_out=st.integers(1, 6))
def test_trace_is_consistent(currents, theta, v0, t_out):
    """Each recorded step follows the stage rules from the step before."""
    result = pasc_if(currents, theta, v0, t_out, trace=True)
    s1, s2, s3 = result.trace
    v = np.full(4, v0)
    c = np.zeros(4, np.int64)
    for t in range(currents.shape[0]):
        v = v + currents[t]
        fire = v >= theta
        np.testing.assert_array_equal(s1.excitatory[t], fire)
        v, c = v - theta * fire, c + fire
        np.testing.assert_array_equal(s1.v[t], v)
    for t in range(s2.v.shape[0]):
        exc, inh = v >= theta, v < 0
        np.testing.assert_array_equal(s2.excitatory[t], exc)
        np.testing.assert_array_equal(s2.inhibitory[t], inh)
        v, c = v - theta * exc + theta * inh, c + exc - inh
        np.testing.assert_array_equal(s2.c[t], c)
    assert s2.v.shape[0] == max(currents.shape[0], t_out) - 1
    assert not s3.inhibitory.any()


# ------------------------------------------------------ the exact int64 path at its edges

INT64_MAX = 2 ** 63 - 1


@pytest.mark.parametrize("currents, theta, v0, message", [
    (np.array([2 ** 62, 2 ** 62]), 5, 0, "the membrane may reach"),          # v0 + sum(I) passes 2**63
    (np.array([-(2 ** 62), -(2 ** 62)]), 5, 0, "the membrane may reach"),
    (np.array([1]), 2 ** 62, 2 ** 62, "the membrane may reach"),              # v - theta / v + theta branch
    (np.array([2 ** 63 + 5], np.uint64), 5, 0, "currents holds 9223372036854775813, outside the int64"),
    (np.array([1]), np.uint64(2 ** 63), 0, "theta holds 9223372036854775808"),
    (np.array([1]), 3, np.uint64(2 ** 64 - 1), "v0 holds 18446744073709551615"),
])
def test_exact_path_refuses_what_int64_cannot_hold(currents, theta, v0, message):
    with pytest.raises(ValueError, match=message):
        pasc_if(currents, theta, v0, 2)


def test_exact_path_at_the_edge_still_exact():
    # v0 + S just below 2**63: the count is the closed form, nothing wrapped
    top = INT64_MAX - 2 ** 40
    result = pasc_if(np.array([2 ** 20, 2 ** 20], np.int64), theta=2 ** 38, v0=top - 2 ** 39 - 2 ** 21, t_out=3)
    assert result.counts == 3
    assert neuron_count(np.int64(2 ** 62), 2 ** 61, np.int64(2 ** 62 - 1), 8) == 3
    assert neuron_count(np.array([2 ** 40], np.uint64), 2 ** 39, 0, 4) == 2


@pytest.mark.parametrize("args, message", [
    ((5, 0, 0, 2), "theta must be > 0"),
    ((5, -3, 0, 2), "theta must be > 0"),
    ((5, 1, 0, -1), "t_out \\(T2\\) must be an integer >= 1, got -1"),
    ((5, 1, 0, 0), "t_out \\(T2\\) must be an integer >= 1, got 0"),
    ((5, 1, 0, 2.5), "t_out \\(T2\\) must be an integer >= 1, got 2.5"),
    ((5, 1, 0, True), "t_out \\(T2\\) must be an integer >= 1, got True"),
    ((np.int64(2 ** 62), 1, np.int64(2 ** 62), 2), "v0 \\+ S may reach"),
    ((np.uint64(2 ** 63), 1, 0, 2), "total_current holds 9223372036854775808"),
    ((np.nan, 1.0, 0.0, 2), "total_current contains NaN or Inf"),
])
def test_neuron_count_refusals(args, message):
    with pytest.raises(ValueError, match=message):
        neuron_count(*args)


def test_neuron_count_rejects_non_numeric():
    with pytest.raises(TypeError, match="must be integer or float"):
        neuron_count(np.array(["a"]), 1, 0, 2)
