"""Cost model: T_eff against the official script's figures, hand-counted operations."""
import itertools

import numpy as np
import pytest

from pascal_ref.analysis.cost import (
    OFFICIAL_R,
    EnergyModel,
    fan_in,
    format_cost,
    layer_r,
    network_cost,
    network_t_eff,
    spike_counts,
    t_eff,
    t_eff_layers,
)
from pascal_ref.golden.snn import latency, simulate
from pascal_ref.ir.network import INPUT, QCFS, AvgPool2d, BasicBlock, Conv2d, Flatten, Linear, MaxPool2d, Network

# r lists of the official get_Teff.py, as printed there (decimal literals)
RESNET18_CIFAR10 = [0.004629629629629629, 0.0005787037037037037, 0.0005787037037037037, 0.00028935185185185187,
                    0.00028935185185185187, 0.00014467592592592593, 0.00014467592592592593, 7.233796296296296e-05,
                    7.233796296296296e-05, 0.0026041666666666665]
RESNET34_IMAGENET = ([0.006172839506172839] + [0.0005787037037037037] * 3 + [0.00028935185185185187] * 4
                     + [0.00014467592592592593] * 6 + [7.233796296296296e-05] * 3 + [0.0026041666666666665])
VGG16_CIFAR10 = [0.04938271604938271, 0.0023148148148148147, 0.0023148148148148147, 0.0011574074074074073,
                 0.0011574074074074073, 0.0005787037037037037, 0.0005787037037037037, 0.0005787037037037037,
                 0.00028935185185185187, 0.00028935185185185187, 0.00028935185185185187, 0.00028935185185185187,
                 0.00028935185185185187, 0.0026041666666666665, 0.0026041666666666665, 0.0026041666666666665]


def test_official_r_lists_as_fractions():
    assert OFFICIAL_R["resnet18_cifar10"] == RESNET18_CIFAR10
    assert OFFICIAL_R["resnet34_imagenet"] == RESNET34_IMAGENET
    assert OFFICIAL_R["vgg16_cifar10"] == VGG16_CIFAR10
    # the VGG-16 entries are (4/3)/fan_in: 4/81 = (4/3)/27, 1/432 = (4/3)/576, ..., 1/384 = (4/3)/512
    fan = [27, 576, 576, 1152, 1152, 2304, 2304, 2304] + [4608] * 5 + [512] * 3
    assert VGG16_CIFAR10 == pytest.approx([4 / 3 / f for f in fan], rel=1e-15)


def test_official_resnet18_figure():
    # PASCAL models/ResNet.py (active line): mylist = [4,4,4,1,4,4,4,1,4,1,1,1,1,1,1,1,4], 17 activations.
    # get_Teff.py zips it with the 10-entry ResNet-18 r list, so only the first 10 L values count.
    mylist = [4, 4, 4, 1, 4, 4, 4, 1, 4, 1, 1, 1, 1, 1, 1, 1, 4]
    with pytest.raises(ValueError, match="17 levels but 10 r values"):
        t_eff(mylist, RESNET18_CIFAR10)
    assert t_eff(mylist[:10], RESNET18_CIFAR10) == pytest.approx(3.136155764572946, rel=1e-12)
    assert round(t_eff(mylist[:10], RESNET18_CIFAR10), 3) == 3.136


def test_official_resnet34_figure():
    # get_Teff.py as shipped: Tarr (33 entries) with the 18-entry ResNet-34 list -> 18 pairs
    tarr = [16, 16, 16, 8] + [16, 8] * 12 + [8] * 5
    assert len(tarr) == 33
    assert t_eff(tarr[:18], RESNET34_IMAGENET) == pytest.approx(12.936969441569198, rel=1e-12)


def test_t_eff_hand_values():
    # T=1, r=1: 1*(1+3)/(1+1) = 2 ; T=2, r=1/2: 2*(1+8/2)/(1+1) = 5 ; T=4, r=0: 4
    assert t_eff_layers([1, 2, 4], [1.0, 0.5, 0.0]).tolist() == [2.0, 5.0, 4.0]
    assert t_eff([1, 2, 4], [1.0, 0.5, 0.0]) == pytest.approx(11 / 3)
    # r -> 0: T_eff -> T (synaptic work dominates); r -> inf: T_eff -> 5T - 2
    assert t_eff([8], [1e-12]) == pytest.approx(8.0)
    assert t_eff([8], [1e12]) == pytest.approx(38.0)


