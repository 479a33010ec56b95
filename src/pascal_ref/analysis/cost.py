"""Cost model of a PASCAL spiking network: timesteps, T_eff, operations, energy.

``docs/semantics.md`` §3 and §10.  Everything is read from the
:class:`~pascal_ref.ir.network.Network` (shapes, L) and, for the data-dependent
counts, from the spike counts of the SNN on a data set.

Timesteps
    Per layer ``T1`` (longest input train), ``T2 = L``, stage 2
    ``max(T1, T2) - 1`` and ``T1 + max(T1, T2) - 1 + T2`` steps; the total
    latency overlaps a layer's stage 3 with the next layer's stage 1
    (:func:`pascal_ref.golden.snn.layer_timesteps`, :func:`pascal_ref.golden.snn.latency`).

T_eff (the paper's "effective timesteps", official ``get_Teff.py``)
    ``T_eff_l = T_l (1 + (5 T_l - 2) r_l) / (1 + T_l r_l)`` and
    ``T_eff = mean_l T_eff_l`` over the weighted layers (hidden layers and
    the readout, as the official lists include the last FC layer).
    ``T_l`` is the layer's own L; for the readout, which has none, it is the
    length of its input train ``T1``.  ``r_l`` is the energy of one neuron
    update relative to the synaptic work of one neuron in one step::

        r_l = E_neuron / (fan_in_l * E_AC)

    with ``fan_in_l`` the number of weights per output neuron (``C_in*kh*kw``
    for a convolution, ``in_features`` for a linear layer, 1 for an
    identity shortcut, summed over the layer's synapses; pooling before the
    op is not counted, as in the official lists).  The default
    ``E_neuron = (4/3) E_AC`` gives ``r_l = (4/3)/fan_in``, which reproduces
    the official VGG-16 list entry for entry.  :func:`t_eff` also takes any
    ``r`` list (the official ones included) and never truncates: lists of
    different lengths are an error.

Operations, per inference (means over the data set)
    * MACs: the first layer with analog input multiplies the real input (one
      MAC per weight that meets an input element, zero padding excluded).
    * ACs: one per transmitted spike per synapse.  The spikes of a source are
      its stage-3 counts; after the pre-ops a max pool passes the burst of the
      max count, an average pool sums the spikes of its window (each spike is
      added once per output it reaches), and every op-input spike is added to
      each output neuron it connects to (``out_features`` for a linear layer,
      ``C_out`` times the number of output positions whose window covers it
      for a convolution, 1 for an identity shortcut).  Count-coded input
      spikes are ACs too.
    * neuron updates: one per hidden neuron per stage-1 and stage-2 step
      (``T1 + max(T1, T2) - 1``); stage 3 only reads the counter.  The
      readout only accumulates (its ACs).
    * energy ``E = MAC*E_MAC + AC*E_AC + updates*E_neuron``; defaults 4.6 pJ
      per 32-bit float MAC and 0.9 pJ per AC (Horowitz, ISSCC 2014, 45 nm),
      ``E_neuron = (4/3) E_AC`` (see T_eff).
    * ANN equivalent: every weight of every layer used once as a MAC
      (same shapes, dense), ``E_ANN = MACs * E_MAC``.  Pooling and the
      activations are not counted on either side.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from pascal_ref.errors import PascalError
from pascal_ref.golden.ann import check_input, input_levels_of
from pascal_ref.golden.ops import apply_pre_ops
from pascal_ref.golden.snn import latency, layer_timesteps, simulate
from pascal_ref.ir.network import INPUT, Network, NeuronLayer

__all__ = ["t_eff", "t_eff_layers", "EnergyModel", "LayerCost", "NetworkCost", "fan_in", "layer_r",
           "network_t_eff", "measure", "spike_counts", "network_cost", "format_cost", "OFFICIAL_R"]


# ------------------------------------------------------------------ T_eff


def _check_levels_r(levels, r) -> tuple[np.ndarray, np.ndarray]:
    try:
        t = [int(v) for v in levels]
        ok = all(int(v) == v and not isinstance(v, bool) for v in levels)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PascalError(f"t_eff: levels must be a list of integers >= 1, got {levels!r}")
    t = np.asarray(t, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64).ravel()
    if t.size == 0:
        raise PascalError("t_eff: empty levels list")
    if t.size != r.size:
        raise PascalError(f"t_eff: {t.size} levels but {r.size} r values; one r per layer "
                         "(the official script silently drops the extra entries, we do not)")
    if np.any(t < 1):
        raise PascalError(f"t_eff: levels must be >= 1, got {t.astype(int).tolist()}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise PascalError(f"t_eff: r values must be finite and >= 0, got {r.tolist()}")
    return t, r


def t_eff_layers(levels, r) -> np.ndarray:
    """Per-layer ``T_l (1 + (5 T_l - 2) r_l) / (1 + T_l r_l)``."""
    t, r = _check_levels_r(levels, r)
    return t * (1.0 + (5.0 * t - 2.0) * r) / (1.0 + t * r)


def t_eff(levels, r) -> float:
    """The paper's effective timesteps: the mean of :func:`t_eff_layers`.

    ``levels`` (``T_l``) and ``r`` (``r_l``) have one entry per layer;
    lengths must match.
    """
    return float(np.mean(t_eff_layers(levels, r)))


# r lists hard-coded in the official get_Teff.py (one per weighted layer, readout last), as
# printed there.  VGG-16 is (4/3)/fan_in; the ResNet lists follow no single rule of the shapes.
_R_BLOCKS = (0.0005787037037037037, 0.00028935185185185187, 0.00014467592592592593, 7.233796296296296e-05)
_R_FC = 0.0026041666666666665
OFFICIAL_R = {
    "vgg16_cifar10": [0.04938271604938271, 0.0023148148148148147, 0.0023148148148148147, 0.0011574074074074073,
                      0.0011574074074074073] + [_R_BLOCKS[0]] * 3 + [_R_BLOCKS[1]] * 5 + [_R_FC] * 3,
    "resnet18_cifar10": [0.004629629629629629] + [r for r in _R_BLOCKS for _ in range(2)] + [_R_FC],
    "resnet34_imagenet": [0.006172839506172839] + [_R_BLOCKS[0]] * 3 + [_R_BLOCKS[1]] * 4 + [_R_BLOCKS[2]] * 6
                         + [_R_BLOCKS[3]] * 3 + [_R_FC],
}


# ----------------------------------------------------------- energy model


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in pJ; ``neuron_pj=None`` means ``(4/3) * ac_pj``."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    neuron_pj: float | None = None

    def __post_init__(self):
        for key in ("mac_pj", "ac_pj", "neuron_pj"):
            value = getattr(self, key)
            if value is None and key == "neuron_pj":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PascalError(f"energy model: {key} must be a finite number >= 0, got {value!r}")
        if self.ac_pj == 0:
            raise PascalError("energy model: ac_pj must be > 0 (r_l divides by it)")
        if self.neuron_pj is None:
            object.__setattr__(self, "neuron_pj", 4.0 / 3.0 * self.ac_pj)


def fan_in(layer: NeuronLayer) -> int:
    """Weights per output neuron, summed over the layer's synapses (module docstring)."""
    return sum(synapse.op.fan_in for synapse in layer.synapses)


