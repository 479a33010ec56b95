"""Amaranth gateware of the PASCAL spiking accelerator (see ``docs/hardware.md``).

Blocks, bottom up: :class:`~pascal_hdl.neuron.PascIfNeuron` (one PASC-IF
neuron, stage by stage), the layer engine (``pascal_hdl.engine``) and the
network core (``pascal_hdl.core``), configured from the integer model by
``pascal_hdl.config``.
"""
from .neuron import PascIfNeuron, Stage, neuron_cycles, neuron_widths

__all__ = ["PascIfNeuron", "Stage", "neuron_cycles", "neuron_widths"]
