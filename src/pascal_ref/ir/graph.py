"""The compiled graph every engine reads: neuron layers and their synapses.

:class:`pascal_ref.ir.network.Network` compiles the layer list a user writes
into a tuple of :class:`NeuronLayer`, in topological order; a block layer
(a ResNet ``BasicBlock``) compiles itself into several of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pascal_ref.ir.layers import QCFS, WeightedOp

__all__ = ["INPUT", "Synapse", "NeuronLayer"]

INPUT = "input"
"""The source name of the network input."""


@dataclass(frozen=True, eq=False)
class Synapse:
    """One input of a neuron layer: ``op(pre_ops(trains of source))``."""

    source: str
    pre_ops: tuple
    op: WeightedOp
    input_shape: tuple[int, ...]      # shape of the source's output
    op_input_shape: tuple[int, ...]   # shape after the pre-ops


@dataclass(frozen=True, eq=False)
class NeuronLayer:
    """A layer of PASC-IF neurons (or the readout, ``activation is None``).

    ``bias`` is the sum of the synapses' biases; the neuron threshold is
    ``activation.theta`` and ``v0 = phi*theta + bias`` (bias added once).
    """

    name: str
    synapses: tuple[Synapse, ...]
    activation: QCFS | None
    output_shape: tuple[int, ...]
    bias: np.ndarray = field(repr=False)

    @property
    def is_readout(self) -> bool:
        return self.activation is None

    @property
    def levels(self) -> int | None:
        return None if self.activation is None else self.activation.levels

    @property
    def channels(self) -> int:
        return self.output_shape[0]