def layer_r(layer: NeuronLayer, energy: EnergyModel = EnergyModel()) -> float:
    """``r_l = E_neuron / (fan_in_l * E_AC)``."""
    return energy.neuron_pj / (fan_in(layer) * energy.ac_pj)


def _t_eff_steps(network: Network) -> list[int]:
    return [network.input_steps(layer) if layer.is_readout else layer.levels for layer in network.neuron_layers]


def network_t_eff(network: Network, energy: EnergyModel = EnergyModel()) -> float:
    """T_eff of a network: every weighted layer, readout included (module docstring)."""
    return t_eff(_t_eff_steps(network), [layer_r(layer, energy) for layer in network.neuron_layers])


# --------------------------------------------------------------- counting


def measure(network: Network, x, batch_size: int = 256) -> tuple[dict, np.ndarray]:
    """Transmitted spikes of every source and the readout logits, from the SNN count engine.

    Returns ``({name: int64 (N, *shape)}, logits (N, classes))``; the counts
    cover every hidden layer and, for count-coded input, ``"input"`` (the
    input levels).  Analog input has no spikes (it is multiplied).
    """
    x = check_input(network, x, "data")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PascalError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    parts: dict = {}
    logits = []
    for start in range(0, len(x), batch_size):
        result = simulate(network, x[start:start + batch_size], engine="count")
        logits.append(result.logits)
        for name, counts in result.counts.items():
            parts.setdefault(name, []).append(np.asarray(counts, dtype=np.int64))
    counts = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if network.input_levels is not None:
        counts[INPUT] = input_levels_of(network, x)
    return counts, np.concatenate(logits)


