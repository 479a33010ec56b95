"""A chain of hardware stages for a convolutional integer model (no Amaranth): the plan the generator
follows (:func:`core_config` builds the :class:`~pascal_hdl.config.CoreConfig` of any network: Linear
chains through ``CoreConfig.from_integer_network``, everything else through :func:`stage_configs`).

:func:`stage_configs` maps a ``pascal_ref.golden.quantize.IntegerNetwork`` onto stages, in stream order:

* the two layers of a ResNet basic block (``act1``, then ``act2`` with two synapses: conv2 on act1
  and the identity or 1x1-conv shortcut on the block input) -> one
  :class:`~pascal_hdl.model.residual.ResidualBlockConfig` (conv1 engine and the two-port act2
  engine, the block input forked to both);
* a Conv2d layer -> its pooling pre-ops as :class:`~pascal_hdl.model.pool.PoolConfig` units,
  then a :class:`~pascal_hdl.model.conv.ConvConfig` engine (the first one reads the ``"chw"``
  input, every later one the ``"hwc"`` events of the stage before);
* a Linear layer -> its pooling pre-ops as units, then a :class:`~pascal_hdl.config.LayerConfig`
  whose weight columns are permuted to the ``"hwc"`` order of the events it receives
  (:func:`~pascal_hdl.model.conv.hwc_permutation`; none for the network input or a Linear source).

:func:`chain_forward` runs the integer behaviour of the stages (each stage's ``forward``);
:class:`ChainModel` the cycle models of the stages chained as
:class:`pascal_hdl.gateware.chain.StageChain` chains the blocks.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pascal_hdl.config import (
    DEFAULT_HIDDEN_LANES,
    DEFAULT_READOUT_LANES,
    CoreConfig,
    MAX_LEVELS,
    HardwareError,
    LayerConfig,
    _identifier,
    check_multiplier,
)
from pascal_hdl.model.conv import ConvConfig, ConvEngineModel, hwc_permutation, to_layout
from pascal_hdl.model.engine import EngineModel
from pascal_hdl.model.pool import PoolConfig, PoolUnitModel, pool_chain
from pascal_hdl.model.residual import (
    ResidualBlockConfig,
    ResidualBlockModel,
    block_layers,
)

__all__ = ["UP5K_DIGITS_CNN_LANES", "UP5K_DIGITS_RESNET_LANES", "ChainModel", "balance_lanes", "calibration_levels",
           "chain_forward", "core_config", "dsp_products", "golden_stage_levels", "is_linear_chain", "stage_configs",
           "stage_cycles",
           "stage_kind", "stage_lanes", "stage_model", "with_double_buffer", "with_mac"]


def stage_configs(model, lanes: int | None = None, layer_lanes: dict | None = None) -> list:
    """Stages (pooling units, conv engines, residual blocks, Linear engines) of a chain network, in stream order.

    ``lanes``: of every engine (None: the defaults, 8 hidden, 10 readout; never more than the
    layer's output channels). ``layer_lanes``: per golden layer name, lanes overriding ``lanes``
    (e.g. ``{"act1": 4}`` puts the digits CNN into the iCE40 UP5K's 30 block RAMs, see
    :data:`UP5K_DIGITS_CNN_LANES`); a name that is not a layer of the model is an error."""
    layer_lanes = dict(layer_lanes or {})
    unknown = set(layer_lanes) - {layer.name for layer in model.layers}
    if unknown:
        raise HardwareError(f"layer_lanes: no layer named {', '.join(sorted(unknown))} in network '{model.network.name}'")
    network = model.network
    stages, layout, levels = [], "chw", int(model.input_range[1])
    minimum = int(model.input_range[0])     # < 0: signed integer pixels of an analog input
    if minimum < 0 and max(levels, -minimum) > MAX_LEVELS:
        raise HardwareError(f"network '{network.name}': analog input pixels in [{minimum}, {levels}]; the core takes "
                            f"signed pixels up to {MAX_LEVELS} in magnitude: quantize with input_bits <= 9 (--input-bits)")
    layers, index = list(model.layers), -1
    while index + 1 < len(layers):
        index += 1
        layer = layers[index]
        if block_layers(layers, index):
            if layer.synapses[0].pre_ops:
                raise HardwareError(f"layer '{layer.name}': pre-ops before a residual block are not supported")
            block = ResidualBlockConfig.from_int_layers(layer, layers[index + 1], layer_lanes.get(layer.name, lanes),
                                                        layout, layer_lanes.get(layers[index + 1].name, lanes))
            stages.append(block)
            layout, levels, index = "hwc", layers[index + 1].levels, index + 1
            continue
        if len(layer.synapses) != 1:
            raise HardwareError(f"layer '{layer.name}': {len(layer.synapses)} synapses (residual block) are not supported yet")
        synapse = layer.synapses[0]
        analog = index == 0 and minimum < 0
        if synapse.input_min != 0 and not analog:
            raise HardwareError(f"layer '{layer.name}': input levels from {synapse.input_min}; the hardware takes counts >= 0")
        kind = synapse.op.kind
        pooled = [type(p).__name__ for p in synapse.pre_ops if not getattr(p, "flattens", False)]
        if analog and (kind not in ("conv", "dense") or pooled):
            raise HardwareError(f"layer '{layer.name}': an analog input (signed pixels) needs a Conv2d or Linear first "
                                "layer without pooling before it (the engine multiplies each pixel, with mac); "
                                f"this one is {type(synapse.op).__name__}"
                                + (f" after {', '.join(pooled)}" if pooled else "") + "; use count-coded input "
                                "(input_levels)")
        if len(synapse.input_shape) == 3:
            units, shape = pool_chain(synapse, levels, layout)
            stages += units
            if units:
                layout = "hwc"
        else:
            units, shape = [], tuple(synapse.input_shape)
        if kind == "conv":
            out = int(layer.output_shape[0])
            chosen = layer_lanes.get(layer.name, lanes)
            conv = ConvConfig.from_int_layer(layer, min(out, chosen or DEFAULT_HIDDEN_LANES), layout,
                                             pooled=bool(units), analog=analog)
            stages.append(conv)
            layout = "hwc"
        elif kind == "dense":
            weight = np.asarray(synapse.weight)
            if layout == "hwc" and len(shape) == 3:
                permuted = np.empty_like(weight)
                permuted[:, hwc_permutation(shape)] = weight
                weight = permuted
            out = weight.shape[0]
            default = DEFAULT_READOUT_LANES if layer.is_readout else DEFAULT_HIDDEN_LANES
            stages.append(LayerConfig(_identifier(layer.name), weight, int(synapse.input_max), layer.levels,
                                      None if layer.is_readout else np.asarray(layer.theta),
                                      np.asarray(layer.bias if layer.is_readout else layer.v0),
                                      min(out, layer_lanes.get(layer.name, lanes) or default),
                                      t_min=min(0, int(synapse.input_min)) if analog else 0, mac=analog))
            layout = "flat"
        else:
            raise HardwareError(f"layer '{layer.name}': {type(synapse.op).__name__} is not supported by the hardware")
        levels = layer.levels
    return stages


def is_linear_chain(model) -> bool:
    """Every layer of the integer model is one Linear synapse whose pre-ops (if any) act on a flat input
    or only flatten: the MLP path (:meth:`CoreConfig.from_integer_network`, unchanged since the first core)."""
    for layer in model.layers:
        if len(layer.synapses) != 1 or layer.synapses[0].op.kind != "dense":
            return False
        synapse = layer.synapses[0]
        if len(synapse.input_shape) == 3 and any(not pre_op.flattens for pre_op in synapse.pre_ops):
            return False
    return True


def core_config(model, lanes=None, layer_lanes: dict | None = None, name: str | None = None,
                in_flight: int = 1, double_buffer=None, mac=None, multiplier: str = "logic") -> CoreConfig:
    """The :class:`~pascal_hdl.config.CoreConfig` of any network the hardware takes.

    A Linear chain (:func:`is_linear_chain`) without ``layer_lanes`` goes through
    :meth:`CoreConfig.from_integer_network` (``lanes`` an int or one per layer), so an MLP core is
    exactly what it always was; any other network (Conv2d, pooling, residual blocks, a Linear
    readout) becomes the stages of :func:`stage_configs` (``lanes`` an int or None, ``layer_lanes``
    per golden layer name). ``in_flight``: samples the core holds at once (:attr:`CoreConfig.in_flight`).
    ``double_buffer``: None or False (every stage single-buffered), True (every stage whose configuration
    has a ``banks`` field gets ``banks=2``) or stage names (those stages; a golden layer name works for
    the stage it becomes); double buffering needs ``in_flight >= 2``.
    ``mac``: None or False (counts repeated), True (every conv stage) or stage names: those conv stages
    issue each tap once per event and add ``count * weight`` (:attr:`ConvConfig.mac
    <pascal_hdl.model.conv.ConvConfig.mac>`). ``multiplier``: how those stages form the product,
    ``"logic"`` (shift-and-add) or ``"dsp"`` (the part's DSP blocks); see :func:`with_mac`.
    What the hardware cannot take raises a :class:`HardwareError` naming the layer."""
    config = _core_config(model, lanes, layer_lanes, name)
    layers = with_mac(with_double_buffer(config.layers, double_buffer), mac, multiplier)
    if in_flight == 1 and layers == config.layers:
        return config
    return dataclasses.replace(config, in_flight=in_flight, layers=layers)


def with_double_buffer(stages, double_buffer) -> tuple:
    """The stages with ``banks=2`` where ``double_buffer`` asks for it (see :func:`core_config`): True
    for every stage that has the field, or an iterable of stage names (or golden layer names, matched
    as identifiers); an unknown name, or a named stage without the field, is a HardwareError."""
    return _with_option(stages, double_buffer, "double_buffer", "banks", 2, "has no second bank")


def with_mac(stages, mac, multiplier: str = "logic") -> tuple:
    """The stages with ``mac=True`` where ``mac`` asks for it (see :func:`core_config`): True for every conv
    stage (conv engines and residual blocks; a Linear engine multiplies when named, or when it reads an
    analog input), or an iterable of stage names (or golden layer names) as :func:`with_double_buffer`
    takes them; a named stage without the field (pooling) is a HardwareError.
    ``multiplier`` (:data:`~pascal_hdl.config.MULTIPLIERS`) is set on every stage that multiplies then;
    ``"dsp"`` without any such stage is a HardwareError (it would change nothing)."""
    check_multiplier("multiplier", multiplier)
    if mac is True:
        stages = tuple(dataclasses.replace(stage, mac=True)
                       if _has_field(stage, "mac") and not isinstance(stage, LayerConfig) else stage for stage in stages)
    else:
        stages = _with_option(stages, mac, "mac", "mac", True,
                              "has no count-by-weight multiplier (conv and Linear stages only)")
    if multiplier == "logic":
        return stages
    if not any(getattr(stage, "mac", False) for stage in stages):
        raise HardwareError(f"multiplier {multiplier!r}: no stage multiplies (give mac, --mac, as well)")
    return tuple(dataclasses.replace(stage, multiplier=multiplier) if getattr(stage, "mac", False) else stage
                 for stage in stages)


def dsp_products(stages, multiplier: str | None = "dsp") -> int:
    """Products the stages leave to DSP blocks: one per lane of every conv or Linear engine (a residual
    block's conv1 and act2 engines each) with ``mac`` and ``multiplier="dsp"``; the synthesis flow refuses a
    part with fewer blocks before it runs the tools. ``multiplier=None``: the lanes of every engine with
    ``mac``, whatever its multiplier (the blocks ``"dsp"`` would need)."""
    total = 0
    for stage in stages:
        for engine in (stage.conv1, stage.merge) if isinstance(stage, ResidualBlockConfig) else (stage,):
            if getattr(engine, "mac", False) and multiplier in (None, getattr(engine, "multiplier", "logic")):
                total += engine.lanes
    return total


def _with_option(stages, choice, option: str, key: str, value, missing: str) -> tuple:
    """``stages`` with field ``key`` set to ``value`` in those ``choice`` names (True: every stage with the
    field; None or False: none); ``option`` and ``missing`` word the one-line errors."""
    stages = tuple(stages)
    if choice is None or choice is False:
        return stages
    if choice is True:
        return tuple(dataclasses.replace(stage, **{key: value}) if _has_field(stage, key) else stage
                     for stage in stages)
    if isinstance(choice, str):
        raise TypeError(f"{option}: expected True or a collection of stage names, got a string")
    wanted = {_identifier(str(name)): str(name) for name in choice}
    names = {stage.name for stage in stages}
    unknown = sorted(text for identifier, text in wanted.items() if identifier not in names)
    if unknown:
        raise HardwareError(f"{option}: no stage named {', '.join(unknown)} (stages: {', '.join(sorted(names))})")
    out = []
    for stage in stages:
        if stage.name in wanted:
            if not _has_field(stage, key):
                raise HardwareError(f"{option}: stage '{stage.name}' ({stage_kind(stage)}) {missing}")
            stage = dataclasses.replace(stage, **{key: value})
        out.append(stage)
    return tuple(out)


def _has_field(stage, key: str) -> bool:
    return dataclasses.is_dataclass(stage) and key in {f.name for f in dataclasses.fields(stage)}


def _core_config(model, lanes, layer_lanes, name) -> CoreConfig:
    network = getattr(model, "network", None)
    if network is None or not hasattr(model, "layers"):
        raise TypeError(f"core_config: expected an IntegerNetwork, got {type(model).__name__}")
    if is_linear_chain(model) and not layer_lanes and model.network.input_levels is not None:
        return CoreConfig.from_integer_network(model, lanes=lanes, name=name)
    if lanes is not None and not isinstance(lanes, (int, np.integer)):
        raise HardwareError(f"network '{network.name}': lanes per layer of a conv network are given by layer name "
                            "(layer_lanes), not as a list")
    stages = stage_configs(model, None if lanes is None else int(lanes), layer_lanes)
    core_name = name if name is not None else _identifier(network.name)
    low, high = (int(v) for v in model.input_range)
    return CoreConfig(core_name, int(np.prod(network.input_shape)), high, tuple(stages), input_min=low)


# The bundled digits CNN on the iCE40 UP5K (StageChain, lanes 8 elsewhere). Block RAM: conv1's
# accumulators, 64 positions x 2 groups of 8 lanes x 15 bits, fill 8 SB_RAM40_4K to half their
# depth (34 blocks in all, the UP5K has 30); with 4 lanes they are 256 words x 60 bits, 4 blocks
# filled, at the price of twice the conv1 issue cycles. Logic: the readout on 5 lanes has the
# same 2 groups for its 10 classes as on 8 (so the same cycles) and 3 adders fewer.
# Since issue 13 (CLEAR phases, the per-sample FIFO of the core) the core needs about 300 logic cells
# more: act2 on 6 lanes (6 groups for its 32 channels instead of 4) brings it back to 4,929 of 5,280.
UP5K_DIGITS_CNN_LANES = {"act1": 4, "act2": 6, "fc": 5}

# The bundled digits ResNet on the iCE40 UP5K: one lane in every engine (the conv stem, each block's
# conv1 and act2 engines), the readout on 2. Logic is what limits it: with 8 lanes the core needs
# 10,613 logic cells and 59 block RAMs, with 2 lanes 6,090 cells (each engine's lanes carry a neuron
# unit, an adder and a comparator), with 1 lane 5,080 of the 5,280; cycles grow with the lanes taken
# away (138,000 instead of 17,100 per image).
UP5K_DIGITS_RESNET_LANES = {"act1": 1, "block1.residual_function.2": 1, "block1.act": 1,
                            "block2.residual_function.2": 1, "block2.act": 1, "fc": 2}


def chain_forward(stages, levels) -> list[np.ndarray]:
    """Outputs of every stage for flat input levels ``(batch, features)`` (``"chw"``): counts in the
    stage's output order, the readout's logits last."""
    values, outputs = np.asarray(levels), []
    for stage in stages:
        values = stage.forward(values)
        outputs.append(values)
    return outputs


def stage_kind(stage) -> str:
    """``"conv"``, ``"pool"``, ``"dense"`` or ``"readout"``."""
    if isinstance(stage, ConvConfig):
        return "conv"
    if isinstance(stage, PoolConfig):
        return "pool"
    if isinstance(stage, ResidualBlockConfig):
        return "residual"
    return "readout" if stage.is_readout else "dense"


def golden_stage_levels(config, golden, batch: int) -> dict[str, np.ndarray]:
    """The integer golden model's counts of every neuron layer that is a stage of the core, by stage name,
    flat in the order the stage's monitor sends them: the golden order for a Linear layer, ``"hwc"``
    (``index = (y*W + x)*C + c``) for a conv layer or the act2 layer of a residual block (whose
    ``merge`` engine carries that layer's name). Pooling stages have no golden layer. ``golden`` is
    ``pascal_ref.golden.quantize.integer_ann``'s result; a neuron stage whose layer it lacks is an error
    (never a stage left unchecked)."""
    by_identifier = {"".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name): name for name in golden.levels}
    found = {}
    for stage in config.hidden:
        if isinstance(stage, PoolConfig):
            continue
        identifier = stage.merge.name if isinstance(stage, ResidualBlockConfig) else stage.name
        if identifier not in by_identifier:
            raise ValueError(f"stage '{stage.name}': the golden model has no layer '{identifier}'")
        values = np.asarray(golden.levels[by_identifier[identifier]], dtype=np.int64)
        if values.ndim == 4 and not isinstance(stage, LayerConfig):
            found[stage.name] = to_layout(values, "hwc")
        else:
            found[stage.name] = values.reshape(batch, -1)
    return found


def stage_lanes(stage):
    """Lanes of a stage: an int (1 for a pooling unit), or ``[conv1, act2]`` for a residual block."""
    if isinstance(stage, ResidualBlockConfig):
        return [stage.conv1.lanes, stage.merge.lanes]
    return 1 if isinstance(stage, PoolConfig) else stage.lanes


def stage_model(stage):
    """The cycle model of one stage."""
    if isinstance(stage, ConvConfig):
        return ConvEngineModel(stage)
    if isinstance(stage, PoolConfig):
        return PoolUnitModel(stage)
    if isinstance(stage, ResidualBlockConfig):
        return ResidualBlockModel(stage)
    if isinstance(stage, LayerConfig):
        return EngineModel(stage)
    raise TypeError(f"stage_model: not a stage configuration: {type(stage).__name__}")


class ChainModel:
    """Cycle models chained as their blocks are (stream ``o`` of one into ``i`` of the next, the same
    cycle), with the interface of one model (``in_ready``, ``out_valid``, ``out_payload``, ``step``,
    ``rejecting``); :attr:`events` records, per link, the payloads handed on (the ``monitor``
    ports of :class:`~pascal_hdl.gateware.chain.StageChain`)."""

    def __init__(self, stages):
        self.stages = list(stages)
        self.models = [stage_model(stage) for stage in self.stages]
        self.events = [[] for _ in self.models[:-1]]

    def in_ready(self) -> bool:
        return self.models[0].in_ready()

    def out_valid(self) -> bool:
        return self.models[-1].out_valid()

    @property
    def out_payload(self):
        return self.models[-1].out_payload

    def rejecting(self) -> bool:
        """Any stage drops an event in this cycle."""
        return any(model.rejecting() for model in self.models)

    def step(self, in_valid: bool = False, in_payload=None, out_ready: bool = True) -> tuple[bool, bool]:
        models = self.models
        valid = [m.out_valid() for m in models]
        ready = [m.in_ready() for m in models]
        payloads = [m.out_payload if v else None for m, v in zip(models, valid)]
        last = len(models) - 1
        accepted, taken = models[0].step(in_valid, in_payload, ready[1] if last else out_ready)
        for index in range(1, len(models)):
            handed = valid[index - 1] and ready[index]
            if handed:
                self.events[index - 1].append(payloads[index - 1])
            _, taken = models[index].step(handed, payloads[index - 1], ready[index + 1] if index < last else out_ready)
        return accepted, taken


def run_chain_model(stages, levels, max_cycles: int = 10_000_000) -> tuple[list, np.ndarray]:
    """Run :class:`ChainModel` one sample at a time (flat ``"chw"`` input levels), the source offering
    the events back to back and the sink always ready. Returns the last stage's payloads (one per
    sample) and the cycles per sample, from the acceptance of the first event to the first cycle the
    result (the readout's, or the last event of a hidden stage) is valid."""
    from pascal_hdl.model.engine import sample_events

    results, cycles = [], []
    for sample in np.asarray(levels):
        chain, queue = ChainModel(stages), sample_events(sample)
        started, outputs = None, []
        for cycle in range(max_cycles):
            if chain.out_valid():
                payload = chain.out_payload
                if stages[-1].t_out is None or payload["last"]:
                    results.append(payload)
                    cycles.append(cycle - started)
                    break
                outputs.append(payload)
            accepted, _ = chain.step(bool(queue), queue[0] if queue else None, True)
            if accepted and started is None:
                started = cycle
            if accepted:
                queue.pop(0)
        else:  # pragma: no cover - the models always terminate
            raise RuntimeError("chain model did not finish")
    return results, np.array(cycles, dtype=np.int64)


def ideal_cycles(stages, levels) -> dict[str, np.ndarray]:
    """Per weighted stage (by name): synaptic events divided by lanes, for flat ``"chw"`` input levels
    (pooling units do no synaptic work and are not listed)."""
    values, ideal = np.asarray(levels), {}
    for stage in stages:
        if isinstance(stage, (ConvConfig, ResidualBlockConfig)):
            ideal[stage.name] = stage.ideal_cycles(values)
        elif isinstance(stage, LayerConfig):
            ideal[stage.name] = values.sum(axis=1) * stage.out_features / stage.lanes
        if not (isinstance(stage, LayerConfig) and stage.is_readout):
            values = stage.forward(values)
    return ideal


# ---------------------------------------------------------------------------------------------- lane balancing


def stage_cycles(stage, counts, max_cycles: int = 50_000_000) -> dict:
    """A stage's cycles when it runs alone on back-to-back samples (its cycle model, a source that offers the
    events of every sample back to back, a sink always ready), after its CLEAR phase: ``total`` (from the
    first accepted event to the last output taken), ``per_image`` (``total / samples``: the bound the stage
    sets on the steady-state cycles per image of any core it is part of) and ``images``. ``counts`` are
    the stage's input counts ``(batch, in_features)`` in its input order (:func:`chain_forward`)."""
    from pascal_hdl.model.engine import sample_events

    counts = np.asarray(counts)
    model = stage_model(stage)
    queue = [event for sample in counts for event in sample_events(sample)]
    readout = bool(getattr(stage, "is_readout", False))
    position, done, started = 0, 0, None
    for cycle in range(max_cycles):
        valid = model.out_valid()
        payload = model.out_payload if valid else None
        offered = position < len(queue)
        accepted, taken = model.step(offered, queue[position] if offered else None, True)
        if accepted:
            started = cycle if started is None else started
            position += 1
        if taken and (readout or payload["last"]):
            done += 1
            if done == len(counts):
                total = cycle + 1 - started
                return {"images": len(counts), "total": total, "per_image": total / len(counts)}
    raise RuntimeError(f"stage '{stage.name}' did not finish {len(counts)} samples in {max_cycles} cycles")  # pragma: no cover


def _linear_period(stage: LayerConfig, counts: np.ndarray) -> float:
    """Cycles per image of a Linear engine alone, from its timing (module docstring of the engine):
    accumulate ``sum max(1, count * groups)`` over the sample's events; drain ``groups * (2 + T2) + out``
    (hidden) or ``groups + out + 2`` (readout); one bank: their sum, two: the larger (+1, the hand-over);
    exact for back-to-back samples after the first (``test_engine.py`` checks the timing, ``test_core_pipeline.py``
    this formula against :func:`stage_cycles`)."""
    silent = (counts.sum(axis=1) == 0).astype(np.int64)   # the single (0, 0, last) event costs a cycle
    if stage.t_min < 0:         # signed pixels: silent only when all are zero
        silent = (np.abs(counts).sum(axis=1) == 0).astype(np.int64)
    accumulate = stage.issues(counts).sum(axis=1) * stage.groups + silent
    if stage.is_readout:
        drain = stage.groups + stage.out_features + 2
    else:
        drain = stage.groups * (2 + stage.t_out) + stage.out_features
    if stage.banks == 2:
        return float(np.maximum(accumulate, drain).mean() + 1)
    return float((accumulate + drain).mean())


def _lane_steps(out_channels: int) -> list[int]:
    """The lane counts worth trying for ``out_channels`` neurons: the smallest that gives each number of groups."""
    steps = sorted({-(-out_channels // groups) for groups in range(1, out_channels + 1)})
    return [lane for lane in steps if lane <= MAX_BALANCE_LANES]


MAX_BALANCE_LANES = 32


COUPLED_SAMPLES = 8
"""Images the coupled phase of :func:`balance_lanes` streams through each candidate core."""
COUPLED_GAIN = 0.01
"""The least relative gain in the coupled period for which the coupled phase adds lanes."""


def balance_lanes(model, levels, lanes=None, budget: int | None = None, target: float | None = None,
                  double_buffer=None, in_flight: int = 1, samples: int = 16, mac=None) -> dict:
    """Lanes per layer so that the stage periods are balanced: the steady state of a core with samples in
    flight is bounded by its slowest stage, so lanes go where they shorten the slowest one.

    Every weighted golden layer (Linear, Conv2d, each layer of a residual block) is a knob. Starting
    from one lane each, the slowest stage's knob is raised to its next useful lane count (one that
    lowers its groups) while the total of the lanes stays within ``budget`` (default: the total of
    the default design's lanes, ``lanes`` or 8 per hidden layer and 16 per readout, each capped at the
    layer's size) and the slowest period is above ``target`` (cycles per image, default none). A
    period is the stage's cycles per image alone (:func:`stage_cycles`; a Linear engine from its
    exact timing formula, see :func:`_linear_period`) on ``levels`` (flat ``"chw"`` input levels; the
    first ``samples`` for the measured stages), with ``double_buffer`` and ``in_flight`` as the core
    will be built.

    With samples in flight the stages are coupled: a stage emits only while the next one accepts, so
    a core can run slower than its slowest stage alone (the digits ResNet with act1 on 1 lane: 4,898
    cycles per image against a bound of 3,688). A coupled phase follows then: while lanes are left in
    the budget and the period is above ``target``, each knob's next lane count is tried on the whole
    core (:func:`pascal_hdl.model.core.run_stream` on the first :data:`COUPLED_SAMPLES` images), and the
    one that lowers the steady-state cycles per image most is kept, if it gains at least
    :data:`COUPLED_GAIN`.

    Returns ``{"layer_lanes": {layer: lanes}, "periods": {stage: cycles per image alone}, "bound": the
    slowest period, "budget": budget, "coupled_period": the core's cycles per image in the coupled
    phase (None with one sample in flight)}``."""
    levels = np.asarray(levels)
    knobs = [layer.name for layer in model.layers]
    outputs = {layer.name: int(layer.output_shape[0]) for layer in model.layers}
    readouts = {layer.name for layer in model.layers if layer.is_readout}
    if budget is None:
        budget = sum(min(outputs[k], (DEFAULT_READOUT_LANES if k in readouts else DEFAULT_HIDDEN_LANES)
                         if lanes is None else int(lanes)) for k in knobs)
    chosen = {k: 1 for k in knobs}
    cache: dict = {}

    def periods(choice):
        config = core_config(model, layer_lanes=choice, in_flight=max(in_flight, 2) if double_buffer else in_flight,
                             double_buffer=double_buffer, mac=mac)
        values, found = levels, {}
        for stage in config.layers:
            key = (stage.name, repr(stage_lanes(stage)), getattr(stage, "banks", 1))
            if key not in cache:
                if isinstance(stage, LayerConfig):
                    cache[key] = _linear_period(stage, values)
                else:
                    cache[key] = stage_cycles(stage, values[:samples])["per_image"]
            found[stage.name] = cache[key]
            if not getattr(stage, "is_readout", False):
                values = stage.forward(values)
        return config, found

    def knobs_of(config, stage_name):
        stage = next(s for s in config.layers if s.name == stage_name)
        if isinstance(stage, ResidualBlockConfig):
            names = [k for k in knobs if _identifier(k) in (stage.conv1.name, stage.merge.name)]
        else:
            names = [k for k in knobs if _identifier(k) == stage.name]
        return sorted(names, key=lambda k: chosen[k])

    config, found = periods(chosen)
    while True:
        slowest = max(found, key=found.get)
        if target is not None and found[slowest] <= target:
            break
        raised = False
        for knob in knobs_of(config, slowest):
            bigger = [lane for lane in _lane_steps(outputs[knob]) if lane > chosen[knob]]
            if bigger and sum(chosen.values()) - chosen[knob] + bigger[0] <= budget:
                chosen[knob] = bigger[0]
                raised = True
                break
        if not raised:
            break
        config, found = periods(chosen)
    coupled = None
    if in_flight > 1:
        chosen, coupled = _balance_coupled(model, levels[:COUPLED_SAMPLES], chosen, outputs, budget, target,
                                           dict(double_buffer=double_buffer, in_flight=in_flight, mac=mac))
        config, found = periods(chosen)
    return {"layer_lanes": dict(chosen), "periods": found, "bound": max(found.values()), "budget": budget,
            "coupled_period": coupled}


def _balance_coupled(model, levels, chosen: dict, outputs: dict, budget: int, target, options: dict):
    """The coupled phase of :func:`balance_lanes`: ``(lanes, steady-state cycles per image of the core)``."""
    from pascal_hdl.model.core import run_stream, stream_figures

    def period(choice):
        return stream_figures(run_stream(core_config(model, layer_lanes=choice, **options), levels))["cycles_per_image"]

    chosen, current = dict(chosen), period(chosen)
    while target is None or current > target:
        trials = []
        for knob, lanes in chosen.items():
            bigger = [lane for lane in _lane_steps(outputs[knob]) if lane > lanes]
            if bigger and sum(chosen.values()) - lanes + bigger[0] <= budget:
                trial = dict(chosen, **{knob: bigger[0]})
                trials.append((period(trial), bigger[0] - lanes, knob, trial))
        if not trials:
            break
        best, _, _, trial = min(trials, key=lambda t: (t[0], t[1], t[2]))
        if best > current * (1 - COUPLED_GAIN):
            break
        chosen, current = trial, best
    return chosen, current


def calibration_levels(model, limit: int = 64) -> np.ndarray:
    """Input levels to balance a design on: the first ``limit`` images of the bundled digits test split if the
    network takes their shape, else uniform random levels (seed 0); flat ``"chw"``."""
    from pascal_ref.io.data import DataError, load_data

    network = model.network
    try:
        data = load_data("digits", limit=limit, network=network)
    except DataError:   # another input shape: random levels
        rng = np.random.default_rng(0)
        return rng.integers(0, int(network.input_levels) + 1, (limit, int(np.prod(network.input_shape))))
    levels = model.encode_input(data.x)
    return np.asarray(levels).reshape(len(levels), -1)
