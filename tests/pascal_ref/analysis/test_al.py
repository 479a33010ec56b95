"""AL metric, clustering and the L proposal: hand-computed cases and properties."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pascal_ref.analysis.al import (
    ALMetric,
    al_histogram,
    al_metric,
    cluster_1d,
    levels_for_clusters,
    propose_levels,
    resolve_level_set,
)


def moments(counts):
    """Exact population central moments m2, m3, m4 of a list of counts."""
    n = len(counts)
    mean = Fraction(sum(counts), n)
    dev = [Fraction(c) - mean for c in counts]
    return tuple(sum(d ** j for d in dev) / n for j in (2, 3, 4))


def test_hand_computed_skewed():
    # values on [0, 5], 5 bins of width 1: counts f = [5, 3, 1, 0, 1], N = 10
    values = [0, .5, .5, .5, .5, 1.5, 1.5, 1.5, 2.5, 5.0]
    counts, edges = al_histogram(values)
    assert counts.tolist() == [5, 3, 1, 0, 1]
    assert np.allclose(edges, [0, 1, 2, 3, 4, 5])
    # mean = 2; bins with f >= 2: {5, 3} -> S = 2; A = 1 - 1/4 = 3/4
    # deviations 3, 1, -1, -2, -1
    # m2 = (9+1+1+4+1)/5 = 16/5; m3 = (27+1-1-8-1)/5 = 18/5; m4 = (81+1+1+16+1)/5 = 20
    assert moments([5, 3, 1, 0, 1]) == (Fraction(16, 5), Fraction(18, 5), Fraction(20))
    # g^2 = m3^2/m2^3 = (324/25)/(4096/125) = 1620/4096
    # k = m4/m2^2 - 3 = 20/(256/25) - 3 = 500/256 - 3 = -1.046875
    # K = k + 3*25/(3*2) = -1.046875 + 12.5 = 11.453125
    # M = 3/4 * (1 + 1620/4096) * 11.453125
    g = 3.6 / 3.2 ** 1.5
    M = Fraction(3, 4) * (1 + Fraction(1620, 4096)) * Fraction(733, 64)
    result = al_metric(values)
    assert result.A == 0.75
    assert result.g == pytest.approx(g, rel=1e-12)
    assert result.g == pytest.approx(0.6288941186, rel=1e-9)
    assert result.K == pytest.approx(11.453125, rel=1e-12)
    assert result.M == pytest.approx(float(M), rel=1e-12)
    assert result.M == pytest.approx(11.98719, rel=1e-6)


def test_hand_computed_qcfs_levels():
    # QCFS levels q in 0..4 (L = 4) with counts 4, 2, 2, 1, 1: edges 0, .8, 1.6, 2.4, 3.2, 4
    # put level j in bin j, so f = [4, 2, 2, 1, 1], N = 10, mean 2
    values = np.repeat([0, 1, 2, 3, 4], [4, 2, 2, 1, 1])
    # S = #{4, 2, 2} = 3 -> A = 1 - 2/4 = 1/2
    # deviations 2, 0, 0, -1, -1: m2 = 6/5, m3 = (8-1-1)/5 = 6/5, m4 = (16+1+1)/5 = 18/5
    # g^2 = (36/25)/(216/125) = 5/6 ; k = (18/5)/(36/25) - 3 = 5/2 - 3 = -1/2 ; K = 12
    # M = 1/2 * (1 + 5/6) * 12 = 11
    a, g, K, M = al_metric(values)
    assert a == 0.5
    assert g == pytest.approx(np.sqrt(5 / 6), rel=1e-12)
    assert K == pytest.approx(12.0, rel=1e-12)
    assert M == pytest.approx(11.0, rel=1e-12)
    # h = (lam/L) q gives the same counts and metric
    assert al_metric(values * 0.37) == pytest.approx(al_metric(values))


@pytest.mark.parametrize("values", [[3.0, 3.0, 3.0], np.zeros((4, 7)), [-1.5]])
def test_constant_layer_is_a_single_bin(values):
    # np.histogram puts a constant in the middle bin: f = [0, 0, N, 0, 0]
    # A = 1 (S = 1); devs -N/5 (x4), 4N/5: m2 = 4N^2/25, m3 = 12N^3/125, m4 = 52N^4/625
    # g = (12/125)/(8/125) = 3/2; k = (52/625)/(16/625) - 3 = 1/4; K = 12.75
    # M = 1 * (9/4 + 1) * 12.75 = 41.4375
    counts, _ = al_histogram(values)
    assert counts.tolist() == [0, 0, np.size(values), 0, 0]
    assert al_metric(values) == pytest.approx(ALMetric(A=1.0, g=1.5, K=12.75, M=41.4375), rel=1e-12)


def test_flat_histogram_defined():
    # f = [1, 1, 1, 1, 1]: m2 = 0, g and k are 0/0 -> defined as 0
    # S = 5 -> A = 0; K = 0 + 12.5; M = 0
    assert al_metric([0, 1, 2, 3, 4]) == ALMetric(A=0.0, g=0.0, K=12.5, M=0.0)
    assert al_metric(np.repeat([0, 1, 2, 3, 4, 5], 3), bins=6) == ALMetric(0.0, 0.0, 3 * 36 / (4 * 3), 0.0)


def test_other_bin_count():
    # bins = 4 on [0, 4]: values 0,0,0,1.2,4 -> f = [3, 1, 0, 1], N=5, mean 5/4
    # S = #{3} = 1 -> A = 1; devs 7/4, -1/4, -5/4, -1/4
    m2, m3, m4 = moments([3, 1, 0, 1])
    # m2 = (49+1+25+1)/16/4 = 19/16; m3 = (343-1-125-1)/64/4 = 27/32; m4 = (2401+1+625+1)/256/4 = 757/256
    assert (m2, m3, m4) == (Fraction(19, 16), Fraction(27, 32), Fraction(757, 256))
    # K = m4/m2^2 - 3 + 3*16/(2*1) = m4/m2^2 + 21
    g2 = m3 ** 2 / m2 ** 3
    K = m4 / m2 ** 2 + 21
    result = al_metric([0, 0, 0, 1.2, 4], bins=4)
    assert result.A == 1.0
    assert result.K == pytest.approx(float(K), rel=1e-12)
    assert result.M == pytest.approx(float((g2 + 1) * K), rel=1e-12)


@pytest.mark.parametrize("values, bins, error, match", [
    ([], 5, ValueError, "empty"),
    (np.zeros((0, 3)), 5, ValueError, "empty"),
    ([1.0, np.nan], 5, ValueError, "NaN"),
    ([1.0, np.inf], 5, ValueError, "NaN or Inf"),
    ([1, 2, 3], 3, ValueError, "bins must be >= 4"),
    ([1, 2, 3], 1, ValueError, "bins must be >= 4"),
    ([1, 2, 3], 5.0, TypeError, "integer"),
    ([1, 2, 3], True, TypeError, "integer"),
    (["a", "b"], 5, TypeError, "numeric"),
])
def test_bad_input(values, bins, error, match):
    with pytest.raises(error, match=match):
        al_metric(values, bins)


def test_error_names_the_layer():
    with pytest.raises(ValueError, match="layer 'fc1': empty"):
        al_metric([], what="layer 'fc1'")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=3, max_size=3), st.integers(1, 50), st.integers(1, 50),
       st.integers(4, 9))
def test_properties(inner, first, last, bins):
    # level data 0..bins-1 with count > 0 at both ends: level j lands in bin j
    counts = [first] + (inner + [0] * bins)[: bins - 2] + [last]
    values = np.repeat(np.arange(bins), counts)
    assert al_histogram(values, bins)[0].tolist() == counts
    result = al_metric(values, bins)
    assert 0.0 <= result.A <= 1.0 and result.M >= 0 and np.isfinite(result.M)
    # -x reverses the counts; the moments are of the counts as a multiset, so nothing changes
    assert al_metric(-values, bins) == pytest.approx(result, rel=1e-9, abs=1e-12)
    # a positive scale and a shift of x keep the counts (levels q vs values h = theta*q)
    assert al_metric(0.25 * values + 3, bins) == pytest.approx(result, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------ clustering


def brute_force_sse(values, clusters):
    """Least within-cluster SSE over every split of the sorted values into contiguous runs."""
    import itertools
    x = np.sort(np.asarray(values, dtype=float))
    best = np.inf
    for cuts in itertools.combinations(range(1, len(x)), clusters - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(((p - p.mean()) ** 2).sum() for p in parts))
    return best


def sse_of(values, labels):
    values = np.asarray(values, dtype=float)
    return sum(((values[labels == c] - values[labels == c].mean()) ** 2).sum() for c in np.unique(labels))


def test_cluster_hand_case():
    # M = 1, 2, 10, 11, 30 in 3 clusters: {1, 2}, {10, 11}, {30} (SSE 0.5 + 0.5 + 0 = 1)
    labels = cluster_1d([10, 1, 30, 2, 11], 3)
    assert labels.tolist() == [1, 0, 2, 0, 1]
    assert cluster_1d([5.0, 5.0, 1.0], 1).tolist() == [0, 0, 0]
    assert cluster_1d([3.0, 1.0, 2.0], 3).tolist() == [2, 0, 1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=8, unique=True), st.integers(1, 4))
def test_cluster_is_optimal(values, clusters):
    clusters = min(clusters, len(values))
    labels = cluster_1d(values, clusters)
    assert sorted(set(labels.tolist())) == list(range(clusters))
    order = np.argsort(values)
    assert np.all(np.diff(labels[order]) >= 0)  # contiguous, increasing with the value
    assert sse_of(values, labels) == pytest.approx(brute_force_sse(values, clusters), abs=1e-9)


def test_cluster_errors():
    with pytest.raises(ValueError, match="4 clusters requested for 3 layers"):
        cluster_1d([1, 2, 3], 4)
    with pytest.raises(ValueError, match="only 2 distinct values"):
        cluster_1d([1, 1, 2], 3)
    with pytest.raises(ValueError, match="empty"):
        cluster_1d([], 1)
    with pytest.raises(ValueError, match=">= 1"):
        cluster_1d([1, 2], 0)


# ---------------------------------------------------------- L proposal


def test_level_map_direction():
    assert levels_for_clusters(4) == [8, 4, 2, 1]  # lowest M -> most levels
    assert levels_for_clusters(4, direction="high-m-more-levels") == [1, 2, 4, 8]
    # 3 clusters of 4 values: ranks round(0), round(1.5)=2, 3 -> 1, 4, 8 (reversed by default)
    assert levels_for_clusters(3) == [8, 4, 1]
    assert levels_for_clusters(2, "1,2,4,8,16") == [16, 1]
    assert levels_for_clusters(1) == [8]


def test_propose_levels():
    metrics = [12.0, 40.0, 11.0, 25.0, 39.5]
    # 3 clusters: {11, 12}, {25}, {39.5, 40}; default: low M -> L=8, high M -> L=1
    assert propose_levels(metrics, clusters=3) == [8, 1, 8, 4, 1]
    assert propose_levels(metrics, clusters=3, direction="high-m-more-levels") == [1, 8, 1, 4, 8]
    # default clusters = min(4, distinct M) = 4: {11}, {12}, {25}, {39.5, 40} (SSE 0.125,
    # less than 0.5 for {11, 12}, {25}, {39.5}, {40})
    assert propose_levels(metrics) == [4, 1, 8, 2, 1]
    assert propose_levels([7.0, 7.0], level_set="pow2") == [8, 8]


def test_proposal_feeds_network():
    from pascal_ref.ir.network import QCFS, Linear, Network
    rng = np.random.default_rng(0)
    net = Network((4,), [Linear("fc1", rng.normal(size=(3, 4))), QCFS("a1", 1.0, 2),
                         Linear("fc2", rng.normal(size=(3, 3))), QCFS("a2", 1.0, 2),
                         Linear("out", rng.normal(size=(2, 3)))])
    proposal = propose_levels([30.0, 5.0], clusters=2)
    assert proposal == [1, 8]
    assert net.with_levels(proposal).levels == [1, 8]


@pytest.mark.parametrize("kwargs, match", [
    (dict(level_set="fibonacci"), "unknown L set 'fibonacci'"),
    (dict(level_set=[1, 0, 4]), "integer >= 1"),
    (dict(level_set=[1, 2.5]), "integer >= 1"),
    (dict(level_set=[2, 2, 4]), "repeated"),
    (dict(level_set=[]), "empty"),
    (dict(direction="up"), "unknown direction"),
    (dict(clusters=6), "6 clusters requested for 5 layers"),
    (dict(clusters=5), "5 clusters but the L set"),
])
def test_proposal_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        propose_levels([1.0, 2.0, 3.0, 4.0, 5.0], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        propose_levels([])


def test_resolve_level_set():
    assert resolve_level_set("pow2") == (1, 2, 4, 8)
    assert resolve_level_set("8, 2,4") == (2, 4, 8)
    assert resolve_level_set((16, 1)) == (1, 16)


# ------------------------------------------------------- networks and CLI


def small_network():
    rng = np.random.default_rng(5)
    from pascal_ref.ir.network import QCFS, Linear, Network
    return Network((6,), [Linear("fc1", rng.normal(size=(8, 6))), QCFS("a1", 1.5, 4),
                          Linear("fc2", rng.normal(size=(5, 8))), QCFS("a2", 2.0, 8),
                          Linear("out", rng.normal(size=(3, 5)))], input_levels=4)


def test_layer_metrics_use_the_ann_levels():
    from pascal_ref.analysis.al import layer_metrics
    from pascal_ref.golden.ann import float_ann
    net = small_network()
    x = np.random.default_rng(6).uniform(size=(37, 6))
    levels = float_ann(net, x).levels
    rows = layer_metrics(net, x, batch_size=5)
    assert [row.name for row in rows] == ["a1", "a2"] and [row.levels for row in rows] == [4, 8]
    for row in rows:
        assert row.values == levels[row.name].size
        assert row.counts.tolist() == np.histogram(levels[row.name], 5)[0].tolist()
        assert row.metric == al_metric(levels[row.name])
    with pytest.raises(ValueError, match="bins must be >= 4"):
        layer_metrics(net, x, bins=2)
    with pytest.raises(ValueError, match="empty batch"):
        layer_metrics(net, np.zeros((0, 6)))


def test_cli_al(tmp_path, capsys):
    import json

    from pascal_ref.analysis.al import layer_metrics
    from pascal_ref.cli import main
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.data import load_data
    from pascal_ref.io.fileformat import load
    out = tmp_path / "al.json"
    assert main(["al", "digits-cnn", "--data", "digits", "--limit", "40", "--json", str(out),
                 "--plot", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert "act1" in text and "act2" in text and "proposed levels" in text
    payload = json.loads(out.read_text())
    net = load(bundled_path("digits-cnn"))
    expected = layer_metrics(net, load_data("digits", net.input_shape, split="train", limit=40).x)
    assert [layer["M"] for layer in payload["layers"]] == [row.metric.M for row in expected]
    assert payload["proposed_levels"] == propose_levels([row.metric.M for row in expected])
    assert net.with_levels(payload["proposed_levels"]).levels == payload["proposed_levels"]
    assert (tmp_path / "plots" / "digits_cnn_al_histograms.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, match", [
    (["--bins", "3"], "bins must be >= 4"),
    (["--clusters", "3"], "only 2 hidden layers"),
    (["--level-set", "fibonacci"], "unknown L set"),
    (["--level-set", "1,0"], "integer >= 1"),
    (["--clusters", "3", "--level-set", "2,4"], "only 2 hidden layers"),
])
def test_cli_al_errors(argv, match, capsys):
    from pascal_ref.cli import main
    assert main(["al", "digits-cnn", "--data", "digits", "--limit", "20"] + argv) == 2
    assert match in capsys.readouterr().err