def spike_counts(network: Network, x, batch_size: int = 256) -> dict:
    """The spike counts of :func:`measure`."""
    return measure(network, x, batch_size)[0]


@dataclass(frozen=True)
class LayerCost:
    """Cost of one neuron layer, per inference (means over the data)."""

    name: str
    readout: bool
    neurons: int
    fan_in: int
    T1: int
    stage2: int
    T2: int
    steps: int
    t_steps: int          # T_l used in T_eff
    r: float
    t_eff: float
    spikes_out: float     # transmitted (stage-3) spikes per inference
    macs: float
    acs: float
    neuron_updates: float
    energy_pj: float
    ann_macs: int
    ann_energy_pj: float


@dataclass(frozen=True)
class NetworkCost:
    name: str
    samples: int
    levels: list
    layers: list = field(repr=False)
    latency: int
    sum_steps: int
    t_eff: float
    macs: float
    acs: float
    neuron_updates: float
    spikes: float
    energy_pj: float
    ann_macs: int
    ann_energy_pj: float
    energy_model: EnergyModel

    @property
    def energy_ratio(self) -> float:
        """SNN energy / ANN-equivalent energy."""
        return self.energy_pj / self.ann_energy_pj

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["energy_ratio"] = self.energy_ratio
        return payload


def network_cost(network: Network, x=None, counts: dict | None = None, energy: EnergyModel = EnergyModel(),
                 batch_size: int = 256) -> NetworkCost:
    """Per-layer and total cost of ``network`` on the data ``x`` (or given ``counts``).

    ``counts`` (from :func:`spike_counts`) saves running the SNN again.
    """
    if not isinstance(energy, EnergyModel):
        raise TypeError(f"energy must be an EnergyModel, got {type(energy).__name__}")
    if counts is None:
        if x is None:
            raise PascalError("network_cost: give the data x (or the spike counts)")
        counts = spike_counts(network, x, batch_size)
    samples = None
    for layer in network.neuron_layers:
        sources = [s.source for s in layer.synapses if s.source != INPUT or network.input_levels is not None]
        for source in sources + ([] if layer.is_readout else [layer.name]):
            if source not in counts:
                raise PascalError(f"network_cost: no spike counts for '{source}'")
            c = counts[source]
            shape = network.input_shape if source == INPUT else network.by_name[source].output_shape
            if not isinstance(c, np.ndarray) or c.dtype.kind not in "iu":
                raise PascalError(f"network_cost: counts of '{source}' must be an integer array, got "
                                  f"{getattr(c, 'dtype', type(c).__name__)}")
            if c.shape[1:] != tuple(shape):
                raise PascalError(f"network_cost: counts of '{source}' have shape {c.shape}, expected (N, {shape})")
            most = network.input_levels if source == INPUT else network.by_name[source].levels
            if c.size and (int(c.min()) < 0 or int(c.max()) > most):
                raise PascalError(f"network_cost: counts of '{source}' lie in [{int(c.min())}, {int(c.max())}], "
                                  f"outside 0..{most} (the spikes a train of that layer can hold)")
            if samples is None:
                samples = c.shape[0]
            elif c.shape[0] != samples:
                raise PascalError(f"network_cost: counts of '{source}' have {c.shape[0]} samples, others {samples}")
    if samples is None:  # analog input and no hidden layer: a plain linear classifier
        samples = 0 if x is None else len(check_input(network, x, "data"))
    if samples == 0:
        raise PascalError("network_cost: no samples")
    timing = layer_timesteps(network)
    t_steps = _t_eff_steps(network)
    rows = []
    for layer, row, t_l in zip(network.neuron_layers, timing, t_steps):
        r = layer_r(layer, energy)
        macs = acs = 0.0
        ann_macs = 0
        for synapse in layer.synapses:
            structural = np.ones((1,) + tuple(synapse.op_input_shape), dtype=np.int64)
            dense = int(synapse.op.synaptic_events(structural)[0])
            ann_macs += dense
            if synapse.source == INPUT and network.input_levels is None:
                macs += dense
                continue
            events = apply_pre_ops(counts[synapse.source], synapse.pre_ops, integer=True)
            acs += float(np.mean(synapse.op.synaptic_events(events)))
        neurons = int(np.prod(layer.output_shape))
        updates = 0 if layer.is_readout else neurons * (row["stage1"] + row["stage2"])
        spikes = 0.0 if layer.is_readout else float(counts[layer.name].reshape(samples, -1).sum(axis=1).mean())
        e = macs * energy.mac_pj + acs * energy.ac_pj + updates * energy.neuron_pj
        rows.append(LayerCost(
            name=layer.name, readout=layer.is_readout, neurons=neurons, fan_in=fan_in(layer), T1=row["T1"],
            stage2=row["stage2"], T2=row["T2"], steps=row["steps"], t_steps=t_l, r=r,
            t_eff=float(t_eff_layers([t_l], [r])[0]), spikes_out=spikes, macs=macs, acs=acs,
            neuron_updates=float(updates), energy_pj=e, ann_macs=ann_macs, ann_energy_pj=ann_macs * energy.mac_pj))
    return NetworkCost(
        name=network.name, samples=samples, levels=network.levels, layers=rows, latency=latency(network),
        sum_steps=sum(r.steps for r in rows), t_eff=float(np.mean([r.t_eff for r in rows])),
        macs=sum(r.macs for r in rows), acs=sum(r.acs for r in rows),
        neuron_updates=sum(r.neuron_updates for r in rows), spikes=sum(r.spikes_out for r in rows),
        energy_pj=sum(r.energy_pj for r in rows), ann_macs=sum(r.ann_macs for r in rows),
        ann_energy_pj=sum(r.ann_energy_pj for r in rows), energy_model=energy)