@pytest.mark.parametrize("levels, r, match", [
    ([], [], "empty"),
    ([1, 2], [0.1], "2 levels but 1 r values"),
    ([0, 2], [0.1, 0.1], ">= 1"),
    ([1.5], [0.1], "integers"),
    ([2], [-0.1], ">= 0"),
    ([2], [np.nan], "finite"),
])
def test_t_eff_errors(levels, r, match):
    with pytest.raises(ValueError, match=match):
        t_eff(levels, r)


def vgg_layer(in_channels, out_channels, kernel=3):
    """A one-layer network holding one VGG-16 layer shape (cheap: 1x1 input)."""
    if kernel:
        op = Conv2d("conv", np.zeros((out_channels, in_channels, kernel, kernel)), padding=1)
        shape = (in_channels, 1, 1)
    else:
        op, shape = Linear("fc", np.zeros((out_channels, in_channels))), (in_channels,)
    layers = [op, QCFS("act", 1.0, 4)] + ([Flatten("flat")] if kernel else [])
    return Network(shape, layers + [Linear("out", np.zeros((1, out_channels)))]).neuron_layers[0]


def test_r_from_shape_reproduces_vgg16():
    from pascal_ref.convert.templates import VGG16_CONFIG
    channels = [c for block in VGG16_CONFIG for c in block if c != "M"]
    shapes = list(zip([3] + channels[:-1], channels))
    layers = [vgg_layer(i, o) for i, o in shapes] + [vgg_layer(512, 4096, kernel=0)]
    assert [fan_in(layer) for layer in layers] == [27, 576, 576, 1152, 1152, 2304, 2304, 2304] + [4608] * 5 + [512]
    derived = [layer_r(layer) for layer in layers]   # (4/3) * 0.9 / (fan_in * 0.9)
    assert derived == pytest.approx(VGG16_CIFAR10[:14], rel=1e-12)
    # a different energy model changes r in proportion
    assert layer_r(layers[0], EnergyModel(ac_pj=0.9, neuron_pj=0.6)) == pytest.approx(0.5 * VGG16_CIFAR10[0])


def mlp(input_levels=2):
    """3 inputs -> a1 (2 neurons, L=2) -> out (2); weights chosen to make counts easy."""
    return Network((3,), [Linear("fc1", [[1.0, 1.0, 0.0], [0.0, 0.5, 0.5]]), QCFS("a1", 2.0, 2),
                          Linear("out", [[1.0, -1.0], [0.5, 0.5]])], input_levels=input_levels)


def test_mlp_hand_count():
    net = mlp()
    x = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # input levels floor(2x + 1/2): [2, 1, 0] and [0, 0, 2] -> 3 and 2 input spikes
    # fc1: z = [3/2, 1/4] and [0, 1/2] (values 1/2 per spike); theta = 1, q = clip(floor(z + 1/2), 0, 2)
    #      -> [2, 0] and [0, 1]: 2 and 1 hidden spikes
    counts = spike_counts(net, x)
    assert counts[INPUT].tolist() == [[2, 1, 0], [0, 0, 2]]
    assert counts["a1"].tolist() == [[2, 0], [0, 1]]
    cost = network_cost(net, x)
    a1, out = cost.layers
    # ACs: every input spike reaches 2 neurons: (3 + 2)/2 * 2 = 5 ; hidden spikes x 2 outputs: (2 + 1)/2 * 2 = 3
    assert (a1.acs, out.acs) == (5.0, 3.0)
    assert (a1.macs, out.macs) == (0.0, 0.0)
    # a1: T1 = L_in = 2, T2 = 2, stage 2 = 1 -> 2 neurons x 3 updates; readout none
    assert (a1.T1, a1.stage2, a1.T2, a1.steps, a1.neuron_updates) == (2, 1, 2, 5, 6.0)
    assert (out.T1, out.steps, out.neuron_updates) == (2, 2, 0.0)
    assert (a1.spikes_out, cost.spikes) == (1.5, 1.5)
    # energy: 8 ACs * 0.9 + 6 updates * 1.2 = 14.4 pJ; ANN: (3*2 + 2*2) MACs * 4.6 = 46 pJ
    assert cost.energy_pj == pytest.approx(8 * 0.9 + 6 * 1.2)
    assert (cost.ann_macs, cost.ann_energy_pj) == (10, pytest.approx(46.0))
    assert cost.energy_ratio == pytest.approx(14.4 / 46.0)
    # latency: stage 1 + 2 of a1 (3 steps) + readout integration (2) = 5 = snn.latency
    assert cost.latency == latency(net) == 5
    # T_eff: a1 T=2, r=(4/3)/3 ; out T=T1=2, r=(4/3)/2
    assert cost.t_eff == pytest.approx(t_eff([2, 2], [4 / 9, 2 / 3]))
    assert network_t_eff(net) == pytest.approx(cost.t_eff)
    # custom energy figures
    cheap = network_cost(net, counts=counts, energy=EnergyModel(mac_pj=1.0, ac_pj=0.5, neuron_pj=0.0))
    assert cheap.energy_pj == pytest.approx(4.0) and cheap.ann_energy_pj == pytest.approx(10.0)


