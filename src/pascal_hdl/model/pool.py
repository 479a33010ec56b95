"""Configuration and cycle-level Python model of the pooling unit (:class:`pascal_hdl.gateware.pool.PoolUnit`);
no Amaranth.

What the unit computes, on spike trains in count form (``docs/semantics.md`` §7):

* ``"max"`` (``MaxPool2d``): a burst train with count ``c`` spikes in steps
  ``0..c-1``, so the element-wise maximum of the trains in a window is the
  burst of the maximum count: the pooled neuron sends ``max`` of the counts,
  exactly, as the contract says;
* ``"sum"`` (``AvgPool2d``, ``GlobalAvgPool``): the integer model sums (the
  ``1/k`` is folded into the next layer's integer weights by the quantizer),
  so the pooled count is the sum of the window's counts, in ``0..k*T``.

Windows have no padding; ``stride`` may be smaller than the kernel
(overlapping windows). Like the Conv2d engine, an input event ``(c, y, x)``
updates every pooled cell whose window contains it, through the row and
column tap tables of :func:`pascal_hdl.model.conv.axis_taps` (padding 0), one
cell per cycle, read-modify-write (``max`` or ``+``). After the sample's last
event the unit sweeps its cells in ``"hwc"`` order and sends the nonzero ones
(and always the last cell, with ``last``), clearing them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pascal_hdl.config import MAX_FEATURES, MAX_LEVELS, HardwareError, _identifier, check_banks, check_counts
from pascal_hdl.model.conv import (
    LAYOUTS,
    MagicDivider,
    Taps,
    axis_taps,
    decode_index,
    index_dividers,
)
from pascal_hdl.model.engine import Phase, run_samples, sample_events
from pascal_hdl.widths import check_type

__all__ = ["REDUCES", "PoolConfig", "PoolUnitModel", "pool_chain", "run_pool_model"]

REDUCES = ("max", "sum")


@dataclass(frozen=True, eq=False)
class PoolConfig:
    """One pooling unit.

    Parameters
    ----------
    name : str
        Name (signal names, errors).
    input_shape : ``(C, H, W)``
        Shape of the input map.
    kernel, stride : ``(kh, kw)``, ``(sh, sw)``
        Window and step (no padding), as :class:`pascal_ref.ir.layers.MaxPool2d`.
    reduce : ``"max"`` or ``"sum"``
        Burst maximum or integer sum (average pooling of the integer model).
    t_in : int
        Input counts lie in ``[0, t_in]``.
    input_layout : ``"hwc"`` (a conv engine's output) or ``"chw"``
        Order of the flat input index; the output is ``"hwc"``.
    banks : 1 or 2
        Cell memories. 2 (double-buffered): the unit pools sample n+1 into one
        bank while it sweeps and emits sample n from the other (period
        ``max(updates, sweep)`` instead of their sum), at twice the cell RAM.
    """

    name: str
    input_shape: tuple
    kernel: tuple
    stride: tuple | None = None
    reduce: str = "max"
    t_in: int = 1
    input_layout: str = "hwc"
    banks: int = 1

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name.isidentifier():
            raise HardwareError(f"pooling unit name must be an identifier (it names signals), got {name!r}")
        object.__setattr__(self, "banks", check_banks(f"pooling '{name}'", self.banks))
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise HardwareError(f"pooling '{name}': input shape must be (C, H, W) with sizes >= 1, got {self.input_shape}")
        object.__setattr__(self, "input_shape", shape)
        for key in ("kernel", "stride"):
            value = self.kernel if key == "stride" and self.stride is None else getattr(self, key)
            value = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
            if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in value):
                raise HardwareError(f"pooling '{name}': {key} must be two integers >= 1, got {getattr(self, key)!r}")
            object.__setattr__(self, key, tuple(int(v) for v in value))
        if self.reduce not in REDUCES:
            raise HardwareError(f"pooling '{name}': reduce must be one of {REDUCES}, got {self.reduce!r}")
        if self.input_layout not in LAYOUTS:
            raise HardwareError(f"pooling '{name}': input_layout must be one of {LAYOUTS}, got {self.input_layout!r}")
        if isinstance(self.t_in, bool) or not isinstance(self.t_in, (int, np.integer)) or not 1 <= self.t_in <= MAX_LEVELS:
            raise HardwareError(f"pooling '{name}': t_in must be an integer in [1, {MAX_LEVELS}], got {self.t_in!r}")
        object.__setattr__(self, "t_in", int(self.t_in))
        if self.out_height < 1 or self.out_width < 1:
            raise HardwareError(f"pooling '{name}': kernel {self.kernel} larger than input {shape}")
        if self.in_features > MAX_FEATURES:
            raise HardwareError(f"pooling '{name}': {self.in_features} inputs, more than the limit {MAX_FEATURES}")

    @classmethod
    def from_pre_op(cls, pre_op, input_shape, t_in: int, input_layout: str = "hwc") -> PoolConfig:
        """From a golden pre-op with a pooling window (``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool``)."""
        window = pre_op.window(tuple(input_shape))
        if window is None:
            raise HardwareError(f"layer '{pre_op.name}': {type(pre_op).__name__} has no pooling window")
        reduce = {"max": "max", "mean": "sum"}[window.reduce]
        return cls(_identifier(pre_op.name), tuple(input_shape), window.kernel, window.stride, reduce, int(t_in),
                   input_layout)

    @property
    def out_height(self) -> int:
        return (self.input_shape[1] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self) -> int:
        return (self.input_shape[2] - self.kernel[1]) // self.stride[1] + 1

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.input_shape[0], self.out_height, self.out_width)

    @property
    def in_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def out_features(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def t_out(self) -> int:
        """Largest output count: ``t_in`` (max) or ``t_in * kh * kw`` (sum)."""
        return self.t_in if self.reduce == "max" else self.t_in * self.kernel[0] * self.kernel[1]

    @property
    def clear_cycles(self) -> int:
        """Cycles of the unit's CLEAR phase after a reset (and at power-up): one cell zeroed per cycle,
        ``out_features`` cycles with ``i.ready`` low (both banks at once when :attr:`banks` is 2)."""
        return self.out_features

    @property
    def row_taps(self) -> tuple[Taps, ...]:
        return axis_taps(self.input_shape[1], self.kernel[0], self.stride[0], 0, self.out_height)

    @property
    def col_taps(self) -> tuple[Taps, ...]:
        return axis_taps(self.input_shape[2], self.kernel[1], self.stride[1], 0, self.out_width)

    def decode(self, index: int) -> tuple[int, int, int]:
        return decode_index(self.input_shape, self.input_layout, index)

    @property
    def dividers(self) -> tuple[MagicDivider, MagicDivider]:
        return index_dividers(self.input_shape, self.input_layout)

    def event_work(self, index: int) -> int:
        """Cells an input event updates (its windows; 0: cropped by the window grid)."""
        _, y, x = self.decode(index)
        return self.row_taps[y].n * self.col_taps[x].n

    def cells(self, index: int) -> list[int]:
        """The ``"hwc"`` indices of the pooled cells whose window contains input ``index``, in issue order."""
        c, y, x = self.decode(index)
        rows, cols = self.row_taps[y], self.col_taps[x]
        channels, wo = self.input_shape[0], self.out_width
        return [((rows.o0 - iy) * wo + cols.o0 - ix) * channels + c for iy in range(rows.n) for ix in range(cols.n)]

    def _check(self, counts) -> np.ndarray:
        return check_counts(f"pooling '{self.name}'", counts, self.in_features, self.t_in, one_sample=True)

    def update(self, cells: np.ndarray, index: int, count: int) -> None:
        for cell in self.cells(index):
            cells[cell] = max(cells[cell], count) if self.reduce == "max" else cells[cell] + count

    def forward(self, counts) -> np.ndarray:
        """Pooled counts ``(batch, out_features)`` in ``"hwc"`` order, by event scatter."""
        counts = self._check(counts)
        out = np.zeros((len(counts), self.out_features), dtype=np.int64)
        for b, sample in enumerate(counts):
            for index in np.flatnonzero(sample):
                self.update(out[b], int(index), int(sample[index]))
        return out

    def expected_cycles(self, counts) -> np.ndarray:
        """Exact cycles per sample (first event accepted -> the cycle after the last output is taken)
        with a source offering :func:`sample_events` back to back and a sink always ready."""
        return run_pool_model(self, counts).cycles

    def worst_case_cycles(self) -> int:
        """Bound of the cycles of any sample sent as :func:`sample_events` does, with a sink always
        ready: ``2 + sum_j work_j + in_features`` (at most one waiting cycle per event) ``+ 1 + out_features``."""
        return 2 + sum(self.event_work(j) for j in range(self.in_features)) + self.in_features + 1 + self.out_features

    def stream_cycles(self, counts) -> np.ndarray:
        """``2 + sum_events work (a last event without work: 1) + 1 + out_features``: input register and
        decode, one cycle per cell update, READ, one EMIT cycle per cell; exact when the update stage
        never waits for the decode stage (every input in some window, or every work >= 2)."""
        counts = self._check(counts)
        total = []
        for sample in counts:
            events = sample_events(sample)
            work = sum(self.event_work(e["index"]) for e in events if e["count"])
            last = events[-1]
            idle = 1 if (self.event_work(last["index"]) == 0 or last["count"] == 0) else 0
            total.append(2 + work + idle + 1 + self.out_features)
        return np.array(total, dtype=np.int64)


def pool_chain(synapse, t_in: int, input_layout: str = "hwc") -> tuple[list[PoolConfig], tuple]:
    """Pooling units for the pre-ops of a golden ``IntSynapse`` (``MaxPool2d``, ``AvgPool2d``,
    ``GlobalAvgPool``, a final ``Flatten``), in order, for source trains of ``t_in`` steps arriving
    in ``input_layout``; returns the units and the shape after them (``Flatten`` keeps the
    ``"hwc"`` order: the Linear after it permutes its columns, :func:`~pascal_hdl.model.conv.hwc_permutation`).
    A ``HardwareError`` names any other pre-op."""
    units, shape, layout = [], tuple(synapse.input_shape), input_layout
    pre_ops = list(synapse.pre_ops)
    for position, pre_op in enumerate(pre_ops):
        if pre_op.flattens:
            if position != len(pre_ops) - 1:
                raise HardwareError(f"layer '{pre_op.name}': Flatten must be the last pre-op of a synapse")
            break
        if pre_op.window(shape) is None:
            raise HardwareError(f"layer '{pre_op.name}': {type(pre_op).__name__} is not supported by the hardware")
        unit = PoolConfig.from_pre_op(pre_op, shape, t_in, layout)
        units.append(unit)
        shape, t_in, layout = unit.output_shape, unit.t_out, "hwc"
    return units, shape


class PoolUnitModel:
    """Cycle-level model of :class:`~pascal_hdl.gateware.pool.PoolUnit` (the front end of
    :class:`~pascal_hdl.model.conv.ConvEngineModel`: input register, decode, issue; then READ and
    one EMIT cycle per cell). Per cycle: read :meth:`in_ready`, :meth:`out_valid`,
    :attr:`out_payload`, then :meth:`step`. A new model is the unit after a reset (or at
    power-up): CLEAR, one cell zeroed per cycle for :attr:`PoolConfig.clear_cycles`
    (``out_features``) cycles with ``in_ready()`` false; :meth:`reset` returns it there.

    Double-buffered (``config.banks == 2``): :attr:`phase` is the sweep side only (ACCUMULATE:
    idle); the input side decodes and updates whenever it is not :attr:`full`. The cycle a sample's
    input ends it is handed over if the sweep side is idle in that cycle (banks swap, READ next,
    the input side takes a new sample from the next cycle), else :attr:`full` until the first cycle
    the sweep side is idle."""

    def __init__(self, config: PoolConfig):
        self.config = check_type("PoolUnitModel", "config", config, PoolConfig)
        self.reset()

    def reset(self):
        """The unit's ``rst``: the state of a new model (CLEAR, then an empty unit)."""
        config = self.config
        self.phase = Phase.CLEAR
        self.cells = np.zeros(config.out_features, dtype=np.int64)
        self.outputs = None
        self.buffer = None
        self.decoded = None
        self.busy_cycles = 0
        self.pending_last = False
        self.last_seen = False
        self.first = True
        self.prev_index = -1
        self.neuron = 0
        self.rejected = 0
        self.full = False          # banks == 2: a complete sample waits for the sweep side

    def _accumulating(self) -> bool:
        """The input side decodes and updates in this cycle (one bank: only while the sweep side is idle)."""
        if self.config.banks == 1:
            return self.phase == Phase.ACCUMULATE
        return self.phase != Phase.CLEAR and not self.full

    def _launching(self) -> bool:
        return self.decoded is not None and self._accumulating() and self.busy_cycles == 0

    def _decoding(self) -> bool:
        return (self.buffer is not None and self._accumulating() and not self.last_seen
                and (self.decoded is None or self._launching()))

    def in_ready(self) -> bool:
        return self.phase != Phase.CLEAR and (self.buffer is None or self._decoding())

    def _bad(self, event) -> bool:
        cfg = self.config
        return (event["index"] >= cfg.in_features or event["count"] > cfg.t_in
                or (not self.first and event["index"] <= self.prev_index))

    def rejecting(self) -> bool:
        return self._decoding() and self._bad(self.buffer)

    def out_valid(self) -> bool:
        if self.phase != Phase.EMIT:
            return False
        return int(self.outputs[self.neuron]) != 0 or self.neuron == self.config.out_features - 1

    @property
    def out_payload(self):
        n = self.neuron
        return {"index": n, "count": int(self.outputs[n]), "last": n == self.config.out_features - 1}

    def _finish_input(self, phase):
        """The sample's input has ended in this cycle; ``phase``: the sweep side's at the cycle's start."""
        if self.config.banks == 1 or phase == Phase.ACCUMULATE:
            self._hand_over()
        else:
            self.full = True

    def _hand_over(self):
        self.phase, self.neuron = Phase.READ, 0
        self.outputs, self.cells = self.cells, np.zeros_like(self.cells)
        if self.config.banks == 2:
            self.full, self.first, self.last_seen, self.prev_index = False, True, False, -1

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        """Advance one clock cycle; return ``(input accepted, output taken)``."""
        cfg = self.config
        accepted = bool(in_valid) and self.in_ready()
        taken = bool(out_ready) and self.out_valid()
        launching, decoding, phase = self._launching(), self._decoding(), self.phase

        if self.full and phase == Phase.ACCUMULATE:
            self._hand_over()
        if launching:
            event, self.decoded = self.decoded, None
            work = cfg.event_work(event["index"]) if event["count"] else 0
            if work:
                cfg.update(self.cells, event["index"], event["count"])
            self.busy_cycles, self.pending_last = max(work - 1, 0), event["last"]
            if work <= 1 and event["last"]:
                self._finish_input(phase)
        elif self.busy_cycles:
            self.busy_cycles -= 1
            if self.busy_cycles == 0 and self.pending_last:
                self._finish_input(phase)

        if decoding:
            event = {"index": int(self.buffer["index"]), "count": int(self.buffer["count"]),
                     "last": bool(self.buffer["last"])}
            if self._bad(event):
                self.rejected += 1
                event["count"] = 0
            else:
                self.first, self.prev_index = False, event["index"]
            work = cfg.event_work(event["index"]) if event["count"] and event["index"] < cfg.in_features else 0
            if work or event["last"]:
                self.decoded = event
            self.last_seen = event["last"]
            self.buffer = None
        if accepted:
            self.buffer = {key: in_payload[key] for key in ("index", "count", "last")}

        if phase == Phase.CLEAR:
            if self.neuron == cfg.out_features - 1:
                self.phase, self.neuron = Phase.ACCUMULATE, 0
            else:
                self.neuron += 1
        elif phase == Phase.READ:
            self.phase = Phase.EMIT
        elif phase == Phase.EMIT and (taken or not self.out_valid()):
            if self.neuron == cfg.out_features - 1:
                self.phase = Phase.ACCUMULATE
                if cfg.banks == 1:   # two banks: the input side was reset at the hand-over
                    self.first, self.last_seen, self.prev_index = True, False, -1
            self.neuron += 1
        return accepted, taken


class PoolRun(NamedTuple):
    """Per sample: pooled counts ``(batch, out_features)`` (``"hwc"``) and cycles."""

    counts: np.ndarray
    cycles: np.ndarray


def run_pool_model(config: PoolConfig, counts, max_cycles: int = 10_000_000) -> PoolRun:
    """Run :class:`PoolUnitModel` with a source offering the events back to back and a sink always ready."""
    counts = config._check(counts)
    return PoolRun(*run_samples(lambda: PoolUnitModel(config), counts, config.out_features, "pooling unit model",
                                max_cycles))