def format_cost(cost: NetworkCost) -> str:
    """A terminal table: one row per layer, then the totals."""
    head = (f"{'layer':<16}{'L/T1':>7}{'steps':>7}{'fan_in':>8}{'r':>10}{'T_eff':>8}{'spikes':>11}"
            f"{'MACs':>11}{'ACs':>12}{'updates':>10}{'E (nJ)':>10}{'E_ANN (nJ)':>12}")
    lines = [f"{cost.name}: {cost.samples} samples, per inference; energy model MAC {cost.energy_model.mac_pj} pJ, "
             f"AC {cost.energy_model.ac_pj} pJ, neuron update {cost.energy_model.neuron_pj:.4g} pJ", head,
             "-" * len(head)]
    for r in cost.layers:
        levels = f"{r.T1}->" + ("out" if r.readout else str(r.T2))
        lines.append(f"{r.name:<16}{levels:>7}{r.steps:>7}{r.fan_in:>8}{r.r:>10.3g}{r.t_eff:>8.3f}{r.spikes_out:>11.1f}"
                     f"{r.macs:>11.0f}{r.acs:>12.1f}{r.neuron_updates:>10.0f}{r.energy_pj / 1e3:>10.3f}"
                     f"{r.ann_energy_pj / 1e3:>12.3f}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<16}{'':>7}{cost.sum_steps:>7}{'':>8}{'':>10}{cost.t_eff:>8.3f}{cost.spikes:>11.1f}"
                 f"{cost.macs:>11.0f}{cost.acs:>12.1f}{cost.neuron_updates:>10.0f}{cost.energy_pj / 1e3:>10.3f}"
                 f"{cost.ann_energy_pj / 1e3:>12.3f}")
    lines.append(f"latency {cost.latency} timesteps (stage 3 overlapping the next stage 1; sum of layer steps "
                 f"{cost.sum_steps}), T_eff {cost.t_eff:.3f}, L per layer {cost.levels}; "
                 f"SNN/ANN energy {cost.energy_ratio:.3f}")
    return "\n".join(lines)
