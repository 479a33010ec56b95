"""Configuration and cycle-level Python model of the event-driven Conv2d layer engine
(:class:`pascal_hdl.gateware.conv.ConvEngine`); no Amaranth.

What the engine computes. A hidden Conv2d layer (weight ``(O, C, kh, kw)``,
``stride``, zero ``padding``, as :class:`pascal_ref.ir.layers.Conv2d`) with
PASC-IF neurons. An input spike of channel ``c`` at ``(y, x)`` reaches exactly
the output positions ``(oy, ox)`` whose receptive field contains it, through
the kernel tap ``(ky, kx)`` with ``oy*sh - ph + ky = y`` and
``ox*sw - pw + kx = x``. Along one axis the valid taps of an input row ``y``
form an arithmetic progression: ``ky = ky0, ky0 + sh, ...`` (``ny`` of them),
``oy = oy0, oy0 - 1, ...``; :attr:`ConvConfig.row_taps` and
:attr:`ConvConfig.col_taps` tabulate ``(n, k0, o0)`` per input row and column,
so the scatter needs no division: for every spike, for every valid tap, for
every group of ``lanes`` output channels, ``acc[oy, ox][g][k] += W[g*lanes + k, c, ky, kx]``
(``lanes`` adders per cycle, one weight per synapse and spike, counts
repeated as in the Linear engine: no multiplier). Borders are simply taps that
do not exist (zero padding connects nothing), and an input that no output
sees (stride larger than the kernel) does no work.

The neurons are the Linear engine's (:class:`pascal_hdl.model.engine.EngineModel`):
``PascIfNeuron`` units fed ``S`` in one stage-1 step, ``T2`` cycles per
accumulator word, the same output events (index, count, last; zero counts
not sent, the last neuron always). Two differences in timing, both because
a conv layer has many more words than a Linear layer has groups: the units
run the next word while an emitter sends the counts of the word before
(``T2 + 2`` cycles per word instead of ``T2 + 2 + lanes``), and the emitter
spends a cycle only on a count it sends (a priority encoder over the lanes)
instead of one per neuron. Per output position the layer is a dense layer
over its receptive field, so :attr:`ConvConfig.kernel` (a
:class:`~pascal_hdl.config.LayerConfig` with weight ``(O, C*kh*kw)``) gives
every width, the weight memory image (word ``((c*kh + ky)*kw + kx)*groups + g``)
and the neuron parameters.

Event order (layouts). The flat index of an event is channels-first
(``"chw"``, the network input and ``Flatten``) or position-major (``"hwc"``,
``index = (y*W + x)*C + c``). The engine *emits* in ``"hwc"`` order: lanes run
over output channels, so one accumulator word holds the channels of one
position and the neuron phase walks the words in address order as the
Linear engine walks its groups, with no transposition buffer. A consumer
reads ``"hwc"`` (a following :class:`ConvConfig` with ``input_layout="hwc"``,
or a Linear after ``Flatten`` whose weight columns are permuted once at
configuration time: :func:`hwc_permutation`).
"""
from __future__ import annotations

import enum
import functools
import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pascal_hdl.config import (
    DEFAULT_HIDDEN_LANES,
    MAX_FEATURES,
    HardwareError,
    LayerConfig,
    _identifier,
    check_banks,
    check_counts,
    check_mac,
    check_multiplier,
)
from pascal_hdl.model.engine import breaks_stream_rule, run_samples, sample_events
from pascal_hdl.widths import check_type

__all__ = [
    "LAYOUTS",
    "ConvConfig",
    "ConvEngineModel",
    "MagicDivider",
    "Taps",
    "axis_taps",
    "decode_index",
    "from_layout",
    "hwc_permutation",
    "index_dividers",
    "magic_divider",
    "run_conv_model",
    "sample_events",
    "to_layout",
]

LAYOUTS = ("chw", "hwc")
class ConvPhase(enum.IntEnum):
    """Phase of the Conv2d engine's sequencer (the gateware's state register holds these values)."""

    ACCUMULATE = 0
    READ = 1       # read the first accumulator word and its parameters
    START = 2      # start the neuron units on the word, clear it
    RUN = 3        # T2 cycles of stage 1 and stage 2
    LATCH = 4      # counts ready: hand them to the emitter when it is free, read the next word
    DRAIN = 5      # every word handed over: wait for the emitter to send the last one
    CLEAR = 6      # after reset: zero one accumulator word per cycle (every input port not ready)


class Taps(NamedTuple):
    """Valid kernel taps of one input row (or column): ``n`` taps ``k0, k0 + stride, ...``
    reaching outputs ``o0, o0 - 1, ...`` (``n = 0``: the input reaches no output)."""

    n: int
    k0: int
    o0: int


