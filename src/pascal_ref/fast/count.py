"""The count engine: the closed form of the theorem, one GEMM per synapse (``docs/semantics.md`` §2).

``q = clip(floor((S + v0) / theta), 0, L)`` with ``S = sum_k W_int[c, k] * x_k``
over the source levels, equal to ``simulate(model, x, engine="count")`` bit
for bit (see :mod:`pascal_ref.fast` for why the float GEMMs are exact).
"""
from __future__ import annotations

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.fast.kernels import qcfs_levels_float, qcfs_levels_int
from pascal_ref.fast.layout import channels_first, channels_last, pre_ops_channels_last
from pascal_ref.fast.plan import CountPlan, count_plan
from pascal_ref.golden.quantize import IntegerNetwork
from pascal_ref.golden.snn import SnnResult
from pascal_ref.ir.graph import INPUT
from pascal_ref.numeric import FLOAT32_EXACT_LIMIT

__all__ = ["count_engine"]


def count_engine(model: IntegerNetwork | CountPlan, x=None, *, x_int=None, counts: bool = True,
                 precision: str = "auto") -> SnnResult:
    """The integer count engine: equal to ``simulate(model, x, engine="count")`` bit for bit.

    Parameters
    ----------
    model : IntegerNetwork or a :class:`~pascal_ref.fast.plan.CountPlan` made by
        :func:`~pascal_ref.fast.plan.count_plan` (reuse it across batches to avoid
        re-laying out the weights).
    x : float batch, encoded by :meth:`IntegerNetwork.encode_input`; or ``x_int``.
    counts : return every layer's counts (int64, ``(B, *shape)`` channels-first like the
        reference); ``False`` keeps only the logits (less memory).
    """
    plan = model if isinstance(model, CountPlan) else count_plan(model, precision)
    net = plan.model
    if (x is None) == (x_int is None):
        raise PascalError("count_engine: give exactly one of x (float batch) or x_int (integer levels)")
    x_int = net.encode_input(x) if x_int is None else net.check_input_levels(x_int)
    values = {INPUT: channels_last(x_int)}
    result_counts = {}
    remaining = _last_use(plan)
    for index, layer in enumerate(plan.layers):
        acc = None
        for source, pre_ops, gemm in zip(layer.sources, layer.pre_ops, layer.gemms):
            part = gemm(pre_ops_channels_last(values[source], pre_ops, integer=True))
            acc = part if acc is None else np.add(acc, part, out=acc)
        for source in layer.sources:
            if remaining[source] == index:
                del values[source]
        if layer.levels is None:
            logits = acc.astype(np.int64).reshape(acc.shape[0], -1) + layer.bias
            scale = net.readout.scale
            return SnnResult(logits=logits / scale, counts=result_counts, integer_logits=logits)
        store = np.float32 if layer.levels < FLOAT32_EXACT_LIMIT else np.int64
        q = np.empty(acc.shape, store)
        channels = acc.shape[-1]
        kernel = qcfs_levels_float if layer.float_activation else qcfs_levels_int
        kernel(acc.reshape(-1, channels), layer.v0, layer.theta, layer.levels, q.reshape(-1, channels))
        values[layer.name] = q
        if counts:
            result_counts[layer.name] = channels_first(q).astype(np.int64)
    raise AssertionError("network without readout")  # pragma: no cover


def _last_use(plan: CountPlan) -> dict[str, int]:
    last = {}
    for index, layer in enumerate(plan.layers):
        for source in layer.sources:
            last[source] = index
    return last