def test_analog_first_layer_macs_exclude_padding():
    rng = np.random.default_rng(1)
    net = Network((1, 4, 4), [Conv2d("c1", rng.normal(size=(2, 1, 3, 3)), padding=1), QCFS("a1", 1.0, 2),
                              Flatten("flat"), Linear("out", rng.normal(size=(3, 32)))])
    cost = network_cost(net, rng.uniform(size=(4, 1, 4, 4)))
    # 3x3 window, padding 1 on 4x4: 4 corners see 4 pixels, 8 edge positions 6, 4 inner 9 -> 100; x 2 channels
    assert cost.layers[0].macs == 200 and cost.layers[0].acs == 0
    assert cost.layers[0].ann_macs == 200 and cost.layers[1].ann_macs == 96
    # analog input: T1 = 1, stage 2 = L - 1 = 1
    assert (cost.layers[0].T1, cost.layers[0].stage2, cost.layers[0].neuron_updates) == (1, 1, 64.0)


def brute_force_acs(source_counts, synapse):
    """One AC per (spike at the op input, output neuron that reads it), by explicit loops."""
    from pascal_ref.golden.ops import apply_pre_ops
    events = apply_pre_ops(source_counts, synapse.pre_ops, integer=True)
    op = synapse.op
    total = 0
    for image in events:
        if isinstance(op, Linear):
            total += image.sum() * op.weight.shape[0]
            continue
        out_ch, _, kh, kw = op.weight.shape
        (sh, sw), (ph, pw) = op.stride, op.padding
        _, h, w = image.shape
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        for i, j in itertools.product(range(ho), range(wo)):
            for di, dj in itertools.product(range(kh), range(kw)):
                y, x = i * sh - ph + di, j * sw - pw + dj
                if 0 <= y < h and 0 <= x < w:
                    total += image[:, y, x].sum() * out_ch
    return total / len(events)