@functools.lru_cache(maxsize=1024)
def axis_taps(size: int, kernel: int, stride: int, padding: int, out: int) -> tuple[Taps, ...]:
    """Per input coordinate ``i`` in ``[0, size)``: the taps ``k`` in ``[0, kernel)`` with an output
    ``o = (i + padding - k) / stride`` integral and in ``[0, out)``, enumerated by brute force and
    checked to form an arithmetic progression (so the hardware steps through them with adders).
    Cached: the cycle models look the table up for every event (a tuple of tuples, never changed)."""
    table = []
    for i in range(size):
        taps = [(k, (i + padding - k) // stride) for k in range(kernel)
                if (i + padding - k) % stride == 0 and 0 <= (i + padding - k) // stride < out]
        for (k_a, o_a), (k_b, o_b) in itertools.pairwise(taps):
            assert k_b - k_a == stride and o_a - o_b == 1
        table.append(Taps(len(taps), taps[0][0], taps[0][1]) if taps else Taps(0, 0, 0))
    return tuple(table)


class MagicDivider(NamedTuple):
    """``i // divisor == (i * multiplier) >> shift`` for every ``0 <= i < limit`` (checked exhaustively)."""

    divisor: int
    multiplier: int
    shift: int
    limit: int

    def __call__(self, value: int) -> int:
        return (value * self.multiplier) >> self.shift


def magic_divider(divisor: int, limit: int) -> MagicDivider:
    """The smallest ``shift`` (and ``multiplier = ceil(2**shift / divisor)``) that divides every index
    below ``limit`` exactly; the hardware builds ``i * multiplier`` from shifts and adders."""
    if divisor < 1 or limit < 1:
        raise ValueError(f"magic_divider: divisor and limit must be >= 1, got {divisor}, {limit}")
    values = np.arange(limit, dtype=np.int64)
    for shift in range(2 * limit.bit_length() + divisor.bit_length() + 2):
        multiplier = -(-(1 << shift) // divisor)
        if multiplier * limit < (1 << 62) and np.array_equal((values * multiplier) >> shift, values // divisor):
            return MagicDivider(divisor, multiplier, shift, limit)
    raise AssertionError("no magic divider found")  # pragma: no cover - shift = bits(limit)+bits(d) works


def decode_index(shape, layout: str, index: int) -> tuple[int, int, int]:
    """``(c, y, x)`` of a flat index into a ``(C, H, W)`` map in ``layout``."""
    c, h, w = shape
    if layout == "chw":
        return index // (h * w), index // w % h, index % w
    return index % c, index // (w * c), index // c % w


def index_dividers(shape, layout: str) -> tuple[MagicDivider, MagicDivider]:
    """The two exact constant divisions of the index decode, for every index of the map: by ``H*W``
    and ``W`` (``"chw"``: quotients ``c`` and ``c*H + y``) or by ``W*C`` and ``C`` (``"hwc"``:
    quotients ``y`` and ``y*W + x``); the rest follows by constant products and subtractions."""
    c, h, w = shape
    outer, inner = (h * w, w) if layout == "chw" else (w * c, c)
    size = c * h * w
    return magic_divider(outer, size), magic_divider(inner, size)


def hwc_permutation(shape) -> np.ndarray:
    """``perm`` with ``hwc_index = perm[chw_index]`` for a ``(C, H, W)`` map; a Linear after ``Flatten``
    reading ``"hwc"`` events uses the weight ``W_hwc[:, perm] = W``."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def to_layout(maps, layout: str) -> np.ndarray:
    """Flat counts ``(batch, C*H*W)`` in ``layout`` from maps ``(batch, C, H, W)``."""
    maps = np.asarray(maps)
    if layout == "hwc":
        maps = maps.transpose(0, 2, 3, 1)
    return maps.reshape(maps.shape[0], -1)


def from_layout(flat, shape, layout: str) -> np.ndarray:
    """Maps ``(batch, C, H, W)`` from flat counts in ``layout``."""
    flat = np.asarray(flat)
    c, h, w = shape
    if layout == "hwc":
        return flat.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
    return flat.reshape(-1, c, h, w)


@dataclass(frozen=True, eq=False)
class ConvConfig:
    """One Conv2d layer engine (hidden layer, PASC-IF neurons).

    Parameters
    ----------
    name : str
        Layer name (signal names, errors).
    weight : int array ``(O, C, kh, kw)``
        Integer kernel.
    input_shape : ``(C, H, W)``
        Shape of the input map.
    stride, padding : ``(sh, sw)``, ``(ph, pw)``
        As :class:`pascal_ref.ir.layers.Conv2d` (zero padding).
    t_in, t_out : int
        ``T1`` (input counts in ``[t_min, t_in]``) and ``T2`` (the layer's L).
    theta, v0 : int arrays ``(O,)``
        Per output channel threshold (>= 1) and initial membrane.
    lanes : int
        Output channels updated in parallel (``groups = ceil(O / lanes)`` per tap).
    input_layout : ``"chw"`` or ``"hwc"``
        Order of the flat input index (the output is always ``"hwc"``).
    diagonal : bool
        The identity shortcut of a residual block as a 1x1 convolution whose
        weight is diagonal (``W[o, c] = 0`` for ``o != c``): a spike of channel
        ``c`` updates only the group holding output channel ``c`` (one cycle per
        spike instead of ``groups``) and the weight memory keeps one word per
        channel. Used as an input of :class:`pascal_hdl.model.residual.ResidualConfig`.
    banks : 1 or 2
        Accumulator memories. 1: the engine takes the next sample's events only
        after its neurons have emitted the previous sample (period accumulate +
        emit). 2 (double-buffered): the engine accumulates sample n+1 into one
        bank while its neurons read, clear and emit sample n from the other
        (period ``max(accumulate, emit)`` plus the hand-over), at twice the
        accumulator RAM.
    mac : bool
        False: a burst of ``count`` spikes is issued ``count`` times, one
        weight added per tap and issue cycle (adders only). True: each tap is
        issued once per event and adds ``count * weight`` (per lane, shifted
        and masked weights and adders, no multiplier), so an event's
        issue cycles no longer grow with its count: the first layer, whose
        counts are the input levels, gains most. The sums, outputs and widths
        are the same.
    multiplier : ``"logic"`` or ``"dsp"``
        How a :attr:`mac` engine forms ``count * weight`` (:data:`MULTIPLIERS`): shift-and-add
        (default) or ``*`` on the part's DSP blocks, one per lane. Same cycles and results; without
        :attr:`mac` it is not read.
    t_min : int
        The smallest input count: 0 (spike counts) or, for an analog first layer, the negative bound
        of its signed integer pixels (``-t_in`` and above): each pixel is one event whose ``count`` is
        the pixel, and the engine adds ``pixel * weight`` per tap (one stage-1 step carrying ``W x``),
        so it needs :attr:`mac`.
    """

    name: str
    weight: np.ndarray
    input_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    t_in: int = 1
    t_out: int = 1
    theta: np.ndarray | None = None
    v0: np.ndarray | None = None
    lanes: int = 8
    input_layout: str = "chw"
    diagonal: bool = False
    banks: int = 1
    mac: bool = False
    multiplier: str = "logic"
    t_min: int = 0
    kernel: LayerConfig = field(init=False, repr=False, default=None)

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name.isidentifier():
            raise HardwareError(f"layer name must be an identifier (it names signals), got {name!r}")
        object.__setattr__(self, "banks", check_banks(f"layer '{name}'", self.banks))
        object.__setattr__(self, "mac", check_mac(f"layer '{name}'", self.mac))
        check_multiplier(f"layer '{name}'", self.multiplier)
        weight = np.asarray(self.weight)
        if weight.dtype.kind not in "iu" or weight.ndim != 4:
            raise HardwareError(f"layer '{name}': weight must be an integer array (O, C, kh, kw), got {weight.dtype} {weight.shape}")
        weight = weight.astype(np.int64)
        weight.setflags(write=False)
        object.__setattr__(self, "weight", weight)
        pairs = {}
        for key, minimum in (("stride", 1), ("padding", 0)):
            value = getattr(self, key)
            value = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
            if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum
                                      for v in value):
                raise HardwareError(f"layer '{name}': {key} must be two integers >= {minimum}, got {getattr(self, key)!r}")
            pairs[key] = tuple(int(v) for v in value)
            object.__setattr__(self, key, pairs[key])
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[0] != weight.shape[1]:
            raise HardwareError(f"layer '{name}': input shape {self.input_shape} does not match weight {weight.shape} "
                                "(expected (C, H, W) with C = weight.shape[1])")
        object.__setattr__(self, "input_shape", shape)
        if self.input_layout not in LAYOUTS:
            raise HardwareError(f"layer '{name}': input_layout must be one of {LAYOUTS}, got {self.input_layout!r}")
        if self.t_out is None:
            raise HardwareError(f"layer '{name}': a Conv2d readout is not supported (hidden conv layers only)")
        kh, kw = weight.shape[2:]
        if self.out_height < 1 or self.out_width < 1:
            raise HardwareError(f"layer '{name}': kernel {kh}x{kw} does not fit input {shape} with padding {self.padding}")
        for what, size in (("input", self.in_features), ("output", self.out_features)):
            if size > MAX_FEATURES:
                raise HardwareError(f"layer '{name}': {size} {what} neurons, more than the limit {MAX_FEATURES}")
        if self.diagonal:
            off = weight[:, :, 0, 0] - np.diag(np.diag(weight[:, :, 0, 0])) if weight.shape[0] == weight.shape[1] else None
            if (weight.shape[2:] != (1, 1) or off is None or np.any(off) or pairs["stride"] != (1, 1)
                    or pairs["padding"] != (0, 0)):
                raise HardwareError(f"layer '{name}': a diagonal input needs a square 1x1 kernel without off-diagonal "
                                    f"weights, stride 1 and no padding, got {weight.shape}, stride {pairs['stride']}, "
                                    f"padding {pairs['padding']}")
        theta = None if self.theta is None else np.asarray(self.theta)
        kernel = LayerConfig(name, weight.reshape(weight.shape[0], -1), self.t_in, self.t_out, theta,
                             np.asarray(self.v0), self.lanes, t_min=self.t_min)
        if kernel.t_min < 0 and not self.mac:
            raise HardwareError(f"layer '{name}': signed input counts (t_min={kernel.t_min}, an analog input) need mac "
                                "(each tap adds pixel * weight once); a conv engine without it repeats counts")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "t_in", kernel.t_in)
        object.__setattr__(self, "t_min", kernel.t_min)
        object.__setattr__(self, "t_out", kernel.t_out)
        object.__setattr__(self, "theta", kernel.theta)
        object.__setattr__(self, "v0", kernel.v0)
        object.__setattr__(self, "lanes", kernel.lanes)

    @classmethod
    def from_int_layer(cls, layer, lanes: int | None = None, input_layout: str = "chw",
                       pooled: bool = False, analog: bool = False) -> ConvConfig:
        """From a ``pascal_ref.golden.quantize.IntNeuronLayer`` with one Conv2d synapse.

        ``pooled``: the synapse's pooling pre-ops run in pooling units in front of the engine
        (:func:`pascal_hdl.model.pool.pool_chain`); the engine then reads their ``"hwc"`` output
        (``input_layout`` is ignored). Without it a pre-op is refused. ``analog``: the layer reads the
        signed integer pixels of an analog input (``t_min`` = the synapse's ``input_min`` < 0, with
        :attr:`mac`); otherwise an input below 0 is refused."""
        if len(layer.synapses) != 1:
            raise HardwareError(f"layer '{layer.name}': {len(layer.synapses)} synapses (residual block); not a plain conv")
        synapse = layer.synapses[0]
        if synapse.op.kind != "conv":
            raise HardwareError(f"layer '{layer.name}': {type(synapse.op).__name__} is not a Conv2d")
        if pooled and synapse.pre_ops:
            input_layout = "hwc"
        elif synapse.pre_ops:
            raise HardwareError(f"layer '{layer.name}': {', '.join(type(p).__name__ for p in synapse.pre_ops)} "
                                "before the Conv2d needs a pooling unit")
        if layer.is_readout:
            raise HardwareError(f"layer '{layer.name}': a Conv2d readout is not supported")
        if synapse.input_min != 0 and not analog:
            raise HardwareError(f"layer '{layer.name}': input levels from {synapse.input_min}; the engine takes counts >= 0")
        out = int(layer.output_shape[0])
        lanes = min(out, DEFAULT_HIDDEN_LANES if lanes is None else int(lanes))
        return cls(_identifier(layer.name), np.asarray(synapse.weight), tuple(synapse.op_input_shape),
                   synapse.op.stride, synapse.op.padding, int(synapse.input_max), layer.levels,
                   np.asarray(layer.theta), np.asarray(layer.v0), lanes, input_layout,
                   mac=bool(analog), t_min=min(0, int(synapse.input_min)) if analog else 0)

    # -- geometry

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    @property
    def out_height(self) -> int:
        return (self.input_shape[1] + 2 * self.padding[0] - self.weight.shape[2]) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        return (self.input_shape[2] + 2 * self.padding[1] - self.weight.shape[3]) // self.stride[1] + 1

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, self.out_height, self.out_width)

    @property
    def positions(self) -> int:
        return self.out_height * self.out_width

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def out_features(self) -> int:
        return self.out_channels * self.positions

    @property
    def groups(self) -> int:
        return self.kernel.groups

    @property
    def row_taps(self) -> tuple[Taps, ...]:
        return axis_taps(self.input_shape[1], self.weight.shape[2], self.stride[0], self.padding[0], self.out_height)

    @property
    def col_taps(self) -> tuple[Taps, ...]:
        return axis_taps(self.input_shape[2], self.weight.shape[3], self.stride[1], self.padding[1], self.out_width)

    def decode(self, index: int) -> tuple[int, int, int]:
        """``(c, y, x)`` of a flat input index in :attr:`input_layout`."""
        return decode_index(self.input_shape, self.input_layout, index)

    @property
    def dividers(self) -> tuple[MagicDivider, MagicDivider]:
        """The two exact constant divisions of the index decode (:func:`index_dividers`)."""
        return index_dividers(self.input_shape, self.input_layout)

    # -- widths and memories (from the per-position dense view; the names of LayerConfig, so the
    #    generator's manifest and memory images read a conv stage as they read a Linear one)

    is_readout = False

    @property
    def weight_width(self) -> int:
        return self.kernel.weight_width

    @property
    def v0_width(self) -> int:
        return self.kernel.v0_width

    @property
    def theta_width(self) -> int:
        return self.kernel.theta_width

    @property
    def neuron(self):
        """The neuron units' widths (:class:`~pascal_hdl.widths.NeuronWidths`)."""
        return self.kernel.neuron

    @property
    def current_range(self) -> tuple[int, int]:
        """Bounds of every partial sum of a neuron's input (a border neuron sees part of the kernel)."""
        return self.kernel.current_range

    @property
    def count_in_width(self) -> int:
        return self.kernel.count_in_width

    def weight_words(self) -> list[int]:
        """Weight memory image: word ``((c*kh + ky)*kw + kx)*groups + g`` holds ``W[g*lanes + k, c, ky, kx]``
        in lane ``k``."""
        return self.kernel.weight_words()

    def param_words(self) -> list[int]:
        """Per-group neuron parameters (lane ``k``: ``v0`` low bits, ``theta``), as the Linear engine's."""
        return self.kernel.param_words()

    @property
    def acc_width(self) -> int:
        return self.kernel.acc_width

    @property
    def acc_depth(self) -> int:
        """Accumulator words: one per output position and group (word ``p*groups + g``)."""
        return self.positions * self.groups

    @property
    def clear_cycles(self) -> int:
        """Cycles of the engine's CLEAR phase after a reset (and at power-up): one accumulator word
        zeroed per cycle (in both banks at once when :attr:`banks` is 2), ``acc_depth`` cycles with
        ``i.ready`` low."""
        return self.acc_depth

    @property
    def weight_depth(self) -> int:
        return self.kernel.weight_depth

    @property
    def weight_bits_total(self) -> int:
        return self.kernel.weight_bits_total

    @property
    def acc_bits_total(self) -> int:
        """Accumulator RAM bits, every bank."""
        return self.banks * self.acc_depth * self.lanes * self.acc_width

    @property
    def issue_groups(self) -> int:
        """Accumulator words updated per spike and tap: ``groups`` (1 for a :attr:`diagonal` input)."""
        return 1 if self.diagonal else self.groups

    @property
    def inputs(self) -> tuple[ConvConfig, ...]:
        """The input ports' geometries, in the order the engine accumulates them (here: one, ``i``)."""
        return (self,)

    port_names = ("i",)

    def weight_base(self, port: int) -> int:
        """First weight memory word of input ``port`` (one port here: 0)."""
        return 0

    def issues(self, count: int) -> int:
        """Times a burst of ``count`` spikes goes through its taps: ``count`` (:attr:`mac`: once)."""
        return int(count != 0) if self.mac else count

    def event_work(self, index: int, count: int) -> int:
        """Issue cycles of one valid event: ``issues(count) * ny * nx * groups`` (0: reaches nothing; a
        :attr:`diagonal` input: ``issues(count)``)."""
        _, y, x = self.decode(index)
        return self.issues(count) * self.row_taps[y].n * self.col_taps[x].n * self.issue_groups

    # -- behavioural model

    def _check(self, counts) -> np.ndarray:
        return check_counts(f"layer '{self.name}'", counts, self.in_features, self.t_in, one_sample=True,
                            t_min=self.t_min)

    def scatter(self, total: np.ndarray, index: int, count: int) -> None:
        """Add ``count`` spikes of input ``index`` to ``total`` ``(positions, O)`` through every valid tap."""
        c, y, x = self.decode(index)
        rows, cols = self.row_taps[y], self.col_taps[x]
        (sh, sw), wo = self.stride, self.out_width
        for iy in range(rows.n):
            for ix in range(cols.n):
                ky, kx = rows.k0 + iy * sh, cols.k0 + ix * sw
                total[(rows.o0 - iy) * wo + cols.o0 - ix] += count * self.weight[:, c, ky, kx]

    def totals(self, counts) -> np.ndarray:
        """Total input current ``S`` per output neuron, ``(batch, positions, O)``, by event scatter."""
        counts = self._check(counts)
        out = np.zeros((len(counts), self.positions, self.out_channels), dtype=np.int64)
        for b, sample in enumerate(counts):
            for index in np.flatnonzero(sample):
                self.scatter(out[b], int(index), int(sample[index]))
        return out

    def forward(self, counts) -> np.ndarray:
        """Output counts ``(batch, out_features)`` in ``"hwc"`` order for input counts in :attr:`input_layout`."""
        total = self.totals(counts)
        return np.clip((total + self.v0) // self.theta, 0, self.t_out).reshape(len(total), -1)

    def synaptic_events(self, counts) -> np.ndarray:
        """Per sample: additions of one weight to one neuron (every spike times every output it reaches; an
        analog pixel, :attr:`t_min` < 0, is one addition of ``pixel * weight`` per output it reaches)."""
        counts = self._check(counts)
        counts = (counts != 0).astype(np.int64) if self.t_min < 0 else counts
        return counts @ self._reach() * (1 if self.diagonal else self.out_channels)

    def _reach(self) -> np.ndarray:
        """Per input: the output positions it reaches (``ny * nx``)."""
        return np.array([self.row_taps[y].n * self.col_taps[x].n
                         for y, x in (self.decode(j)[1:] for j in range(self.in_features))], dtype=np.int64)

    def ideal_cycles(self, counts) -> np.ndarray:
        """Additions divided by lanes (float): the synaptic events, or with :attr:`mac` one addition of
        ``count * weight`` per output a nonzero input reaches."""
        return self.additions(counts) / self.lanes

    def additions(self, counts) -> np.ndarray:
        """Per sample, the weight additions the engine makes: :meth:`synaptic_events`, each nonzero input
        counted once with :attr:`mac`."""
        counts = self._check(counts)
        return self.synaptic_events((counts != 0).astype(np.int64) if self.mac else counts)

    def accumulate_cycles(self, counts) -> np.ndarray:
        """Issue cycles per sample: ``sum_events issues(count) * ny * nx * groups`` (padding lanes included)."""
        counts = self._check(counts)
        return ((counts != 0).astype(np.int64) if self.mac else counts) @ self._reach() * self.issue_groups

    def neuron_cycles(self) -> int:
        """Cycles of the neuron sequencer with an emitter that keeps up: READ 1, then per accumulator
        word START 1, RUN T2, LATCH 1."""
        return 1 + self.acc_depth * (2 + self.t_out)

    @property
    def emitter_keeps_up(self) -> bool:
        """A word never has more events to send (at most ``lanes``) than the ``T2 + 2`` cycles the units
        take for the next word, so LATCH never waits (with a sink always ready)."""
        return self.lanes <= self.t_out + 2

    def stream_cycles(self, counts) -> np.ndarray:
        """Cycles per sample for a source offering :func:`sample_events` back to back and a sink always
        ready, from the acceptance of the first event to the cycle after the last output is taken:
        2 (input register, decode) + the issue cycles (a last event that does no work: 1) +
        :meth:`neuron_cycles` + the events of the last word (sent after its LATCH).

        Exact when the issue stage never waits for the decode stage and LATCH never waits for the
        emitter (:attr:`reaches_everything` and :attr:`emitter_keeps_up`); a lower bound otherwise.
        The issue stage waits only when an event that reaches no output (dropped at decode, one
        cycle) follows an event of one issue cycle; :meth:`expected_cycles` counts everything."""
        counts = self._check(counts)
        work = self.accumulate_cycles(counts)
        last_idle = np.array([1 if self._last_event_idle(s) else 0 for s in counts], dtype=np.int64)
        outputs = self.forward(counts)
        last_word = self.out_channels - (self.groups - 1) * self.lanes
        tail = np.count_nonzero(outputs[:, self.out_features - last_word:-1], axis=1) + 1
        return 2 + work + last_idle + self.neuron_cycles() + tail

    def worst_case_cycles(self) -> int:
        """Bound of the cycles of any sample (as :meth:`stream_cycles` counts them) sent as
        :func:`sample_events` does, with a sink always ready: ``2 + sum_j issues(T1) * reach_j * groups``
        (every count at ``T1``) ``+ in_features`` (at most one waiting cycle per event: a decode
        bubble, or the launch of a last event without work) ``+ 1 + acc_depth * max(T2 + 2, lanes)``
        (a word's LATCH follows the one before after ``T2 + 2`` cycles, or when the emitter has sent
        its at most ``lanes`` events) ``+ lanes`` (the last word's events)."""
        reach = sum(self.row_taps[y].n * self.col_taps[x].n
                    for y, x in (self.decode(j)[1:] for j in range(self.in_features)))
        return (2 + self.issues(self.t_in) * reach * self.groups + self.in_features
                + 1 + self.acc_depth * max(self.t_out + 2, self.lanes) + self.lanes)

    def expected_cycles(self, counts) -> np.ndarray:
        """Exact cycles per sample (as :meth:`stream_cycles` counts them), from the cycle model."""
        return run_conv_model(self, counts).cycles

    @property
    def reaches_everything(self) -> bool:
        """Every input position reaches at least one output (then :meth:`stream_cycles` is exact)."""
        return all(t.n for t in self.row_taps) and all(t.n for t in self.col_taps)

    def _last_event_idle(self, sample) -> bool:
        last = sample_events(sample)[-1]
        return self.event_work(last["index"], last["count"]) == 0


class ConvEngineModel:
    """Cycle-level model of :class:`~pascal_hdl.gateware.conv.ConvEngine` (same handshakes and cycles).

    Pipeline: input register ``B`` (one event) -> decode into register ``D``
    (rules checked, ``(c, y, x)`` and tap counts looked up; an event that does
    no work and is not last is dropped here) -> issue: ``max(1, work)`` cycles,
    the first in the cycle ``D`` is launched, so back-to-back events leave no
    gap. Decoding stops after a ``last`` event until the sample is emitted.
    Neuron side: the accumulator words go through the units one after the
    other (READ once, then per word START, RUN ``T2``, LATCH: ``T2 + 2``
    cycles); at LATCH the counts are handed to the emitter, which sends the
    word's nonzero counts (and the layer's last neuron) one per cycle while
    the units run the next word. LATCH waits while the emitter is still busy
    with the word before (it frees in the cycle its last event is taken).
    Per cycle: read :meth:`in_ready`, :meth:`out_valid`, :attr:`out_payload`,
    then :meth:`step`.

    A new model is the engine after a reset (or at power-up): CLEAR, one
    accumulator word zeroed per cycle for :attr:`ConvConfig.clear_cycles`
    (``acc_depth``) cycles with every input port not ready, then ACCUMULATE;
    :meth:`reset` returns it there (the engine's ``rst``, at any cycle).

    Double-buffered (``config.banks == 2``): :attr:`phase` is the neuron side
    only (ACCUMULATE: idle). The input side decodes and issues whenever it is
    not :attr:`full`; the cycle a sample's input ends (its last issue cycle, or
    the launch of a last event without work) it is handed over if the neuron
    side is idle in that cycle (the banks swap, the neuron side goes to READ,
    the ports expect a new sample from the next cycle), else the input side
    is :attr:`full` and the hand-over happens in the first cycle the neuron
    side is idle (after its DRAIN). So the input side of sample n+1 runs while
    the neurons emit sample n from the other bank.
    """

    def __init__(self, config: ConvConfig):
        self.config = check_type("ConvEngineModel", "config", config, ConvConfig)
        self.reset()

    def reset(self):
        """The engine's ``rst``: the state of a new model (CLEAR, then an empty engine)."""
        config = self.config
        self.ports = config.inputs
        self.phase = ConvPhase.CLEAR
        self.total = np.zeros((config.positions, config.out_channels), dtype=np.int64)
        self.buffers = [None] * len(self.ports)   # one input register per port
        self.decoded = None
        self.busy_cycles = 0
        self.pending_last = False
        self.port = 0                             # the port being decoded (all ports' last seen: len(ports))
        self.first = [True] * len(self.ports)
        self.prev_index = [-1] * len(self.ports)
        self.word = self.group = self.neuron = self.run_steps = 0
        self.outputs = None
        self.rejected = 0
        self.emit_mask = [False] * config.lanes   # lanes of the handed-over word still to send
        self.emit_counts = [0] * config.lanes
        self.emit_base = 0                        # output index of lane 0 of that word
        self.full = False                         # banks == 2: a complete sample waits for the neuron side

    @property
    def buffer(self):
        """The input register of the port being decoded (None: empty or every port done)."""
        return self.buffers[self.port] if self.port < len(self.ports) else None

    @property
    def last_seen(self) -> bool:
        return self.port == len(self.ports)

    # -- handshakes (state only)

    def _accumulating(self) -> bool:
        """The input side decodes and issues in this cycle (one bank: only while the neurons are idle)."""
        if self.config.banks == 1:
            return self.phase == ConvPhase.ACCUMULATE
        return self.phase != ConvPhase.CLEAR and not self.full

    def _launching(self) -> bool:
        return self.decoded is not None and self._accumulating() and self.busy_cycles == 0

    def _decoding(self) -> bool:
        return (self.buffer is not None and self._accumulating()
                and (self.decoded is None or self._launching()))

    def port_ready(self, port: int) -> bool:
        """``ready`` of input port ``port`` (index into :attr:`ports`)."""
        if self.phase == ConvPhase.CLEAR:
            return False
        return self.buffers[port] is None or (self._decoding() and self.port == port)

    def in_ready(self) -> bool:
        return self.port_ready(self.config.port_names.index("i"))

    def _bad(self, event) -> bool:
        port, geometry = self.port, self.ports[self.port]
        return breaks_stream_rule(event, geometry.in_features, geometry.t_in, not self.first[port],
                                  self.prev_index[port], geometry.t_min)

    def rejecting(self) -> bool:
        """The ``rejected`` output in this cycle."""
        return self._decoding() and self._bad(self.buffer)

    def _emit_lane(self) -> int | None:
        return next((k for k, pending in enumerate(self.emit_mask) if pending), None)

    def out_valid(self) -> bool:
        return self._emit_lane() is not None

    @property
    def out_payload(self):
        k = self._emit_lane()
        n = self.emit_base + (k or 0)
        return {"index": n, "count": self.emit_counts[k or 0], "last": n == self.config.out_features - 1}

    # -- one cycle

    def _finish_input(self, phase):
        """The sample's input has ended in this cycle; ``phase``: the neuron side's at the cycle's start."""
        if self.config.banks == 1 or phase == ConvPhase.ACCUMULATE:
            self._hand_over()
        else:
            self.full = True

    def _hand_over(self):
        """The accumulated sample goes to the neuron side (two banks: they swap; the ports take a new sample)."""
        cfg = self.config
        self.phase, self.word, self.group, self.neuron = ConvPhase.READ, 0, 0, 0
        self.outputs = np.clip((self.total + cfg.v0) // cfg.theta, 0, cfg.t_out).reshape(-1)
        self.total = np.zeros_like(self.total)
        if cfg.banks == 2:
            self.full, self.port = False, 0
            self.first, self.prev_index = [True] * len(self.ports), [-1] * len(self.ports)

    def _lanes_here(self) -> int:
        cfg = self.config
        return cfg.out_channels - self.group * cfg.lanes if self.group == cfg.groups - 1 else cfg.lanes

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(input accepted, output taken)``."""
        inputs = [(False, None)] * len(self.ports)
        inputs[self.config.port_names.index("i")] = (in_valid, in_payload)
        accepted, taken = self.step_ports(inputs, out_ready)
        return accepted[self.config.port_names.index("i")], taken

    def step_ports(self, inputs, out_ready: bool = True) -> tuple[list[bool], bool]:
        """Advance one clock cycle with ``(valid, payload)`` per port (in :attr:`ports` order); return
        ``(accepted per port, output taken)``."""
        cfg = self.config
        accepted = [bool(valid) and self.port_ready(p) for p, (valid, _) in enumerate(inputs)]
        taken = bool(out_ready) and self.out_valid()
        launching, decoding, phase = self._launching(), self._decoding(), self.phase
        # The emitter is free in this cycle if it has nothing left after this cycle's hand-over.
        free = sum(self.emit_mask) == (1 if taken else 0)

        if self.full and phase == ConvPhase.ACCUMULATE:
            self._hand_over()
        if launching:
            event, self.decoded = self.decoded, None
            geometry = self.ports[event["port"]]
            if event["count"]:
                geometry.scatter(self.total, event["index"], event["count"])
            work = geometry.event_work(event["index"], event["count"]) if event["count"] else 0
            self.busy_cycles, self.pending_last = max(work - 1, 0), event["last"]
            if work <= 1 and event["last"]:
                self._finish_input(phase)
        elif self.busy_cycles:
            self.busy_cycles -= 1
            if self.busy_cycles == 0 and self.pending_last:
                self._finish_input(phase)

        if decoding:
            port, geometry = self.port, self.ports[self.port]
            event = {key: int(self.buffer[key]) for key in ("index", "count")}
            last = bool(self.buffer["last"])
            if self._bad(event):
                self.rejected += 1
                event["count"] = 0
            else:
                self.first[port], self.prev_index[port] = False, event["index"]
            work = geometry.event_work(event["index"], event["count"]) if event["count"] else 0
            final = last and port == len(self.ports) - 1     # the last event of the last port ends the input
            event.update(port=port, last=final)
            if work or final:
                self.decoded = event
            self.buffers[port] = None
            if last:
                self.port += 1
        for port, (valid, payload) in enumerate(inputs):
            if accepted[port]:
                self.buffers[port] = {key: payload[key] for key in ("index", "count", "last")}

        if taken:
            self.emit_mask[self._emit_lane()] = False
        if phase == ConvPhase.CLEAR:
            if self.word == cfg.acc_depth - 1:
                self.phase, self.word = ConvPhase.ACCUMULATE, 0
            else:
                self.word += 1
        elif phase == ConvPhase.READ:
            self.phase = ConvPhase.START
        elif phase == ConvPhase.START:
            self.phase, self.run_steps = ConvPhase.RUN, 0
        elif phase == ConvPhase.RUN:
            self.run_steps += 1
            if self.run_steps == cfg.t_out:
                self.phase = ConvPhase.LATCH
        elif phase == ConvPhase.LATCH and free:
            lanes_here, base = self._lanes_here(), self.neuron
            self.emit_counts = [int(self.outputs[base + k]) if k < lanes_here else 0 for k in range(cfg.lanes)]
            self.emit_mask = [k < lanes_here and (self.emit_counts[k] != 0 or base + k == cfg.out_features - 1)
                              for k in range(cfg.lanes)]
            self.emit_base = base
            self.neuron += lanes_here
            if self.word == cfg.acc_depth - 1:
                self.phase = ConvPhase.DRAIN
            else:
                self.word += 1
                self.group = 0 if self.group == cfg.groups - 1 else self.group + 1
                self.phase = ConvPhase.START
        elif phase == ConvPhase.DRAIN and free:
            self.phase = ConvPhase.ACCUMULATE
            if cfg.banks == 1:   # two banks: the ports were reset at the hand-over
                self.port = 0
                self.first, self.prev_index = [True] * len(self.ports), [-1] * len(self.ports)
        return accepted, taken


class ConvRun(NamedTuple):
    """Per sample: output counts ``(batch, out_features)`` (``"hwc"``) and cycles (first event accepted ->
    the cycle after the last output is taken)."""

    counts: np.ndarray
    cycles: np.ndarray


def run_conv_model(config: ConvConfig, counts, max_cycles: int = 10_000_000) -> ConvRun:
    """Run :class:`ConvEngineModel` on samples with a source offering the events back to back and a
    sink always ready, one sample at a time."""
    counts = config._check(counts)
    return ConvRun(*run_samples(lambda: ConvEngineModel(config), counts, config.out_features, "conv engine model",
                                max_cycles))
