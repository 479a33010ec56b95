"""Exact accumulation types, the count engine's plan, and the one cache of prepared plans.

:func:`gemm_precision` picks the cheapest type in which every partial sum of
a layer is exact (the bound is argued in :mod:`pascal_ref.fast`);
:func:`count_plan` lays an :class:`~pascal_ref.golden.quantize.IntegerNetwork`
out for :func:`pascal_ref.fast.count.count_engine`; :func:`cached_plan`
keeps a prepared plan beside the model it was made from.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.fast.layout import Gemm, LayerApply, synapse_gemm
from pascal_ref.golden.quantize import IntegerNetwork
from pascal_ref.numeric import FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT, INT64_LIMIT

__all__ = ["PRECISIONS", "gemm_precision", "CountPlan", "count_plan", "cached_plan", "synapse_bound"]

PRECISIONS = ("auto", "float32", "float64", "int64")
DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


def gemm_precision(bound: int, requested: str = "auto") -> str:
    """The cheapest exact accumulation type for partial sums of magnitude ``<= bound``.

    ``requested`` forces a type; forcing one that cannot hold ``bound``
    exactly is an error, never a silent rounding.
    """
    if requested not in PRECISIONS:
        raise PascalError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    limits = {"float32": FLOAT32_EXACT_LIMIT, "float64": FLOAT64_EXACT_LIMIT, "int64": INT64_LIMIT}
    if requested != "auto":
        if bound >= limits[requested]:
            raise OverflowError(f"partial sums up to {bound} are not exact in {requested} (limit {limits[requested]})")
        return requested
    for name in ("float32", "float64", "int64"):
        if bound < limits[name]:
            return name
    raise OverflowError(f"partial sums up to {bound} exceed int64")


def synapse_bound(weight: np.ndarray, input_min: int, input_max: int) -> np.ndarray:
    """Per output channel ``sum_k |w_ck| * max|x|``, as exact Python integers (object array)."""
    flat = weight.reshape(weight.shape[0], -1)
    largest = int(np.abs(flat).max(initial=0))
    if largest * flat.shape[1] < 2 ** 62:       # the int64 row sums cannot overflow
        sums = np.abs(flat.astype(np.int64)).sum(axis=1).astype(object)
    else:                                       # pragma: no cover - weights beyond the quantizer's 24 bits
        sums = np.abs(flat.astype(object)).sum(axis=1)
    return sums * max(abs(int(input_min)), abs(int(input_max)))


# ------------------------------------------------------ count plan


@dataclass(frozen=True, eq=False)
class _CountLayer:
    name: str
    sources: tuple[str, ...]
    pre_ops: tuple[tuple, ...]     # per synapse: the pre-ops run channels-last before its gemm
    gemms: tuple[Gemm | LayerApply, ...]
    precision: str
    bound: int
    theta: np.ndarray      # int64 (O,)
    v0: np.ndarray         # int64 (O,)
    bias: np.ndarray       # int64 (O,)
    levels: int | None
    output_shape: tuple
    float_activation: bool     # the float64 activation kernel is exact for this layer


@dataclass(frozen=True, eq=False)
class CountPlan:
    """An :class:`IntegerNetwork` prepared for :func:`~pascal_ref.fast.count.count_engine` (weights in GEMM layout)."""

    model: IntegerNetwork
    layers: tuple[_CountLayer, ...]

    def precisions(self) -> dict[str, str]:
        """Accumulation type of every layer (see :mod:`pascal_ref.fast`)."""
        return {layer.name: layer.precision for layer in self.layers}

    def bounds(self) -> dict[str, int]:
        """Worst-case magnitude of any partial sum of every layer."""
        return {layer.name: layer.bound for layer in self.layers}


def count_plan(model: IntegerNetwork, precision: str = "auto") -> CountPlan:
    """Prepare an integer network for :func:`~pascal_ref.fast.count.count_engine`.

    ``precision`` forces one accumulation type for every layer; a layer
    whose bound does not fit raises ``OverflowError``.
    """
    if not isinstance(model, IntegerNetwork):
        raise TypeError(f"count_plan: expected an IntegerNetwork, got {type(model).__name__}")
    layers = []
    for layer in model.layers:
        per_channel = np.zeros(len(layer.theta), dtype=object)
        for synapse in layer.synapses:
            per_channel = per_channel + synapse_bound(synapse.weight, synapse.input_min, synapse.input_max)
        bound = int(per_channel.max())
        try:
            chosen = gemm_precision(bound, precision)
        except OverflowError as error:
            raise OverflowError(f"layer '{layer.name}': {error}") from None
        dtype = DTYPES[chosen]
        pre_ops, gemms = zip(*(synapse_gemm(s, s.weight, dtype, integer=True) for s in layer.synapses))
        v0_max = int(np.abs(layer.v0).max())
        float_activation = (chosen != "int64" and bound + v0_max < 2 ** 52 and layer.levels is not None
                            and (layer.levels + 1) * int(layer.theta.max()) < 2 ** 52)
        layers.append(_CountLayer(layer.name, tuple(s.source for s in layer.synapses), tuple(pre_ops), tuple(gemms),
                                  chosen, bound, layer.theta.astype(np.int64), layer.v0.astype(np.int64),
                                  layer.bias.astype(np.int64), layer.levels, tuple(layer.output_shape),
                                  float_activation))
    return CountPlan(model, tuple(layers))


# ----------------------------------------------------------- cache


_plans: weakref.WeakKeyDictionary[object, dict] = weakref.WeakKeyDictionary()


def cached_plan(model, key, build):
    """``build()`` once per model object and ``key``; the plan lives as long as the model.

    Networks and integer models are immutable, so a plan made from one stays
    valid; the engines that prepare plans implicitly (timestep, float ANN)
    keep them here.
    """
    plans = _plans.get(model)
    if plans is None:
        plans = _plans[model] = {}
    if key not in plans:
        plans[key] = build()
    return plans[key]
