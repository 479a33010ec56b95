"""The AL (adaptive layerwise) method: the metric M, clustering by M, L per layer.

``docs/semantics.md`` §9.  For one layer's post-QCFS outputs
``x`` over a calibration set and ``n`` histogram bins (5 by default), with
``f = np.histogram(x, n)`` the bin counts and ``N = sum(f)``:

* agreement ``A = 1 - (S - 1) / (n - 1)``, ``S`` the number of bins with
  ``f >= N / n``;
* skewness ``g = m3 / m2**1.5`` and excess kurtosis ``k = m4 / m2**2 - 3``
  of the ``n`` counts ``f`` (population central moments ``m_j`` of the
  counts, not of ``x``);
* ``K = k + 3 n**2 / ((n - 2)(n - 3))`` (``n**2`` as the official
  ``get_stats.py`` writes it, not ``(n - 1)**2``);
* ``M = A (g**2 + 1) K``.

``K`` is undefined for ``n = 2, 3`` (division by zero) and ``A`` for
``n = 1``; ``bins < 4`` is an error, and so is ``bins > MAX_BINS`` (4096:
the levels of a layer take at most ``L + 1`` values, and a bin count from a
command line must not allocate without bound).

Degenerate cases, defined rather than NaN:

* constant layer (e.g. a dead layer, all zeros): ``np.histogram`` puts every
  value in the middle bin; a single non-empty bin is an ordinary histogram
  (``S = 1``, ``A = 1``, ``m2 > 0``) and gets the largest M of all
  histograms with that ``n`` (41.4375 for ``n = 5``).
* flat histogram (every bin holds ``N / n`` values): the counts have no
  spread (``m2 = 0``), so ``g`` and ``k`` are 0/0.  We define ``g = 0``
  (no asymmetry) and ``k = 0`` (no excess); then ``S = n``, ``A = 0`` and
  ``M = 0``: the flattest histogram has the lowest metric, as its
  neighbours (``A`` small) do.

The AL flow groups the layers by M into a chosen number of clusters and
gives each cluster one L.  The clustering is the exact optimum of 1-D
k-means (least within-cluster sum of squares of M) by dynamic programming
over the sorted values, O(k n^2) for n layers: deterministic, no random
start.  Equal M values always share a cluster.

Direction (not stated by the reference code): by default a *high* M gets
*few* levels (``direction="high-m-fewer-levels"``).  A high M means the
outputs pile up in few bins (``A`` near 1, heavy, skewed counts), so a
coarse quantization loses little; a low M means the outputs spread over the
range and need more levels.  ``direction="high-m-more-levels"`` reverses it.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from pascal_ref.errors import PascalError, ResourceLimitError, printable

__all__ = ["MAX_BINS", "check_bins", "ALMetric", "LayerAL", "al_metric", "layer_metrics", "al_histogram", "cluster_1d", "levels_for_clusters", "propose_levels",
           "resolve_level_set", "LEVEL_SETS", "DIRECTIONS", "DEFAULT_LEVEL_SET"]

DEFAULT_LEVEL_SET = (1, 2, 4, 8)
MAX_BINS = 4096
"""Most histogram bins (a layer's levels take at most ``L + 1`` distinct values)."""
LEVEL_SETS = {
    "pow2": (1, 2, 4, 8),
    "pow2-16": (1, 2, 4, 8, 16),
    "pow2-from2": (2, 4, 8, 16),
    "1-8": (1, 2, 3, 4, 5, 6, 7, 8),
}
DIRECTIONS = ("high-m-fewer-levels", "high-m-more-levels")


class ALMetric(NamedTuple):
    """``A``, skewness ``g``, corrected kurtosis ``K`` and ``M = A (g^2+1) K``."""

    A: float
    g: float
    K: float
    M: float


def check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise TypeError(f"bins must be an integer >= 4, got {bins!r}")
    if bins < 4:
        raise PascalError(f"bins must be >= 4: K = k + 3n^2/((n-2)(n-3)) is undefined for n = 2, 3 "
                         f"and A = 1 - (S-1)/(n-1) for n = 1; got bins={bins}")
    if bins > MAX_BINS:
        raise ResourceLimitError(f"bins={bins} exceeds the limit of {MAX_BINS} (the histogram alone would take "
                                 f"{16 * int(bins):,} bytes, and a layer's levels take at most L + 1 values)")
    return int(bins)


def al_histogram(values, bins: int = 5, what: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(values, bins)`` after validation: counts and edges.

    ``values`` may have any shape (it is flattened); empty, NaN/Inf or
    non-numeric input raises ``ValueError``/``TypeError`` naming ``what``.
    """
    bins = check_bins(bins)
    x = np.asarray(values)
    if x.dtype.kind not in "iufb":
        raise TypeError(f"{what}: expected a numeric array, got dtype {x.dtype}")
    x = x.astype(np.float64).ravel()
    if x.size == 0:
        raise PascalError(f"{what}: empty array, the AL metric needs at least one activation")
    if not np.all(np.isfinite(x)):
        raise PascalError(f"{what}: contains NaN or Inf")
    counts, edges = np.histogram(x, bins)
    return counts, edges


def al_metric(values, bins: int = 5, what: str = "values") -> ALMetric:
    """The AL metric of one layer's post-QCFS outputs (module docstring).

    Parameters
    ----------
    values : array_like
        The layer's outputs over a calibration set (levels ``q`` or values
        ``h``: a positive scale does not change the histogram counts).
    bins : int, >= 4
    what : name used in error messages (a layer name, say).

    Returns
    -------
    ALMetric(A, g, K, M)
    """
    counts, _ = al_histogram(values, bins, what)
    return _metric_from_counts(counts)


def _metric_from_counts(counts: np.ndarray) -> ALMetric:
    n = counts.size
    f = counts.astype(np.float64)
    mean = f.sum() / n
    spread = int(np.count_nonzero(f >= mean))
    a = 1.0 - (spread - 1) / (n - 1)
    dev = f - mean
    m2 = float(np.mean(dev ** 2))
    if m2 == 0.0:  # flat histogram: g and k are 0/0, defined as 0 (module docstring)
        g, k = 0.0, 0.0
    else:
        g = float(np.mean(dev ** 3)) / m2 ** 1.5
        k = float(np.mean(dev ** 4)) / m2 ** 2 - 3.0
    big_k = k + 3.0 * n ** 2 / ((n - 2) * (n - 3))
    return ALMetric(A=float(a), g=float(g), K=float(big_k), M=float(a * (g * g + 1.0) * big_k))


# ------------------------------------------------------------ clustering


def cluster_1d(values: Sequence[float], clusters: int) -> np.ndarray:
    """Exact 1-D k-means: labels ``0..clusters-1`` in increasing order of value.

    Minimizes the within-cluster sum of squared deviations.  Dynamic
    programming over the distinct sorted values (weighted by multiplicity):
    ``cost[j][i]`` = best cost of the first ``i`` distinct values in ``j``
    clusters; each cluster is a contiguous run of the sorted values.  Ties
    between equal costs go to the earliest split, so the result is
    deterministic.  Equal values always share a label.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise PascalError("cannot cluster an empty list of values")
    if not np.all(np.isfinite(x)):
        raise PascalError(f"values to cluster contain NaN or Inf: {x.tolist()}")
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise PascalError(f"clusters must be an integer >= 1, got {clusters!r}")
    if clusters > x.size:
        raise PascalError(f"{clusters} clusters requested for {x.size} layers; at most {x.size}")
    distinct, inverse, weight = np.unique(x, return_inverse=True, return_counts=True)
    d = distinct.size
    if clusters > d:
        raise PascalError(f"{clusters} clusters requested but the {x.size} values have only {d} distinct values "
                         f"({', '.join(f'{v:.6g}' for v in distinct)}); equal values share a cluster")
    w = weight.astype(np.float64)
    # prefix sums for the weighted sum of squares of any run distinct[a:b]
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cx = np.concatenate([[0.0], np.cumsum(w * distinct)])
    cxx = np.concatenate([[0.0], np.cumsum(w * distinct * distinct)])

    def sse(a: int, b: int) -> float:
        total_w = cw[b] - cw[a]
        total_x = cx[b] - cx[a]
        return max(0.0, (cxx[b] - cxx[a]) - total_x * total_x / total_w)

    inf = math.inf
    cost = [[inf] * (d + 1) for _ in range(clusters + 1)]
    split = [[0] * (d + 1) for _ in range(clusters + 1)]
    cost[0][0] = 0.0
    for j in range(1, clusters + 1):
        for i in range(j, d + 1):
            best, arg = inf, j - 1
            for s in range(j - 1, i):  # last cluster = distinct[s:i]
                c = cost[j - 1][s] + sse(s, i)
                if c < best:
                    best, arg = c, s
            cost[j][i], split[j][i] = best, arg
    labels_distinct = np.empty(d, dtype=np.int64)
    end = d
    for j in range(clusters, 0, -1):
        start = split[j][end]
        labels_distinct[start:end] = j - 1
        end = start
    return labels_distinct[inverse]


def resolve_level_set(level_set) -> tuple[int, ...]:
    """A named set (``LEVEL_SETS``) or a sequence of distinct integers >= 1, sorted."""
    if isinstance(level_set, str):
        key = level_set.strip()
        if key in LEVEL_SETS:
            return LEVEL_SETS[key]
        try:
            level_set = [int(part) for part in key.split(",") if part.strip()]
        except ValueError:
            raise PascalError(f"unknown L set {key!r}: give one of {', '.join(LEVEL_SETS)} "
                             f"or a comma-separated list of integers >= 1 such as '1,2,4,8'") from None
    try:
        items = list(level_set)
    except TypeError:
        raise PascalError(f"unknown L set {level_set!r}: expected a name or a sequence of integers >= 1") from None
    if not items:
        raise PascalError("the L set is empty")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 1:
            raise PascalError(f"L set {items!r}: every L must be an integer >= 1, got {item!r}")
    if len(set(int(i) for i in items)) != len(items):
        raise PascalError(f"L set {items!r} has repeated values")
    return tuple(sorted(int(i) for i in items))


def levels_for_clusters(clusters: int, level_set=DEFAULT_LEVEL_SET,
                        direction: str = "high-m-fewer-levels") -> list[int]:
    """The L of each cluster, cluster 0 having the lowest M.

    With as many clusters as L values the map is one to one.  With fewer
    clusters, cluster ``i`` of ``k`` takes the L value of rank
    ``round(i (s - 1) / (k - 1))`` of the ``s`` values, so the extremes of the
    set are always used; a single cluster gets the largest L (the safe
    choice for accuracy).  More clusters than L values is an error.
    """
    values = resolve_level_set(level_set)
    if direction not in DIRECTIONS:
        raise PascalError(f"unknown direction {direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise PascalError(f"clusters must be an integer >= 1, got {clusters!r}")
    s = len(values)
    if clusters > s:
        raise PascalError(f"{clusters} clusters but the L set {list(values)} has only {s} values")
    if clusters == 1:
        return [values[-1]]
    ascending = [values[round(i * (s - 1) / (clusters - 1))] for i in range(clusters)]
    # ascending[i]: L for the cluster with the i-th *lowest* L need.
    if direction == "high-m-fewer-levels":
        return ascending[::-1]  # lowest M -> largest L
    return ascending


def propose_levels(metrics: Sequence[float], clusters: int | None = None, level_set=DEFAULT_LEVEL_SET,
                   direction: str = "high-m-fewer-levels") -> list[int]:
    """Per-layer L from per-layer M: cluster by M, then map clusters to L.

    ``clusters`` defaults to ``min(len(L set), number of distinct M)``.  The
    result has one entry per layer, in the order of ``metrics``: pass it
    to ``Network.with_levels`` or ``templates.build(..., levels=...)``.
    """
    m = np.asarray(metrics, dtype=np.float64).ravel()
    if m.size == 0:
        raise PascalError("no layers: the metric list is empty")
    values = resolve_level_set(level_set)
    if clusters is None:
        clusters = min(len(values), np.unique(m).size)
    elif isinstance(clusters, (int, np.integer)) and not isinstance(clusters, bool) and clusters > m.size:
        raise PascalError(f"{clusters} clusters requested for {m.size} layers; at most {m.size}")
    per_cluster = levels_for_clusters(clusters, values, direction)
    labels = cluster_1d(m, clusters)
    return [int(per_cluster[label]) for label in labels]


# ------------------------------------------------------- whole networks


class LayerAL(NamedTuple):
    """The AL metric of one hidden layer, with its histogram for plots."""

    name: str
    levels: int
    values: int            # number of activations in the histogram
    metric: ALMetric
    counts: np.ndarray
    edges: np.ndarray


def layer_metrics(network, x, bins: int = 5, batch_size: int = 256) -> list[LayerAL]:
    """AL metric of every hidden layer's QCFS levels ``q`` over the data ``x``.

    The outputs are those of the float QCFS ANN
    (:func:`pascal_ref.golden.ann.float_ann`), which the SNN's spike counts equal;
    the histogram of ``q`` and of ``h = theta q`` are the same.
    """
    from pascal_ref.analysis.verify import check_run_size
    from pascal_ref.golden.ann import check_input, float_ann
    from pascal_ref.io.data import check_data

    bins = check_bins(bins)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PascalError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, _ = check_data(network, x, None, "calibration data")
    x = check_input(network, x, "calibration data")
    check_run_size(network, min(int(batch_size), len(x)), "count")
    names = [layer.name for layer in network.hidden_layers]
    if not names:
        raise PascalError(f"network '{printable(network.name)}' has no QCFS layer: nothing to measure")
    parts = {name: [] for name in names}
    for start in range(0, len(x), batch_size):
        levels = float_ann(network, x[start:start + batch_size]).levels
        for name in names:
            parts[name].append(levels[name].ravel())
    rows = []
    for layer in network.hidden_layers:
        q = np.concatenate(parts[layer.name])
        counts, edges = al_histogram(q, bins, what=f"layer '{layer.name}'")
        rows.append(LayerAL(layer.name, layer.levels, int(q.size), _metric_from_counts(counts), counts, edges))
    return rows
