"""pascal-ref: the reference implementation of PASCAL ANN-to-SNN conversion.

Golden model (NumPy): QCFS ANN inference, PASC-IF spiking neurons with
inhibitory spikes, float and bit-exact integer paths, verification.
The behaviour contract is ``docs/semantics.md`` (summarized in the README).
"""
from pascal_ref.analysis.verify import evaluate, verify
from pascal_ref.golden.ann import AnnResult, float_ann
from pascal_ref.golden.neuron import PascIfResult, StageTrace, neuron_count, pasc_if
from pascal_ref.golden.quantize import IntegerNetwork, QuantizationError, integer_ann, quantize
from pascal_ref.golden.snn import SnnResult, latency, layer_timesteps, simulate
from pascal_ref.io.fileformat import ModelFileError, load, save
from pascal_ref.ir.network import (
    QCFS,
    AvgPool2d,
    BasicBlock,
    BatchNorm,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    Network,
    NetworkError,
)

__version__ = "0.1.0"

__all__ = [
    "AnnResult", "float_ann", "ModelFileError", "load", "save", "AvgPool2d", "BasicBlock", "BatchNorm", "Conv2d",
    "Flatten", "GlobalAvgPool", "Linear", "MaxPool2d", "Network", "NetworkError", "QCFS", "PascIfResult",
    "StageTrace", "neuron_count", "pasc_if", "IntegerNetwork", "QuantizationError", "integer_ann", "quantize",
    "SnnResult", "latency", "layer_timesteps", "simulate", "evaluate", "verify",
]


def __getattr__(name):
    # AL and cost tools live in their own modules; import them on first use.
    if name in ("al_metric",):
        from pascal_ref.analysis import al
        return getattr(al, name)
    if name in ("t_eff",):
        from pascal_ref.analysis import cost
        return getattr(cost, name)
    raise AttributeError(f"module 'pascal_ref' has no attribute {name!r}")
