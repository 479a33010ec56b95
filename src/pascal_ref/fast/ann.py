"""The float QCFS ANN on the fast kernels (channels-last, im2col + BLAS), for benchmarks.

Float results depend on the summation order, so this path is compared with
tolerance and never used for verification.
"""
from __future__ import annotations

import numpy as np

from pascal_ref.fast.kernels import qcfs_values
from pascal_ref.fast.layout import channels_last, pre_ops_channels_last, synapse_gemm
from pascal_ref.fast.plan import cached_plan
from pascal_ref.golden.ann import check_input, input_levels_of
from pascal_ref.ir.graph import INPUT
from pascal_ref.ir.network import Network

__all__ = ["float_ann_fast"]


def float_ann_fast(network: Network, x, dtype=np.float32) -> np.ndarray:
    """The float QCFS ANN on the same im2col + BLAS kernels as the count engine; returns the logits.

    Same math as :func:`pascal_ref.golden.ann.float_ann` (``q = clip(floor(z/lam*L + phi), 0, L)``,
    ``h = q * lam/L``) in ``dtype``.
    """
    x = check_input(network, x)
    if network.input_levels is not None:
        x = input_levels_of(network, x) / network.input_levels
    values = {INPUT: channels_last(x.astype(dtype))}
    plan = cached_plan(network, ("float_ann", np.dtype(dtype).str), lambda: _float_plan(network, dtype))
    for layer, synapses in zip(network.neuron_layers, plan):
        z = None
        for synapse, (pre_ops, gemm) in zip(layer.synapses, synapses):
            part = gemm(pre_ops_channels_last(values[synapse.source], pre_ops, integer=False))
            z = part if z is None else np.add(z, part, out=z)
        if layer.is_readout:
            z += layer.bias.astype(dtype)
            return z.reshape(z.shape[0], -1)
        act = layer.activation
        constants = np.array([act.lam, act.levels, act.phi, act.theta], dtype)
        qcfs_values(z.reshape(-1, z.shape[-1]), layer.bias.astype(dtype), constants)
        values[layer.name] = z
    raise AssertionError("network without readout")  # pragma: no cover


def _float_plan(network: Network, dtype) -> list:
    """Per neuron layer, per synapse: ``(pre_ops, gemm)`` with the float weights in ``dtype``."""
    return [[synapse_gemm(s, s.op.weight, dtype, integer=False) for s in layer.synapses]
            for layer in network.neuron_layers]
