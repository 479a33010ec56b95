"""What a layer engine must compute, straight from the contract (``docs/semantics.md`` §2, §6).

The reference the hardware tests compare against, independent of the engine's
one-step accumulation: input bursts ``s_j[t] = [c_j > t]`` for ``t < T1``, per-step
currents ``I[t] = W @ s[t]``, then :func:`pascal_ref.golden.neuron.pasc_if` over the
three stages (hidden layers) or ``sum_t I[t] + v0`` (the readout, whose class is
the first maximum).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pascal_hdl.config import LayerConfig
from pascal_ref.golden.neuron import pasc_if

__all__ = ["LayerContract", "layer_contract"]


class LayerContract(NamedTuple):
    """Per sample (first axis): hidden ``counts`` and output ``trains`` ``(batch, out, T2)``,
    or readout ``logits`` and ``cls``; the fields a layer does not have are None."""

    counts: np.ndarray | None
    trains: np.ndarray | None
    logits: np.ndarray | None
    cls: np.ndarray | None


def layer_contract(config: LayerConfig, counts) -> LayerContract:
    """The contract's outputs of one layer for input counts ``(batch, in_features)`` (or one sample)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim == 1:
        counts = counts[None]
    steps = np.arange(config.t_in)[:, None, None]
    spikes = (counts[None, :, :] > steps).astype(np.int64)          # (T1, batch, in): burst coding
    currents = spikes @ config.weight.T                              # (T1, batch, out): I[t] = W @ s[t]
    if config.is_readout:
        logits = currents.sum(axis=0) + config.v0
        return LayerContract(None, None, logits, np.argmax(logits, axis=1))
    ref = pasc_if(currents, config.theta, config.v0, config.t_out)
    return LayerContract(ref.counts, np.moveaxis(ref.spikes, 0, -1).astype(np.int64), None, None)
