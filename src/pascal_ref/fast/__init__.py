"""Fast engines for the integer model, bit-exact with :mod:`pascal_ref.golden.snn`.

Two engines, both tested equal (every count, every logit, and for the
timestep engine the final ``v`` and ``c`` of every neuron) to the readable
reference on random networks, and a float ANN for benchmarks; one module
per concept:

:func:`~pascal_ref.fast.count.count_engine` (:mod:`~pascal_ref.fast.count`)
    The closed form of the theorem (``docs/semantics.md`` §2),
    one GEMM per synapse: ``q = clip(floor((S + v0) / theta), 0, L)`` with
    ``S = sum_k W_int[c, k] * x_k`` over the source levels.  Activations are
    kept channels-last (``(B, H, W, C)``) so a convolution is one im2col
    copy and one BLAS matrix product whose output is already the next
    layer's layout (:mod:`~pascal_ref.fast.layout`); the weights are laid out
    once in a :class:`~pascal_ref.fast.plan.CountPlan` (:mod:`~pascal_ref.fast.plan`).

:func:`~pascal_ref.fast.timestep.timestep_engine` (:mod:`~pascal_ref.fast.timestep`)
    The three stages of every PASC-IF neuron, step by step, in Numba.
    Synaptic work is event driven: a source neuron with count ``k`` sends
    a spike at steps ``0..k-1`` (burst) and each spike adds one weight
    column to the current of its targets; silent neurons cost nothing.
    Returns a :class:`~pascal_ref.fast.timestep.TimestepResult`, the
    reference's result plus the run's statistics.

:func:`~pascal_ref.fast.ann.float_ann_fast` (:mod:`~pascal_ref.fast.ann`)
    The float QCFS ANN on the same kernels, compared with tolerance only.

The Numba loops are in :mod:`~pascal_ref.fast.kernels`.  The engines read
every layer through its protocol (:mod:`pascal_ref.ir.layers`): pooling
windows, flatten and the op's ``kind``; a synapse with any other layer type
runs through the layers' own exact ``apply`` in the count engine and the
float ANN, and is refused by the event-driven engine.  Plans that an engine
prepares by itself live as long as their model
(:func:`~pascal_ref.fast.plan.cached_plan`).

Exactness of BLAS (why a float GEMM returns the exact integer result)
-------------------------------------------------------------------------
Every operand is an integer: weights ``w`` (``weight_bits`` wide), source
levels ``x`` in ``[input_min, input_max]`` (the quantizer's widths; average
pooling sums).  A float type with a ``p``-bit significand represents every
integer of magnitude ``<= 2**p`` exactly (``p = 24`` for float32, ``53`` for
float64).  Whatever order and blocking BLAS uses (and FMA or not), every
intermediate value is a sum of a subset of the products ``w_ck x_k``, so its
magnitude is at most

    bound_c = sum_k |w_ck| * max(|input_min|, |input_max|)

(summed over the synapses of a layer, as their partial results are added
too).  If ``max_c bound_c < 2**p`` every product and every partial sum is an
integer representable in the type, every rounding is the identity, and the
float result is the exact integer.  :func:`gemm_precision` picks float32
when the bound is below ``2**24``, float64 below ``2**53``, and exact int64
(numpy integer matmul, no BLAS) beyond.  Strassen-like or Winograd
algorithms would break this argument: numpy's ``matmul`` (OpenBLAS/MKL
``gemm``) uses neither, and this package never calls a convolution library.

Average pooling sums levels before the GEMM (the quantizer's ``input_max``
already counts the summed window), max pooling only selects, and the
partial results of several synapses are added in the same type: all are
sums of the same terms, inside the same bound.

The neuron division is exact as well: with ``|S + v0| < 2**52`` and
``(L + 1) * theta < 2**52`` (checked per layer), ``floor((S + v0) / theta)``
is estimated in float64 and settled by one exact comparison each way (see
``pascal_ref.fast.kernels.qcfs_levels_float``); otherwise an int64 kernel divides.
"""
from __future__ import annotations

from pascal_ref.fast.ann import float_ann_fast
from pascal_ref.fast.count import count_engine
from pascal_ref.fast.plan import PRECISIONS, CountPlan, count_plan, gemm_precision
from pascal_ref.fast.timestep import TimestepResult, TimestepStats, timestep_engine
from pascal_ref.numeric import FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT

__all__ = ["FLOAT32_EXACT_LIMIT", "FLOAT64_EXACT_LIMIT", "PRECISIONS", "gemm_precision", "CountPlan", "count_plan",
           "count_engine", "timestep_engine", "TimestepStats", "TimestepResult", "float_ann_fast"]
