"""Amaranth gateware of the PASCAL spiking accelerator (see ``docs/hardware.md``).

Blocks, bottom up: :class:`PascIfNeuron` (one PASC-IF neuron, stage by
stage), :class:`LayerEngine` (event-driven accumulation and neuron lanes, or
the readout) and :class:`NetworkCore` (a whole integer model), configured by
:class:`LayerConfig` / :class:`CoreConfig` from the integer model
(``CoreConfig.from_integer_network``). Cycle-level Python models:
:class:`EngineModel`, :class:`CoreModel`, :func:`expected_cycles`.
"""
from .config import CoreConfig, HardwareError, LayerConfig
from .core import CoreModel, NetworkCore, expected_cycles
from .engine import EngineModel, LayerEngine, sample_events
from .neuron import PascIfNeuron, Stage, neuron_cycles, neuron_widths

__all__ = ["PascIfNeuron", "Stage", "neuron_cycles", "neuron_widths", "LayerConfig", "CoreConfig", "HardwareError",
           "LayerEngine", "EngineModel", "sample_events", "NetworkCore", "CoreModel", "expected_cycles"]
