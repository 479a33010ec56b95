"""Hardware parameters derived from the integer model: one validated structure.

:class:`LayerConfig` describes one layer engine (integer weights, thresholds,
``v0`` or readout bias, train lengths, lanes) and derives every width from
the numbers themselves (worst case, see :attr:`LayerConfig.current_range`).
:class:`CoreConfig` chains them into a network core and is built from a
``pascal_ref.golden.quantize.IntegerNetwork`` by :meth:`CoreConfig.from_integer_network`
(Linear chains), which rejects what it does not support with a :class:`HardwareError`
naming the layer. A core's stages may also be the conv, pooling and residual
configurations of :mod:`pascal_hdl.model` (this module may not import them: it checks
their interface, :func:`is_stage`); :func:`pascal_hdl.model.chain.core_config` builds the
core of any network the hardware takes. The engines, the core, the Verilog generator and the
co-simulation all read these objects; no width is written twice.

Limits (checked at construction): weights at most :data:`MAX_WEIGHT_BITS`
bits, accumulators and logits at most :data:`MAX_ACC_BITS`, train lengths at
most :data:`MAX_LEVELS`, at most :data:`MAX_FEATURES` inputs or outputs per
layer and :data:`MAX_LANES` lanes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from pascal_hdl.widths import NeuronWidths, neuron_widths, signed_width
from pascal_ref.errors import PascalError

__all__ = ["HardwareError", "LayerConfig", "CoreConfig", "MAX_WEIGHT_BITS", "MAX_ACC_BITS", "MAX_LEVELS",
           "MAX_FEATURES", "MAX_LANES", "MAX_IN_FLIGHT", "DEFAULT_HIDDEN_LANES", "DEFAULT_READOUT_LANES", "check_banks",
           "is_stage", "stage_banks", "stage_is_readout", "stage_worst_case_cycles"]

MAX_WEIGHT_BITS = 16
MAX_ACC_BITS = 40
MAX_LEVELS = 256
MAX_FEATURES = 1 << 16
MAX_LANES = 64
MAX_IN_FLIGHT = 16      # samples held by a core at once (the depth of its per-sample FIFO)
DEFAULT_HIDDEN_LANES = 8
DEFAULT_READOUT_LANES = 16


class HardwareError(PascalError):
    """A model or parameter the hardware cannot implement; the message names the layer."""


def _int_array(layer: str, name: str, value, ndim: int) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise HardwareError(f"layer '{layer}': {name} must be an integer array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise HardwareError(f"layer '{layer}': {name} must have {ndim} dimension(s), got shape {a.shape}")
    a = a.astype(np.int64)
    a.setflags(write=False)
    return a


def _positive_int(layer: str, name: str, value, maximum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 1 <= value <= maximum:
        raise HardwareError(f"layer '{layer}': {name} must be an integer in [1, {maximum}], got {value!r}")
    return int(value)


def _identifier(name: str) -> str:
    """A model name as a signal-name identifier (non-alphanumerics become ``_``)."""
    text = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return text if text.isidentifier() else "l_" + text


def check_counts(what: str, counts, in_features: int, t_in: int, one_sample: bool = False,
                 t_min: int = 0) -> np.ndarray:
    """Input counts of a stage as int64 ``(batch, in_features)``, each in ``[t_min, t_in]`` (``t_min`` 0, or
    negative for the signed pixels of an analog input), or a HardwareError naming ``what``; ``one_sample``
    also takes a single sample ``(in_features,)``."""
    counts = np.asarray(counts)
    if one_sample and counts.ndim == 1:
        counts = counts[None]
    if counts.dtype.kind not in "iu" or counts.ndim != 2 or counts.shape[1] != in_features:
        raise HardwareError(f"{what}: input counts must be an integer array (batch, {in_features}), "
                            f"got {counts.dtype} {counts.shape}")
    if counts.size and (counts.min() < t_min or counts.max() > t_in):
        raise HardwareError(f"{what}: input counts must lie in [{t_min}, {t_in}]")
    return counts.astype(np.int64)


MULTIPLIERS = ("logic", "dsp")
"""How a multiplying (``mac``) engine forms ``count * weight``: ``"logic"`` (shifts, masks and adders: any
part, no DSP block) or ``"dsp"`` (an Amaranth ``*``, which yosys maps onto the part's DSP blocks: iCE40
UP5K SB_MAC16, ECP5 MULT18X18D; one product per lane)."""


def check_mac(what: str, mac) -> bool:
    """``mac`` of a stage (a bool: ``LayerConfig.mac``, ``ConvConfig.mac``); ``what`` names the stage in the error."""
    if not isinstance(mac, (bool, np.bool_)):
        raise HardwareError(f"{what}: mac must be True or False, got {mac!r}")
    return bool(mac)


def check_multiplier(what: str, multiplier) -> str:
    """``multiplier`` of a stage (one of :data:`MULTIPLIERS`); ``what`` names the stage in the error."""
    if not isinstance(multiplier, str) or multiplier not in MULTIPLIERS:
        raise HardwareError(f"{what}: multiplier must be one of {', '.join(MULTIPLIERS)}, got {multiplier!r}")
    return multiplier


def check_banks(what: str, banks) -> int:
    """``banks`` of a stage (1: one accumulator or feature-map memory; 2: double-buffered, the stage
    accumulates sample n+1 in one bank while its neurons drain sample n from the other), or a
    HardwareError naming ``what`` in one line."""
    if isinstance(banks, (bool, np.bool_)) or not isinstance(banks, (int, np.integer)) or int(banks) not in (1, 2):
        raise HardwareError(f"{what}: banks must be 1 or 2, got {banks!r}")
    return int(banks)


def pack_words(values: np.ndarray, width: int) -> list[int]:
    """Pack rows of signed or unsigned integers into unsigned words, element 0 in the low bits."""
    mask = (1 << width) - 1
    words = []
    for row in np.asarray(values, dtype=object):
        word = 0
        for k, value in enumerate(row):
            word |= (int(value) & mask) << (k * width)
        words.append(word)
    return words


@dataclass(frozen=True, eq=False)
class LayerConfig:
    """One layer engine: ``out_features`` neurons fed by ``in_features`` spike trains.

    Parameters
    ----------
    name : str
        Layer name (used in errors and signal names).
    weight : int array ``(out_features, in_features)``
        Integer synaptic weights.
    t_in : int
        ``T1``: length of the input trains; an input count lies in ``[t_min, t_in]``.
    t_out : int or None
        ``T2`` (the layer's L); None for the readout layer.
    theta : int array ``(out_features,)`` or None
        Thresholds (>= 1) of a hidden layer; None for the readout.
    v0 : int array ``(out_features,)``
        Initial membrane (``round(phi*theta) + b``) of a hidden layer, or the
        integer bias of the readout.
    lanes : int
        Neurons updated in parallel; the layer is processed in
        :attr:`groups` groups of ``lanes`` neurons (the last one zero-padded).
    banks : int
        Accumulator banks, 1 or 2. With 2 (double-buffered) the engine accumulates the next
        sample into one bank while its neurons (or the readout) drain the previous sample from
        the other, so its period per sample is about ``max(accumulate, drain)`` instead of their
        sum; it costs a second accumulator memory (:attr:`accumulator_bits`) and needs a core with
        ``in_flight >= 2`` (:class:`CoreConfig` refuses it otherwise).
    t_min : int
        The smallest input count: 0 (spike counts), or ``-t_in`` and above for the signed integer
        pixels of an analog input (one stage-1 step carrying ``W x``), which only a multiplying
        engine takes (:attr:`mac`).
    mac : bool
        False: a burst of ``count`` spikes is issued ``count`` times, one weight added per group and
        issue cycle (adders only). True: each event is issued once (``groups`` cycles) and adds
        ``count * weight`` per lane, so its cycles no longer grow with its count; the sums, outputs
        and widths are the same.
    multiplier : ``"logic"`` or ``"dsp"``
        How a :attr:`mac` engine forms the product (:data:`MULTIPLIERS`): shift-and-add (default)
        or ``*`` on the part's DSP blocks, one per lane. Without :attr:`mac` it is not read.
    """

    name: str
    weight: np.ndarray
    t_in: int
    t_out: int | None
    theta: np.ndarray | None
    v0: np.ndarray
    lanes: int = DEFAULT_HIDDEN_LANES
    banks: int = 1
    t_min: int = 0
    mac: bool = False
    multiplier: str = "logic"
    neuron: NeuronWidths | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name.isidentifier():
            raise HardwareError(f"layer name must be an identifier (it names signals), got {name!r}")
        weight = _int_array(name, "weight", self.weight, 2)
        out_features, in_features = weight.shape
        if not (1 <= out_features <= MAX_FEATURES and 1 <= in_features <= MAX_FEATURES):
            raise HardwareError(f"layer '{name}': weight shape {weight.shape}: both sizes must be in [1, {MAX_FEATURES}]")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "t_in", _positive_int(name, "t_in (input train length)", self.t_in, MAX_LEVELS))
        if isinstance(self.t_min, bool) or not isinstance(self.t_min, (int, np.integer)) or not -self.t_in <= self.t_min <= 0:
            raise HardwareError(f"layer '{name}': t_min (smallest input count) must be an integer in [-{self.t_in}, 0], "
                                f"got {self.t_min!r}")
        object.__setattr__(self, "t_min", int(self.t_min))
        object.__setattr__(self, "mac", check_mac(f"layer '{name}'", self.mac))
        check_multiplier(f"layer '{name}'", self.multiplier)
        lanes = _positive_int(name, "lanes", self.lanes, MAX_LANES)
        if lanes > out_features:
            raise HardwareError(f"layer '{name}': lanes={lanes} exceeds the {out_features} output neurons")
        object.__setattr__(self, "lanes", lanes)
        object.__setattr__(self, "banks", check_banks(f"layer '{name}'", self.banks))
        v0 = _int_array(name, "v0" if self.t_out is not None else "bias", self.v0, 1)
        if v0.shape != (out_features,):
            raise HardwareError(f"layer '{name}': {'v0' if self.t_out is not None else 'bias'} shape {v0.shape} "
                                f"does not match {out_features} output neurons")
        object.__setattr__(self, "v0", v0)
        bits = signed_width(int(weight.min()), int(weight.max()))
        if bits > MAX_WEIGHT_BITS:
            raise HardwareError(f"layer '{name}': weights need {bits} bits, more than the limit {MAX_WEIGHT_BITS}")
        if self.t_out is None:
            if self.theta is not None:
                raise HardwareError(f"layer '{name}': a readout layer (t_out None) has no theta")
            logit_bits = signed_width(*self.logit_range)
            if logit_bits > MAX_ACC_BITS:
                raise HardwareError(f"layer '{name}': logits need {logit_bits} bits, more than the limit {MAX_ACC_BITS}")
        else:
            object.__setattr__(self, "t_out", _positive_int(name, "t_out (L)", self.t_out, MAX_LEVELS))
            if self.theta is None:
                raise HardwareError(f"layer '{name}': a hidden layer needs theta")
            theta = _int_array(name, "theta", self.theta, 1)
            if theta.shape != (out_features,):
                raise HardwareError(f"layer '{name}': theta shape {theta.shape} does not match {out_features} output neurons")
            if theta.min() < 1:
                raise HardwareError(f"layer '{name}': theta must be >= 1, got minimum {int(theta.min())}")
            object.__setattr__(self, "theta", theta)
            # The engine feeds each neuron its whole input S as one stage-1 step (T1 = 1).
            lo, hi = self.current_range
            widths = neuron_widths(-(1 << (self.acc_width - 1)), (1 << (self.acc_width - 1)) - 1,
                                   -(1 << (self.v0_width - 1)), (1 << (self.v0_width - 1)) - 1,
                                   (1 << self.theta_width) - 1, 1, self.t_out)
            if widths.v_width > MAX_ACC_BITS:
                raise HardwareError(f"layer '{name}': membrane needs {widths.v_width} bits, more than the limit {MAX_ACC_BITS}")
            object.__setattr__(self, "neuron", widths)
        if self.acc_width > MAX_ACC_BITS:
            raise HardwareError(f"layer '{name}': accumulator needs {self.acc_width} bits, more than the limit {MAX_ACC_BITS}")

    # -- shape

    @property
    def is_readout(self) -> bool:
        return self.t_out is None

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def groups(self) -> int:
        """``ceil(out_features / lanes)``: accumulate cycles per input spike."""
        return -(-self.out_features // self.lanes)

    @property
    def clear_cycles(self) -> int:
        """Cycles of the engine's CLEAR phase after a reset (and at power-up): one accumulator word
        (a group) zeroed per cycle, ``groups`` cycles with ``i.ready`` low."""
        return self.groups

    def issues(self, count):
        """Times an event of ``count`` goes through the groups: ``count`` (:attr:`mac`: once, 0 for count 0);
        ``count`` may be an array."""
        return (np.asarray(count) != 0).astype(np.int64) if self.mac else np.asarray(count)

    # -- widths (all worst case over every input within [t_min, t_in])

    @property
    def weight_width(self) -> int:
        return max(2, signed_width(int(self.weight.min()), int(self.weight.max())))

    @functools.cached_property
    def current_range(self) -> tuple[int, int]:
        """Bounds of every partial sum ``sum_j W[n, j] * k_j`` with ``t_min <= k_j <= t_in``, over all n (exact
        Python integers; computed once per layer: the weights are read-only and the config frozen)."""
        w = self.weight.astype(object)
        positive, negative = np.maximum(w, 0).sum(axis=1), np.minimum(w, 0).sum(axis=1)
        low = (negative * self.t_in + positive * self.t_min).min()
        high = (positive * self.t_in + negative * self.t_min).max()
        return int(min(low, 0)), int(max(high, 0))

    @property
    def acc_width(self) -> int:
        """Signed width of an accumulator (the total current ``S`` of a neuron)."""
        return max(2, signed_width(*self.current_range))

    @property
    def v0_width(self) -> int:
        return max(2, signed_width(min(0, int(self.v0.min())), max(0, int(self.v0.max()))))

    @property
    def theta_width(self) -> int:
        return max(1, int(self.theta.max()).bit_length()) if self.theta is not None else 0

    @property
    def logit_range(self) -> tuple[int, int]:
        lo, hi = self.current_range
        return lo + min(0, int(self.v0.min())), hi + max(0, int(self.v0.max()))

    @property
    def logit_width(self) -> int:
        return max(2, signed_width(*self.logit_range))

    @property
    def count_in_width(self) -> int:
        """Bits of an input count: unsigned ``0..t_in``, or signed ``t_min..t_in`` (analog input)."""
        return signed_width(self.t_min, self.t_in) if self.t_min < 0 else self.t_in.bit_length()

    @property
    def weight_depth(self) -> int:
        return self.in_features * self.groups

    @property
    def accumulator_bits(self) -> int:
        """Bits of accumulator memory: ``banks * groups * lanes * acc_width``."""
        return self.banks * self.groups * self.lanes * self.acc_width

    @property
    def weight_bits_total(self) -> int:
        """Bits of on-chip weight memory (``weight_depth * lanes * weight_width``)."""
        return self.weight_depth * self.lanes * self.weight_width

    # -- memory images

    def _padded(self, values: np.ndarray) -> np.ndarray:
        pad = self.groups * self.lanes - self.out_features
        return np.concatenate([values, np.zeros((pad,) + values.shape[1:], dtype=np.int64)])

    def weight_words(self) -> list[int]:
        """Weight memory image: word ``j*groups + g`` holds ``W[g*lanes + k, j]`` in lane ``k``."""
        w = self._padded(self.weight)                       # (groups*lanes, in)
        rows = w.reshape(self.groups, self.lanes, self.in_features).transpose(2, 0, 1)
        return pack_words(rows.reshape(-1, self.lanes), self.weight_width)

    def param_words(self) -> list[int]:
        """Per-group neuron parameters: lane ``k`` holds ``v0`` (low bits) and ``theta``; readout: the bias."""
        v0 = self._padded(self.v0).reshape(self.groups, self.lanes)
        if self.is_readout:
            return pack_words(v0, self.logit_width)
        theta = self._padded(self.theta).reshape(self.groups, self.lanes)
        theta = np.where(theta == 0, 1, theta)  # padding lanes: any legal threshold
        joined = (v0.astype(object) & ((1 << self.v0_width) - 1)) | (theta.astype(object) << self.v0_width)
        return pack_words(joined, self.v0_width + self.theta_width)

    # -- behavioural model

    def forward(self, counts) -> np.ndarray:
        """Integer model of the layer: output counts (hidden) or logits (readout) for input counts ``(batch, in)``."""
        total = check_counts(f"layer '{self.name}'", counts, self.in_features, self.t_in, t_min=self.t_min) @ self.weight.T
        if self.is_readout:
            return total + self.v0
        return np.clip((total + self.v0) // self.theta, 0, self.t_out)


@dataclass(frozen=True, eq=False)
class CoreConfig:
    """A network core: count-coded input of ``input_levels`` (or the signed integer pixels
    ``input_min..input_levels`` of an analog input), hidden layers, a readout.

    Layer ``i`` reads the trains of layer ``i-1`` (the input for ``i = 0``);
    the last layer is the readout. Built directly or from an integer model.
    """

    name: str
    input_features: int
    input_levels: int
    layers: tuple[LayerConfig, ...]
    in_flight: int = 1
    """Samples the core holds at once (1..:data:`MAX_IN_FLIGHT`): 1 takes a sample's first event
    only after the previous result was taken; ``D > 1`` lets up to ``D`` samples be in the stages,
    each stage working on its own (see :class:`~pascal_hdl.gateware.core.NetworkCore`)."""
    input_min: int = 0
    """The smallest input value: 0 (count-coded levels), or negative for an analog input, whose
    features are signed integer pixels in ``[input_min, input_levels]`` (``-qmax..qmax`` of
    ``pascal_ref.golden.quantize``); the first stage must then take them (``t_min``: a conv
    engine with ``mac``)."""

    @property
    def is_analog(self) -> bool:
        """The input is signed integer pixels (an analog first layer), not spike counts."""
        return self.input_min < 0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise HardwareError(f"core name must be an identifier, got {self.name!r}")
        if (isinstance(self.in_flight, bool) or not isinstance(self.in_flight, (int, np.integer))
                or not 1 <= self.in_flight <= MAX_IN_FLIGHT):
            raise HardwareError(f"core '{self.name}': in_flight must be an integer in 1..{MAX_IN_FLIGHT}, "
                                f"got {self.in_flight!r}")
        object.__setattr__(self, "in_flight", int(self.in_flight))
        layers = tuple(self.layers)
        if not layers or not all(is_stage(layer) for layer in layers):
            raise HardwareError("a core needs a non-empty sequence of LayerConfig (or other stage configurations)")
        object.__setattr__(self, "layers", layers)
        double = [layer.name for layer in layers if stage_banks(layer) == 2]
        if double and self.in_flight < 2:
            raise HardwareError(f"core '{self.name}': stage '{double[0]}' is double-buffered (banks=2), which needs "
                                f"in_flight >= 2, got in_flight={self.in_flight}")
        if isinstance(self.input_min, bool) or not isinstance(self.input_min, (int, np.integer)) or self.input_min > 0:
            raise HardwareError(f"core '{self.name}': input_min must be an integer <= 0, got {self.input_min!r}")
        object.__setattr__(self, "input_min", int(self.input_min))
        features, levels, minimum, source = self.input_features, self.input_levels, self.input_min, "input"
        for index, layer in enumerate(layers):
            last = index == len(layers) - 1
            if stage_is_readout(layer) != last:
                raise HardwareError(f"layer '{layer.name}': only the last layer is a readout (t_out None)")
            if layer.in_features != features:
                shape = f"weight shape {layer.weight.shape}" if isinstance(layer, LayerConfig) else \
                    f"{layer.in_features} inputs"
                raise HardwareError(f"layer '{layer.name}': {shape} does not match input size {features} from '{source}'")
            if layer.t_in != levels:
                raise HardwareError(f"layer '{layer.name}': t_in={layer.t_in} but '{source}' sends trains of {levels} steps")
            if getattr(layer, "t_min", 0) != minimum:
                raise HardwareError(f"layer '{layer.name}': takes counts from {getattr(layer, 't_min', 0)} but '{source}' "
                                    f"sends values from {minimum}")
            features, levels, minimum, source = layer.out_features, layer.t_out, 0, layer.name
        if len({layer.name for layer in layers}) != len(layers):
            raise HardwareError("layer names must be unique")

    @classmethod
    def from_integer_network(cls, model, lanes=None, name: str | None = None) -> "CoreConfig":
        """Build from a ``pascal_ref.golden.quantize.IntegerNetwork`` (Linear layers, count-coded input).

        ``lanes``: None (defaults: min(out, 8) hidden, min(out, 16) readout),
        an int for every layer (capped at the layer's size) or one int per layer.
        """
        network = getattr(model, "network", None)
        if network is None or not hasattr(model, "layers"):
            raise TypeError(f"from_integer_network: expected an IntegerNetwork, got {type(model).__name__}")
        layers = model.layers
        if lanes is None or isinstance(lanes, (int, np.integer)):
            lanes = [None if lanes is None else int(lanes)] * len(layers)
        lanes = list(lanes)
        if len(lanes) != len(layers):
            raise HardwareError(f"lanes has {len(lanes)} entries, the model has {len(layers)} layers")
        for layer in layers:
            if len(layer.synapses) != 1:
                raise HardwareError(f"layer '{layer.name}': {len(layer.synapses)} synapses (residual block); "
                                    "the core supports chains of Linear layers only")
            synapse = layer.synapses[0]
            if synapse.op.kind != "dense":
                raise HardwareError(f"layer '{layer.name}': {type(synapse.op).__name__} '{synapse.op.name}' is not supported "
                                    "by the core (Linear only)")
            bad = [type(p).__name__ for p in synapse.pre_ops if not p.flattens]
            if bad:
                raise HardwareError(f"layer '{layer.name}': {', '.join(bad)} before the Linear op is not supported "
                                    "(no pooling in the core)")
        if network.input_levels is None:
            raise HardwareError(f"network '{network.name}': analog input is not supported by the core; "
                                "use count-coded input (input_levels), which keeps the core multiplier-free")
        configs = []
        for layer, lane_count in zip(layers, lanes):
            synapse = layer.synapses[0]
            if synapse.input_min != 0:
                raise HardwareError(f"layer '{layer.name}': input levels from {synapse.input_min}; the core takes counts >= 0")
            out = layer.output_shape[0]
            if lane_count is None:
                lane_count = min(out, DEFAULT_READOUT_LANES if layer.is_readout else DEFAULT_HIDDEN_LANES)
            lane_count = min(lane_count, out)
            configs.append(LayerConfig(
                name=_identifier(layer.name), weight=np.asarray(synapse.weight), t_in=int(synapse.input_max),
                t_out=layer.levels, theta=None if layer.is_readout else np.asarray(layer.theta),
                v0=np.asarray(layer.bias if layer.is_readout else layer.v0), lanes=lane_count))
        core_name = name if name is not None else _identifier(network.name)
        return cls(core_name, int(np.prod(network.input_shape)), int(network.input_levels), tuple(configs))

    @property
    def hidden(self) -> tuple[LayerConfig, ...]:
        return self.layers[:-1]

    @property
    def readout(self) -> LayerConfig:
        return self.layers[-1]

    @property
    def classes(self) -> int:
        return self.readout.out_features

    @property
    def is_linear(self) -> bool:
        """Every stage a Linear layer engine (an MLP core; no conv, pooling or residual stage)."""
        return all(isinstance(layer, LayerConfig) for layer in self.layers)

    def forward(self, levels) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Integer model: ``(hidden counts per stage, logits, classes)`` for input levels ``(batch, features)``
        (``"chw"``); the counts of a stage are in its output order (``"hwc"`` after a conv, pooling or
        residual stage, the order of its ``monitor_*`` events)."""
        counts = np.asarray(levels)
        hidden = []
        for layer in self.hidden:
            counts = layer.forward(counts)
            hidden.append(counts)
        logits = self.readout.forward(counts)
        return hidden, logits, np.argmax(logits, axis=1)

    def ideal_cycles(self, levels) -> np.ndarray:
        """The engines' bound per sample: synaptic events divided by lanes,
        ``sum_layers (input spikes * out_features / lanes)`` (float; the engines
        need ``groups = ceil(out/lanes)`` cycles per spike, plus overheads). A conv or
        residual stage counts its synaptic events (spikes times the outputs each reaches)
        over its lanes (``stage.ideal_cycles``); a pooling unit does no synaptic work. A ``mac`` stage
        adds ``count * weight`` once per nonzero input, so each such input counts once."""
        counts = np.asarray(levels)
        total = np.zeros(len(counts), dtype=np.float64)
        for layer in self.layers:
            if isinstance(layer, LayerConfig):     # an analog pixel (or, with mac, any input) is one addition per output
                spikes = np.abs(np.sign(counts)) if layer.t_min < 0 or layer.mac else counts
                total += spikes.sum(axis=1) * layer.out_features / layer.lanes
            elif hasattr(layer, "ideal_cycles"):
                total += layer.ideal_cycles(counts)
            if not stage_is_readout(layer):
                counts = layer.forward(counts)
        return total

    @property
    def clear_cycles(self) -> int:
        """Cycles after a reset until every accumulator and feature-map memory of the core is zero: the
        longest CLEAR phase of its stages (each stage's ``clear_cycles``, all clearing at once). The core
        takes the first event after the first stage's clear; the cycles of a sample count from then."""
        return max(int(layer.clear_cycles) for layer in self.layers)

    def worst_case_cycles(self) -> int:
        """Upper bound of the cycles of any sample (every input and every hidden count at its maximum,
        every stall counted), for inputs sent as :func:`pascal_hdl.gateware.engine.sample_events` does
        (nonzero counts, or the single all-zero event): ``1 + sum_layers (in*T1*groups + out)
        + sum_hidden groups*(2+T2) + groups_readout + 1``, plus one cycle per double-buffered layer
        (the hand-over of its full bank). In every cycle of a sample at least one
        engine issues an accumulation, runs a neuron/readout step or offers an output, so the
        terms add up. Any other stage adds its own bound (``stage.worst_case_cycles()``; a residual
        block the bounds of its two engines)."""
        total = 1
        for layer in self.layers:
            if isinstance(layer, LayerConfig):
                total += layer.in_features * int(layer.issues(layer.t_in)) * layer.groups + layer.out_features
                total += layer.groups + 1 if layer.is_readout else layer.groups * (2 + layer.t_out)
                total += layer.banks - 1      # double-buffered: the cycle that hands the full bank over
            else:
                total += stage_worst_case_cycles(layer)
        return int(total)


def is_stage(stage) -> bool:
    """A stage configuration of a core: a :class:`LayerConfig` or any object with the stage interface
    (``name``, ``in_features``, ``out_features``, ``t_in``, ``t_out``, ``forward``): the conv, pooling
    and residual configurations of :mod:`pascal_hdl.model` (which this module may not import)."""
    return isinstance(stage, LayerConfig) or all(
        hasattr(stage, key) for key in ("name", "in_features", "out_features", "t_in", "t_out", "forward"))


def stage_banks(stage) -> int:
    """A stage's accumulator banks (``banks``; 1 for a configuration without the field)."""
    return int(getattr(stage, "banks", 1))


def stage_is_readout(stage) -> bool:
    return bool(getattr(stage, "is_readout", False))


def stage_worst_case_cycles(stage) -> int:
    """A stage's own bound of the cycles of a sample; a residual block: the bounds of conv1, and of
    act2's two input ports (conv2 and the shortcut), each as a conv engine of its own (an over-estimate:
    the neuron phase counted twice)."""
    if hasattr(stage, "worst_case_cycles"):
        return int(stage.worst_case_cycles())
    parts = (stage.conv1, stage.merge) if hasattr(stage, "conv1") else (stage.main, stage.shortcut)
    return sum(stage_worst_case_cycles(part) for part in parts)
