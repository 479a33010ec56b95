"""ResNet basic blocks in hardware: configuration and cycle-level models (no Amaranth).

A golden ``BasicBlock`` compiles to two neuron layers (``pascal_ref.ir.layers.BasicBlock.compile``):
``act1 = PASC-IF(conv1(x))`` and ``act2 = PASC-IF(conv2(act1) + shortcut(x))``, the shortcut
an identity (in the integer model: a per-channel integer gain, the ``Identity`` op's weight) or a
1x1 Conv2d with stride. In hardware the block is one stage, :class:`ResidualBlockConfig`::

    x events --+--> ConvEngine(conv1) --act1 events--> port i        \\
               |                                                      ResidualEngine(act2) --> o
               +------------------------------------> port shortcut /

* the block input stream is forked: an event is taken when both the conv1
  engine and the shortcut port can take it, so the shortcut's contribution
  is accumulated while conv1 accumulates, and no spike train is stored;
* :class:`ResidualConfig` is the act2 engine: the Conv2d engine
  (:class:`~pascal_hdl.model.conv.ConvEngineModel`) with two input ports,
  ``shortcut`` (accumulated first, until its ``last``) and ``i`` (the act1
  events of conv1, then), both scattering into the same accumulators, then
  the same neuron units and emitter. A 1x1-conv shortcut updates ``groups``
  words per spike (as a conv layer does); the identity shortcut is a
  diagonal 1x1 conv (:attr:`~pascal_hdl.model.conv.ConvConfig.diagonal`):
  one word per spike, the gain of channel ``c`` in lane ``c % lanes``.

Timing rule (``docs/semantics.md`` §7). The golden timestep engine feeds both trains step by step
from step 0 (stage 1 lasts ``T1 = max(L_x, L_act1)`` steps, the shorter train simply ends earlier);
the reference adds the shortcut's whole total at step 0 when the lengths differ. The hardware
follows neither literally but the theorem both rely on: every act2 neuron gets its total input
``S = conv2(c_act1) + shortcut(c_x)`` in one stage-1 step (``T1 = 1``) and then the ``T2 - 1``
settle steps of the Linear engine (``docs/hardware.md``, "one lumped stage-1 step"). The count
``clip(floor((v0 + S) / theta), 0, T2)`` and hence the transmitted burst are the same for any
order of the currents over the stage-1 steps, so the counts and the transmitted spikes equal the
golden model's for equal and for unequal ``L`` on the two paths; the per-port rule only checks
each count against its own train length (``L_x`` on ``shortcut``, ``L_act1`` on ``i``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from pascal_hdl.config import (
    DEFAULT_HIDDEN_LANES,
    MAX_ACC_BITS,
    HardwareError,
    _identifier,
    check_banks,
    check_mac,
    check_multiplier,
    pack_words,
)
from pascal_hdl.model.conv import ConvConfig, ConvEngineModel
from pascal_hdl.model.engine import run_samples
from pascal_hdl.widths import check_type, neuron_widths
from pascal_ref.numeric import signed_width

__all__ = ["ResidualBlockConfig", "ResidualBlockModel", "ResidualConfig", "ResidualEngineModel",
           "block_layers", "run_block_model"]


@dataclass(frozen=True, eq=False)
class ResidualConfig:
    """The second neuron layer of a basic block: ``act2 = PASC-IF(main(act1) + shortcut(x))``.

    Parameters
    ----------
    name : str
        Layer name.
    main : ConvConfig
        ``conv2`` on the act1 events (port ``i``, ``"hwc"``), with the layer's ``theta``, ``v0``, ``T2``
        and lanes.
    shortcut : ConvConfig
        The shortcut on the block input (port ``shortcut``): a 1x1 Conv2d (any stride, no padding) or
        the identity as a :attr:`~pascal_hdl.model.conv.ConvConfig.diagonal` 1x1 conv; the same output
        map, ``theta``, ``v0``, ``T2`` and lanes as ``main``.
    banks : 1 or 2
        Accumulator banks of the engine (:attr:`ConvConfig.banks <pascal_hdl.model.conv.ConvConfig.banks>`;
        the ``banks`` of ``main`` and ``shortcut`` are not read): with 2 the engine accumulates both
        inputs of sample n+1 into one bank while its neurons emit sample n from the other.
    mac : bool
        Both inputs issue each tap once per event and add ``count * weight``
        (:attr:`ConvConfig.mac <pascal_hdl.model.conv.ConvConfig.mac>`): ``main`` and ``shortcut``
        are replaced by copies with this ``mac``.
    multiplier : ``"logic"`` or ``"dsp"``
        How both inputs form ``count * weight`` with :attr:`mac`
        (:attr:`ConvConfig.multiplier <pascal_hdl.model.conv.ConvConfig.multiplier>`), copied into both.
    """

    name: str
    main: ConvConfig
    shortcut: ConvConfig
    banks: int = 1
    mac: bool = False
    multiplier: str = "logic"

    def __post_init__(self):
        name, main, short = self.name, self.main, self.shortcut
        if not isinstance(name, str) or not name.isidentifier():
            raise HardwareError(f"layer name must be an identifier (it names signals), got {name!r}")
        object.__setattr__(self, "banks", check_banks(f"layer '{name}'", self.banks))
        object.__setattr__(self, "mac", check_mac(f"layer '{name}'", self.mac))
        check_multiplier(f"layer '{name}'", self.multiplier)
        for key in ("main", "shortcut"):
            check_type("ResidualConfig", key, getattr(self, key), ConvConfig)
            inner = getattr(self, key)
            if (inner.mac, inner.multiplier) != (self.mac, self.multiplier):
                object.__setattr__(self, key, replace(inner, mac=self.mac, multiplier=self.multiplier))
        main, short = self.main, self.shortcut
        if short.kernel_size != (1, 1) or short.padding != (0, 0):
            raise HardwareError(f"layer '{name}': the shortcut must be a 1x1 convolution without padding, got kernel "
                                f"{short.kernel_size}, padding {short.padding}")
        if main.output_shape != short.output_shape:
            raise HardwareError(f"layer '{name}': the residual branch gives {main.output_shape} but the shortcut "
                                f"{short.output_shape}")
        if (main.t_out != short.t_out or main.lanes != short.lanes or not np.array_equal(main.theta, short.theta)
                or not np.array_equal(main.v0, short.v0)):
            raise HardwareError(f"layer '{name}': both inputs must carry the same neurons (T2, lanes, theta, v0)")
        if self.acc_width > MAX_ACC_BITS:
            raise HardwareError(f"layer '{name}': accumulator needs {self.acc_width} bits, more than the limit {MAX_ACC_BITS}")
        widths = neuron_widths(-(1 << (self.acc_width - 1)), (1 << (self.acc_width - 1)) - 1,
                               -(1 << (self.v0_width - 1)), (1 << (self.v0_width - 1)) - 1,
                               (1 << self.theta_width) - 1, 1, self.t_out)
        if widths.v_width > MAX_ACC_BITS:
            raise HardwareError(f"layer '{name}': membrane needs {widths.v_width} bits, more than the limit {MAX_ACC_BITS}")

    @classmethod
    def from_int_layer(cls, layer, lanes: int | None = None, input_layout: str = "hwc") -> ResidualConfig:
        """From the golden block's second ``IntNeuronLayer`` (synapses: conv2 on act1, the shortcut on the
        block input, no pre-ops); ``input_layout`` is the order of the block input's events."""
        if len(layer.synapses) != 2:
            raise HardwareError(f"layer '{layer.name}': {len(layer.synapses)} synapses; a residual layer has two")
        main, short = layer.synapses
        if main.op.kind != "conv" or short.op.kind not in ("conv", "identity"):
            raise HardwareError(f"layer '{layer.name}': expected conv2 and a 1x1-conv or identity shortcut, got "
                                f"{type(main.op).__name__} and {type(short.op).__name__}")
        for synapse in layer.synapses:
            if synapse.pre_ops:
                raise HardwareError(f"layer '{layer.name}': pre-ops on a residual synapse are not supported")
            if synapse.input_min != 0:
                raise HardwareError(f"layer '{layer.name}': input levels from {synapse.input_min}; the engine takes counts >= 0")
        if layer.is_readout:
            raise HardwareError(f"layer '{layer.name}': a residual readout is not supported")
        out = int(layer.output_shape[0])
        lanes = min(out, DEFAULT_HIDDEN_LANES if lanes is None else int(lanes))
        name = _identifier(layer.name)
        theta, v0 = np.asarray(layer.theta), np.asarray(layer.v0)
        conv2 = ConvConfig(f"{name}_main", np.asarray(main.weight), tuple(main.op_input_shape), main.op.stride,
                           main.op.padding, int(main.input_max), layer.levels, theta, v0, lanes, "hwc")
        if short.op.kind == "identity":
            gain = np.asarray(short.weight).reshape(-1)
            weight, stride, diagonal = np.diag(gain)[:, :, None, None], 1, True
        else:
            weight, stride, diagonal = np.asarray(short.weight), short.op.stride, False
            if tuple(short.op.padding) != (0, 0):
                raise HardwareError(f"layer '{layer.name}': a padded shortcut is not supported")
        shortcut = ConvConfig(f"{name}_shortcut", weight, tuple(short.op_input_shape), stride, 0, int(short.input_max),
                              layer.levels, theta, v0, lanes, input_layout, diagonal)
        return cls(name, conv2, shortcut)

    # -- ports and geometry (the names ConvEngine reads)

    @property
    def inputs(self) -> tuple[ConvConfig, ConvConfig]:
        """The port geometries in accumulation order: ``shortcut``, then ``i`` (``main``)."""
        return (self.shortcut, self.main)

    port_names = ("shortcut", "i")
    is_readout = False

    def weight_base(self, port: int) -> int:
        """First weight memory word of ``port`` (``inputs`` order): the shortcut's words follow main's."""
        return self.main.weight_depth if port == 0 else 0

    @property
    def in_features(self) -> int:
        return self.main.in_features

    @property
    def t_in(self) -> int:
        return self.main.t_in

    # -- widths and memories

    @property
    def weight_width(self) -> int:
        return max(self.main.weight_width, self.shortcut.weight_width)

    @functools.cached_property
    def current_range(self) -> tuple[int, int]:
        """Bounds of every partial sum of a neuron's input: each input's worst case at its own ``T1`` (computed
        once: the config is frozen, its kernels read-only)."""
        low = np.zeros(self.out_channels, dtype=object)
        high = np.zeros(self.out_channels, dtype=object)
        for port in self.inputs:
            w = port.kernel.weight.astype(object)
            low = low + np.minimum(w, 0).sum(axis=1) * port.t_in
            high = high + np.maximum(w, 0).sum(axis=1) * port.t_in
        return int(min(low.min(), 0)), int(max(high.max(), 0))

    @property
    def acc_width(self) -> int:
        return max(2, signed_width(*self.current_range))

    @property
    def acc_bits_total(self) -> int:
        """Accumulator RAM bits, every bank."""
        return self.banks * self.acc_depth * self.lanes * self.acc_width

    def _rows(self, port: ConvConfig) -> np.ndarray:
        """One port's weight words as lane values ``(words, lanes)``."""
        kernel = port.kernel
        w = kernel._padded(kernel.weight)
        rows = w.reshape(self.groups, self.lanes, kernel.in_features).transpose(2, 0, 1)   # (in, groups, lanes)
        if port.diagonal:     # one word per channel: the group holding output channel c
            return rows[np.arange(kernel.in_features), np.arange(kernel.in_features) // self.lanes]
        return rows.reshape(-1, self.lanes)

    def weight_words(self) -> list[int]:
        """``main``'s image (word ``((c*kh + ky)*kw + kx)*groups + g``), then the shortcut's (a 1x1 conv:
        word ``c*groups + g``; identity: word ``c``, the gain in lane ``c % lanes``), at one word width."""
        return pack_words(np.concatenate([self._rows(self.main), self._rows(self.shortcut)]), self.weight_width)

    @property
    def weight_depth(self) -> int:
        return len(self._rows(self.main)) + len(self._rows(self.shortcut))

    @property
    def weight_bits_total(self) -> int:
        return self.weight_depth * self.lanes * self.weight_width

    def param_words(self) -> list[int]:
        return self.main.param_words()

    # -- behaviour

    def totals(self, main_counts, shortcut_counts) -> np.ndarray:
        """``S`` per neuron ``(batch, positions, O)``: both inputs' event scatter."""
        return self.main.totals(main_counts) + self.shortcut.totals(shortcut_counts)

    def forward(self, main_counts, shortcut_counts) -> np.ndarray:
        """act2 counts ``(batch, out_features)`` (``"hwc"``)."""
        total = self.totals(main_counts, shortcut_counts)
        return np.clip((total + self.v0) // self.theta, 0, self.t_out).reshape(len(total), -1)

    def synaptic_events(self, main_counts, shortcut_counts) -> np.ndarray:
        return self.main.synaptic_events(main_counts) + self.shortcut.synaptic_events(shortcut_counts)


def _from_main(key: str) -> property:
    return property(lambda self: getattr(self.main, key), doc=f"``main.{key}`` (the output map and the neurons).")


# Output geometry, neurons and the tap stepping of the issue loop come from the main input.
for _key in ("out_channels", "positions", "out_features", "output_shape", "out_height", "out_width", "groups",
             "lanes", "t_out", "theta", "v0", "acc_depth", "clear_cycles", "kernel_size", "stride", "theta_width",
             "v0_width", "emitter_keeps_up"):
    setattr(ResidualConfig, _key, _from_main(_key))
del _key


class ResidualEngineModel(ConvEngineModel):
    """Cycle model of :class:`~pascal_hdl.gateware.residual.ResidualEngine`: the Conv2d engine's model with
    the ports of :attr:`ResidualConfig.inputs` (``shortcut`` decoded until its last event, then ``i``);
    :meth:`step_ports` takes both inputs."""

    def __init__(self, config: ResidualConfig):
        self.config = check_type("ResidualEngineModel", "config", config, ResidualConfig)
        self.reset()


@dataclass(frozen=True, eq=False)
class ResidualBlockConfig:
    """One basic block as a stage: ``conv1`` (a :class:`ConvConfig` on the block input) and ``merge``
    (the :class:`ResidualConfig` of act2), the block input forked to both. ``banks`` (1 or 2) and
    ``mac`` (and its ``multiplier``) apply to both engines: their configurations are replaced by copies
    with these values, so ``dataclasses.replace(block, banks=2)`` double-buffers the block."""

    name: str
    conv1: ConvConfig
    merge: ResidualConfig
    banks: int = 1
    mac: bool = False
    multiplier: str = "logic"

    def __post_init__(self):
        check_type("ResidualBlockConfig", "conv1", self.conv1, ConvConfig)
        check_type("ResidualBlockConfig", "merge", self.merge, ResidualConfig)
        banks = check_banks(f"block '{self.name}'", self.banks)
        object.__setattr__(self, "banks", banks)
        object.__setattr__(self, "mac", check_mac(f"block '{self.name}'", self.mac))
        check_multiplier(f"block '{self.name}'", self.multiplier)
        for key in ("conv1", "merge"):
            inner = getattr(self, key)
            if (inner.banks, inner.mac, inner.multiplier) != (banks, self.mac, self.multiplier):
                object.__setattr__(self, key, replace(inner, banks=banks, mac=self.mac, multiplier=self.multiplier))
        conv1, short, main = self.conv1, self.merge.shortcut, self.merge.main
        if (conv1.input_shape, conv1.input_layout, conv1.t_in) != (short.input_shape, short.input_layout, short.t_in):
            raise HardwareError(f"block '{self.name}': conv1 and the shortcut must read the same input "
                                f"(shape, layout, T1): {conv1.input_shape, conv1.input_layout, conv1.t_in} vs "
                                f"{short.input_shape, short.input_layout, short.t_in}")
        if (conv1.output_shape, conv1.t_out) != (main.input_shape, main.t_in):
            raise HardwareError(f"block '{self.name}': conv2 reads {main.input_shape} with T1 = {main.t_in}, conv1 "
                                f"gives {conv1.output_shape} with T2 = {conv1.t_out}")

    @classmethod
    def from_int_layers(cls, first, second, lanes: int | None = None, input_layout: str = "chw",
                        second_lanes: int | None = None) -> ResidualBlockConfig:
        """From the two golden layers of a block (``act1``, ``act2``): see :func:`block_layers`;
        ``lanes`` of conv1 and (unless ``second_lanes`` is given) of act2."""
        if second.synapses[0].source != first.name or len(first.synapses) != 1:
            raise HardwareError(f"layer '{second.name}': its first synapse must read '{first.name}'")
        if second.synapses[1].source != first.synapses[0].source:
            raise HardwareError(f"layer '{second.name}': the shortcut must read the block input "
                                f"'{first.synapses[0].source}', not '{second.synapses[1].source}'")
        out1 = int(first.output_shape[0])
        conv1 = ConvConfig.from_int_layer(first, min(out1, lanes or DEFAULT_HIDDEN_LANES), input_layout)
        merge = ResidualConfig.from_int_layer(second, lanes if second_lanes is None else second_lanes, input_layout)
        name = _identifier(second.name.rsplit(".", 1)[0] if "." in second.name else second.name)
        return cls(name, conv1, merge)

    in_features = property(lambda self: self.conv1.in_features)
    t_in = property(lambda self: self.conv1.t_in)
    input_shape = property(lambda self: self.conv1.input_shape)
    input_layout = property(lambda self: self.conv1.input_layout)
    out_features = property(lambda self: self.merge.out_features)
    output_shape = property(lambda self: self.merge.output_shape)
    t_out = property(lambda self: self.merge.t_out)
    is_readout = False

    @property
    def clear_cycles(self) -> int:
        """Cycles after a reset until both engines' accumulators are zero (they clear at once); the block
        takes its first event then (its ``i.ready`` needs both engines' inputs ready)."""
        return max(self.conv1.clear_cycles, self.merge.clear_cycles)

    def forward(self, counts) -> np.ndarray:
        """act2 counts ``(batch, out_features)`` (``"hwc"``) for block input counts in :attr:`input_layout`."""
        return self.merge.forward(self.conv1.forward(counts), counts)

    def forward_both(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """``(act1, act2)`` counts, both ``"hwc"``."""
        inner = self.conv1.forward(counts)
        return inner, self.merge.forward(inner, counts)

    def synaptic_events(self, counts) -> np.ndarray:
        return self.conv1.synaptic_events(counts) + self.merge.synaptic_events(self.conv1.forward(counts), counts)

    def ideal_cycles(self, counts) -> np.ndarray:
        """The block's bound (float): synaptic events over lanes along its critical path,
        ``max(conv1, shortcut) + conv2``. conv1 and the shortcut scatter in two engines at the same
        time (the fork hands each block input to both); conv2's inputs are conv1's counts, which exist
        only once conv1 has accumulated its last input, and the act2 engine scatters them after the
        shortcut. Summing all three (:meth:`synaptic_events` over lanes) would count the overlap twice
        and is not a bound: the digits ResNet runs in 0.99 of that sum."""
        inner = self.conv1.forward(counts)
        conv1 = self.conv1.additions(counts) / self.conv1.lanes
        shortcut = self.merge.shortcut.additions(counts) / self.merge.lanes
        return np.maximum(conv1, shortcut) + self.merge.main.additions(inner) / self.merge.lanes

    def expected_cycles(self, counts) -> np.ndarray:
        return run_block_model(self, counts)[1]


def block_layers(layers, index: int) -> bool:
    """Layer ``index`` opens a basic block: the next layer has two synapses, the first reading it."""
    return (index + 1 < len(layers) and len(layers[index + 1].synapses) == 2
            and layers[index + 1].synapses[0].source == layers[index].name)


class ResidualBlockModel:
    """Cycle model of :class:`~pascal_hdl.gateware.residual.ResidualBlock`: the fork, the conv1 engine's
    model and the act2 engine's model, with the interface of one stage model; :attr:`inner` records the
    act1 events handed from conv1 to act2 (the block's ``inner`` monitor)."""

    SHORTCUT, MAIN = 0, 1     # ports of the act2 engine (ResidualConfig.inputs order)

    def __init__(self, config: ResidualBlockConfig):
        self.config = check_type("ResidualBlockModel", "config", config, ResidualBlockConfig)
        self.conv1 = ConvEngineModel(config.conv1)
        self.merge = ResidualEngineModel(config.merge)
        self.inner = []

    def reset(self):
        """The block's ``rst``: both engines' (each clears its accumulators); :attr:`inner` is a record
        and stays."""
        self.conv1.reset()
        self.merge.reset()

    def in_ready(self) -> bool:
        return self.conv1.in_ready() and self.merge.port_ready(self.SHORTCUT)

    def out_valid(self) -> bool:
        return self.merge.out_valid()

    @property
    def out_payload(self):
        return self.merge.out_payload

    def rejecting(self) -> bool:
        return self.conv1.rejecting() or self.merge.rejecting()

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        conv1, merge = self.conv1, self.merge
        conv_ready, short_ready = conv1.in_ready(), merge.port_ready(self.SHORTCUT)
        main_ready = merge.port_ready(self.MAIN)
        inner_valid = conv1.out_valid()
        inner_payload = conv1.out_payload if inner_valid else None
        conv1.step(bool(in_valid) and short_ready, in_payload, main_ready)
        handed = inner_valid and main_ready
        if handed:
            self.inner.append(inner_payload)
        _, taken = merge.step_ports([(bool(in_valid) and conv_ready, in_payload), (handed, inner_payload)], out_ready)
        return bool(in_valid) and conv_ready and short_ready, taken


def run_block_model(config: ResidualBlockConfig, counts, max_cycles: int = 10_000_000):
    """Run :class:`ResidualBlockModel` one sample at a time (source back to back, sink always ready).
    Returns ``(act2 counts (batch, out_features), cycles)``: cycles from the acceptance of the first
    event to the cycle after the last output is taken."""
    counts = config.conv1._check(counts)
    return run_samples(lambda: ResidualBlockModel(config), counts, config.out_features, "residual block model",
                       max_cycles)