@pytest.mark.parametrize("pool", ["max", "avg", None])
def test_conv_acs_match_brute_force(pool):
    rng = np.random.default_rng(2)
    pre = {"max": [MaxPool2d("p", 2)], "avg": [AvgPool2d("p", 2)], None: []}[pool]
    size = 3 if pool else 6
    net = Network((2, 6, 6), [Conv2d("c1", rng.normal(size=(3, 2, 3, 3)), padding=1), QCFS("a1", 1.0, 4)] + pre
                  + [Conv2d("c2", rng.normal(size=(4, 3, 2, 2)), stride=(1, 2), padding=(1, 0)), QCFS("a2", 1.5, 2),
                     Flatten("flat"), Linear("out", rng.normal(size=(5, 4 * (size + 1) * ((size - 2) // 2 + 1))))],
                  input_levels=3)
    x = rng.uniform(size=(3, 2, 6, 6))
    counts = spike_counts(net, x)
    cost = network_cost(net, counts=counts)
    for layer, row in zip(net.neuron_layers, cost.layers):
        expected = sum(brute_force_acs(counts[s.source], s) for s in layer.synapses)
        assert row.acs == pytest.approx(expected, rel=1e-12)
    assert cost.layers[1].acs > 0


def test_residual_block_counts_identity_shortcut():
    rng = np.random.default_rng(3)
    conv = lambda name: Conv2d(name, rng.normal(size=(2, 2, 3, 3)) * 0.5, padding=1)
    net = Network((2, 3, 3), [conv("c0"), QCFS("a0", 1.0, 4),
                              BasicBlock("b", conv("c1"), QCFS("a1", 1.0, 2), conv("c2"), QCFS("a2", 1.0, 1)),
                              Flatten("flat"), Linear("out", rng.normal(size=(2, 18)))])
    x = rng.uniform(size=(4, 2, 3, 3))
    counts = spike_counts(net, x)
    cost = network_cost(net, counts=counts)
    a2 = net.by_name["a2"]
    assert fan_in(a2) == 2 * 9 + 1
    shortcut = counts["a0"].reshape(4, -1).sum(axis=1).mean()
    assert cost.layers[2].acs == pytest.approx(brute_force_acs(counts["a1"], a2.synapses[0]) + shortcut)
    # a2: T1 = max(L_a1, L_a0) = 4, T2 = 1, stage 2 = 3
    assert (cost.layers[2].T1, cost.layers[2].stage2, cost.layers[2].T2) == (4, 3, 1)


def test_counts_come_from_the_snn():
    net = mlp()
    x = np.random.default_rng(4).uniform(size=(7, 3))
    counts = spike_counts(net, x, batch_size=3)
    assert np.array_equal(counts["a1"], simulate(net, x, engine="timestep").counts["a1"])


def test_cost_errors():
    net = mlp()
    with pytest.raises(ValueError, match="give the data"):
        network_cost(net)
    with pytest.raises(ValueError, match="no spike counts for 'a1'"):
        network_cost(net, counts={INPUT: np.zeros((2, 3), dtype=np.int64)})
    with pytest.raises(ValueError, match="counts of 'a1' have shape"):
        network_cost(net, counts={INPUT: np.zeros((2, 3), np.int64), "a1": np.zeros((2, 5), np.int64)})
    with pytest.raises(ValueError, match="does not match the network input"):
        network_cost(net, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty batch"):
        network_cost(net, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="mac_pj must be a finite number >= 0"):
        EnergyModel(mac_pj=-1)
    with pytest.raises(ValueError, match="ac_pj must be > 0"):
        EnergyModel(ac_pj=0)


def test_format_cost_mentions_every_layer():
    net = mlp()
    text = format_cost(network_cost(net, np.full((2, 3), 0.5)))
    assert "a1" in text and "out" in text and "latency 5 timesteps" in text


def test_cli_cost(tmp_path, capsys):
    import json

    from pascal_ref.cli import main
    from pascal_ref.io.bundled import bundled_path
    from pascal_ref.io.data import load_data
    from pascal_ref.io.fileformat import load
    out = tmp_path / "cost.json"
    assert main(["cost", "digits-mlp", "--data", "digits", "--limit", "30", "--levels", "2", "--ac-pj", "0.5",
                 "--json", str(out), "--plot", str(tmp_path)]) == 0
    assert "latency" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    net = load(bundled_path("digits-mlp")).with_levels([2])
    data = load_data("digits", net.input_shape, limit=30)
    expected = network_cost(net, data.x, energy=EnergyModel(ac_pj=0.5))
    assert payload["levels"] == [2] and payload["latency"] == expected.latency
    assert payload["energy_pj"] == pytest.approx(expected.energy_pj)
    assert payload["energy_model"]["neuron_pj"] == pytest.approx(0.5 * 4 / 3)
    assert 0.5 < payload["accuracy"] <= 1.0
    assert (tmp_path / "digits_mlp_energy.png").exists() and (tmp_path / "digits_mlp_spikes.png").exists()


@pytest.mark.parametrize("argv, match", [
    (["--levels", "2,2"], "--levels: 2 values but digits_mlp has 1 activation (act1)"),
    (["--levels", "x"], "--levels: expected an integer"),
    (["--mac-pj", "-1"], "mac_pj must be a finite number >= 0"),
    (["--limit", "0"], "--limit must be >= 1"),
])
def test_cli_cost_errors(argv, match, capsys):
    from pascal_ref.cli import main
    assert main(["cost", "digits-mlp", "--data", "digits", "--limit", "10"] + argv) == 2
    assert match in capsys.readouterr().err


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.floats(0, 10), st.floats(0, 10))
def test_t_eff_bounds_and_monotone(levels, r1, r2):
    # T_eff_l - T = T (4T - 2) r / (1 + T r) >= 0, and T_eff_l < 5T - 2 + 1e-9 (its limit as r -> inf)
    low, high = sorted((r1, r2))
    a, b = t_eff_layers([levels, levels], [low, high])
    assert levels - 1e-9 <= a <= b + 1e-9
    assert b <= 5 * levels - 2 + 1e-9
    assert a - levels == pytest.approx(levels * (4 * levels - 2) * low / (1 + levels * low), abs=1e-9)
