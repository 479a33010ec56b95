"""Architecture templates (torch-free): layout, key names, state-dict files, errors, CLI."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from pascal_ref.cli import main
from pascal_ref.convert import templates
from pascal_ref.convert.templates import StateDictError, build, expected_keys
from pascal_ref.golden.ann import float_ann
from pascal_ref.io.fileformat import load
from pascal_ref.ir.network import BasicBlock, NetworkError
from pascal_ref.testing import random_state_dict, random_template_network


@pytest.fixture(scope="module")
def resnet18_state():
    return random_state_dict("resnet18", 10, rng=1)


SMALL = (3, 16, 16)   # the templates take any input size; small keeps the tests quick


@pytest.fixture(scope="module")
def vgg16_state():
    return random_state_dict("vgg16", 10, rng=3)


@pytest.fixture(scope="module")
def vgg16_network(vgg16_state):
    return build("vgg16", 10, 4, vgg16_state)


def _logits(network, seed=0, batch=1):
    x = np.random.default_rng(seed).uniform(0, 1, (batch,) + network.input_shape)
    return float_ann(network, x).logits


# ------------------------------------------------------------ layout


@pytest.mark.parametrize("arch, activations, keys", [
    # vgg16: 13 convs (weight, bias, 4 bn, thresh) + 2 hidden linears (weight, bias, thresh) + readout (2)
    ("vgg16", 15, 13 * 7 + 2 * 3 + 2),
    # resnet18: stem (conv, 4 bn, thresh) + 8 blocks x 12 + 3 shortcuts x 5 + fc (2)
    ("resnet18", 17, 6 + 8 * 12 + 3 * 5 + 2),
    ("resnet34", 33, 6 + 16 * 12 + 3 * 5 + 2),
])
def test_activation_and_key_counts(arch, activations, keys):
    assert len(templates.activation_names(arch)) == activations
    assert len(expected_keys(arch, 10)) == keys


def test_pascal_key_names_and_shapes():
    vgg = expected_keys("vgg16", 10)
    assert vgg["layer1.0.weight"] == (64, 3, 3, 3)
    assert vgg["layer1.1.running_mean"] == (64,)
    assert vgg["layer1.2.thresh"] == (1,)
    assert vgg["layer1.4.weight"] == (64, 64, 3, 3)           # index 3 is the Dropout
    assert vgg["layer3.8.weight"] == (256, 256, 3, 3)
    assert "layer1.8.weight" not in vgg                       # layer1.8 is the AvgPool2d
    assert vgg["classifier.1.weight"] == (4096, 512)
    assert vgg["classifier.5.thresh"] == (1,)
    assert vgg["classifier.7.bias"] == (10,)
    assert expected_keys("vgg16", 1000)["classifier.1.weight"] == (4096, 512 * 7 * 7)
    assert expected_keys("vgg16", 100)["classifier.7.weight"] == (100, 4096)
    resnet = expected_keys("resnet18", 10)
    assert resnet["conv1.0.weight"] == (64, 3, 3, 3) and "conv1.0.bias" not in resnet
    assert resnet["conv2_x.0.residual_function.2.thresh"] == (1,)
    assert resnet["conv2_x.1.act.thresh"] == (1,)
    assert "conv2_x.0.shortcut.0.weight" not in resnet        # identity shortcut
    assert resnet["conv3_x.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert resnet["conv3_x.0.residual_function.0.weight"] == (128, 64, 3, 3)
    assert resnet["conv5_x.1.residual_function.4.running_var"] == (512,)
    assert resnet["fc.weight"] == (10, 512)
    assert "conv4_x.5.act.thresh" in expected_keys("resnet34", 10)


def test_levels_land_on_their_activations():
    names = templates.activation_names("resnet18")
    levels = [1 + i % 5 for i in range(len(names))]
    network = random_template_network("resnet18", 10, levels, rng=0)
    assert network.levels == levels
    assert [layer.name for layer in network.hidden_layers] == names
    assert network.by_name["conv3_x.0.act"].levels == levels[names.index("conv3_x.0.act")]
    assert templates.activation_names("vgg16")[-3:] == ["layer5.10", "classifier.2", "classifier.5"]


def test_network_structure(resnet18_state, vgg16_network):
    network = build("resnet18", 10, 4, resnet18_state)
    assert network.input_shape == (3, 32, 32) and network.input_levels is None
    blocks = [layer for layer in network.layers if isinstance(layer, BasicBlock)]
    assert len(blocks) == 8 and [b.shortcut is not None for b in blocks] == [False, False, True, False, True, False, True, False]
    assert network.by_name["conv5_x.1.act"].output_shape == (512, 4, 4)
    assert network.readout.output_shape == (10,)
    assert vgg16_network.by_name["layer5.10"].output_shape == (512, 2, 2)   # before layer5.12, the pool
    assert random_template_network("resnet18", 1000, 4, rng=0, input_shape=(3, 16, 16)).readout.output_shape == (1000,)


def test_template_matches_batchnorm_by_hand(resnet18_state):
    """The stem's levels from the template equal a direct numpy evaluation of
    conv -> batch norm -> QCFS with the state-dict arrays."""
    network = build("resnet18", 10, 4, resnet18_state)
    x = np.random.default_rng(5).uniform(0, 1, (1, 3, 32, 32))
    levels = float_ann(network, x).levels["conv1.2"][0]
    w = resnet18_state["conv1.0.weight"]
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))    # (3, 32, 32, 3, 3)
    z = np.einsum("chwij,ocij->ohw", windows, w)
    s = {k: resnet18_state[f"conv1.1.{k}"][:, None, None] for k in ("weight", "bias", "running_mean", "running_var")}
    z = (z - s["running_mean"]) / np.sqrt(s["running_var"] + 1e-5) * s["weight"] + s["bias"]
    lam = float(resnet18_state["conv1.2.thresh"][0])
    expected = np.clip(np.floor(z * 4 / lam + 0.5), 0, 4)
    assert np.mean(levels != expected) < 1e-3      # only rounding ties may differ
    assert 0 < np.mean(expected > 0) < 1


# ----------------------------------------------- state dicts and files


def test_npz_round_trip_and_qcfs_spelling(tmp_path, resnet18_state):
    reference = _logits(build("resnet18", 10, 4, resnet18_state, input_shape=SMALL))
    path = tmp_path / "r18.npz"
    np.savez(path, **resnet18_state)
    assert np.array_equal(_logits(build("resnet18", 10, 4, templates.load_state_dict(path), input_shape=SMALL)), reference)
    # the older QCFS spelling: thresholds named 'up', block activations named 'relu', DataParallel prefix
    qcfs = {}
    for key, value in resnet18_state.items():
        key = key.replace(".act.thresh", ".relu.thresh").replace(".thresh", ".up")
        qcfs["module." + key] = value.astype(np.float32).astype(np.float64)
    assert any(k.endswith("conv2_x.0.relu.up") for k in qcfs)
    network = build("resnet18", 10, 4, qcfs, input_shape=SMALL)
    assert "conv2_x.0.act" in network.by_name      # layer names stay PASCAL's
    float32_state = {k: v.astype(np.float32).astype(np.float64) for k, v in resnet18_state.items()}
    assert np.array_equal(_logits(network), _logits(build("resnet18", 10, 4, float32_state, input_shape=SMALL)))


def test_random_weights_are_reproducible_and_active(vgg16_network):
    a, b = random_state_dict("resnet18", 10, rng=3), random_state_dict("resnet18", 10, rng=3)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.0.weight"], random_state_dict("resnet18", 10, rng=4)["conv1.0.weight"])
    result = float_ann(vgg16_network, np.random.default_rng(0).uniform(0, 1, (2, 3, 32, 32)))
    for name, q in result.levels.items():
        assert 0 < np.mean(q > 0) < 1, name


def test_missing_extra_and_misshapen_keys(resnet18_state):
    state = dict(resnet18_state)
    del state["conv3_x.0.shortcut.1.running_var"]
    with pytest.raises(StateDictError, match=r"1 of 119 resnet18 keys missing: 'conv3_x.0.shortcut.1.running_var'"):
        build("resnet18", 10, 4, state)
    state = dict(resnet18_state, **{"conv2_x.0.extra.weight": np.zeros(3)})
    with pytest.raises(StateDictError, match=r"unexpected key\(s\) not in the template: 'conv2_x.0.extra.weight'"):
        build("resnet18", 10, 4, state)
    state = dict(resnet18_state, **{"conv2_x.1.residual_function.3.weight": np.zeros((64, 64, 1, 3))})
    with pytest.raises(StateDictError, match=r"'conv2_x.1.residual_function.3.weight' has shape \(64, 64, 1, 3\), the template expects \(64, 64, 3, 3\)"):
        build("resnet18", 10, 4, state)
    state = dict(resnet18_state, **{"conv2_x.0.act.up": np.ones(1)})
    with pytest.raises(StateDictError, match="'conv2_x.0.act' has several thresholds"):
        build("resnet18", 10, 4, state)
    state = dict(resnet18_state, **{"fc.bias": np.array(["a"] * 10)})
    with pytest.raises(StateDictError, match="'fc.bias' must be a numeric array"):
        build("resnet18", 10, 4, state)
    with pytest.raises(StateDictError, match="is this a vgg16 state dict"):
        build("vgg16", 10, 4, resnet18_state)
    with pytest.raises(StateDictError, match=r"'fc.weight' has shape \(10, 512\), the template expects \(100, 512\)"):
        build("resnet18", 100, 4, resnet18_state)
    with pytest.raises(StateDictError, match="mapping"):
        build("resnet18", 10, 4, [1, 2])


def test_bad_thresholds_and_levels(resnet18_state):
    state = dict(resnet18_state, **{"conv4_x.1.act.thresh": np.array([-0.5])})
    with pytest.raises(NetworkError, match="layer 'conv4_x.1.act': lam must be a finite number > 0"):
        build("resnet18", 10, 4, state)
    with pytest.raises(ValueError, match=r"levels: 3 values but resnet18 has 17 activations \(conv1.2 .. conv5_x.1.act\)"):
        build("resnet18", 10, [4, 4, 4], resnet18_state)
    with pytest.raises(ValueError, match="level for activation 'conv1.2' must be an integer >= 1, got 0"):
        build("resnet18", 10, [0] + [4] * 16, resnet18_state)
    with pytest.raises(ValueError, match="num_classes must be one of"):
        build("resnet18", 7, 4, resnet18_state)
    with pytest.raises(ValueError, match="unknown architecture 'vgg19'"):
        build("vgg19", 10, 4, resnet18_state)
    with pytest.raises(ValueError, match="unknown architecture 'vgg19'"):
        random_template_network("vgg19", 10, 4, rng=0)


def test_num_batches_tracked_is_ignored_only_for_batchnorms(resnet18_state):
    assert "conv1.1.num_batches_tracked" in resnet18_state
    build("resnet18", 10, 4, resnet18_state)     # accepted
    state = dict(resnet18_state, **{"fc.num_batches_tracked": np.array(3)})
    with pytest.raises(StateDictError, match="fc.num_batches_tracked"):
        build("resnet18", 10, 4, state)


def test_hostile_and_damaged_npz_files(tmp_path, resnet18_state):
    good = tmp_path / "good.npz"
    np.savez(good, **resnet18_state)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        templates.load_state_dict(truncated)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{"fc.weight": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(ValueError, match="'fc.weight' is a pickled object array"):
        templates.load_state_dict(objects)
    strings = tmp_path / "strings.npz"
    np.savez(strings, **{"fc.weight": np.array(["x", "y"])})
    with pytest.raises(StateDictError, match="'fc.weight' has dtype <U1"):
        templates.load_state_dict(strings)
    not_zip = tmp_path / "plain.npz"
    not_zip.write_bytes(b"hello")
    with pytest.raises(ValueError, match="plain.npz"):
        templates.load_state_dict(not_zip)
    empty = tmp_path / "empty.npz"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(ValueError, match="no arrays"):
        templates.load_state_dict(empty)
    with pytest.raises(StateDictError, match="unknown state-dict file type"):
        templates.load_state_dict(tmp_path / "model.h5")


# ----------------------------------------------------------------- CLI


def test_convert_command(tmp_path, capsys, resnet18_state):
    source = tmp_path / "state.npz"
    np.savez(source, **resnet18_state)
    output = tmp_path / "model.npz"
    levels = ",".join(str(1 + i % 4) for i in range(17))
    assert main(["convert", str(source), "--arch", "resnet18", "--classes", "10", "--levels", levels, "-o", str(output), "-q",
                 "--input-shape", "3,16,16"]) == 0
    assert "17 activations" in capsys.readouterr().out
    network = load(output)
    reference = build("resnet18", 10, [1 + i % 4 for i in range(17)], resnet18_state, input_shape=SMALL)
    assert network.levels == reference.levels
    assert np.array_equal(_logits(network), _logits(reference))


@pytest.mark.parametrize("arguments, message", [
    (["--levels", "4,4"], "resnet18 has 17 activations"),
    (["--levels", "four"], "--levels: expected an integer"),
    (["--levels", "4", "--input-shape", "3,32"], "--input-shape: expected C,H,W"),
    (["--levels", "4", "--arch-override"], None),
])
def test_convert_command_errors(tmp_path, capsys, resnet18_state, arguments, message):
    source = tmp_path / "state.npz"
    np.savez(source, **resnet18_state)
    argv = ["convert", str(source), "--arch", "resnet18", "--classes", "10", "-o", str(tmp_path / "out.npz")] + arguments
    if message is None:
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
