"""The .npz model format: exact round trip and a clear error for every malformed file."""
import json
import zipfile

import numpy as np
import pytest

from pascal_ref import ModelFileError, float_ann, load, save
from pascal_ref.io.fileformat import GRAPH_KEY
from pascal_ref.testing import FAMILIES, random_inputs, random_network


@pytest.fixture
def saved(tmp_path):
    network = random_network(np.random.default_rng(0), "residual", input_levels=None)
    path = tmp_path / "model.npz"
    save(network, path)
    return network, path


def rewrite(path, out, graph_edit=None, arrays_edit=None):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    graph = json.loads(str(arrays.pop(GRAPH_KEY)))
    if graph_edit:
        graph_edit(graph)
    if arrays_edit:
        arrays_edit(arrays)
    np.savez(out, **{GRAPH_KEY: np.array(json.dumps(graph))}, **arrays)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_exact(tmp_path, family):
    network = random_network(np.random.default_rng(1), family, input_levels=4)
    save(network, tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.summary() == network.summary()
    for a, b in zip(network.neuron_layers, again.neuron_layers):
        assert a.name == b.name and a.levels == b.levels
        np.testing.assert_array_equal(a.bias, b.bias)
        for sa, sb in zip(a.synapses, b.synapses):
            if hasattr(sa.op, "weight"):
                np.testing.assert_array_equal(sa.op.weight, sb.op.weight)
        if a.activation:
            assert (a.activation.lam, a.activation.phi) == (b.activation.lam, b.activation.phi)
    x = random_inputs(network, np.random.default_rng(2), 4)
    np.testing.assert_array_equal(float_ann(network, x).logits, float_ann(again, x).logits)
    save(again, tmp_path / "m2.npz")
    assert load(tmp_path / "m2.npz").summary() == network.summary()


def first_conv(graph):
    return next(l for l in graph["layers"] if l["type"] == "Conv2d")


def first_qcfs(graph):
    return next(l for l in graph["layers"] if l["type"] == "QCFS")


CASES = [
    ("missing array", None, lambda a: a.pop("conv1.bias"), r"layer 'conv1': missing array 'conv1.bias'"),
    ("extra array", None, lambda a: a.update({"ghost.weight": np.zeros(3)}), r"unexpected array.*ghost.weight"),
    ("wrong shape", None, lambda a: a.update({"conv1.weight": np.zeros((3, 2, 3))}), r"layer 'conv1'.*weight.*4 dimensions"),
    ("wrong dtype", None, lambda a: a.update({"conv1.bias": a["conv1.bias"].astype(np.int32)}), r"'conv1.bias' must be float32 or float64"),
    ("NaN", None, lambda a: a["conv1.weight"].__setitem__((0, 0, 0, 0), np.nan), r"'conv1.weight' contains NaN or Inf"),
    ("Inf", None, lambda a: a["readout.bias"].__setitem__(0, np.inf), r"'readout.bias' contains NaN or Inf"),
    ("L < 1", lambda g: first_qcfs(g).update(levels=0), None, r"layer 'act1': levels \(L\) must be an integer >= 1"),
    ("L float", lambda g: first_qcfs(g).update(levels=2.5), None, r"layer 'act1': field 'levels' has the wrong type"),
    ("lambda <= 0", lambda g: first_qcfs(g).update(lam=-1.0), None, r"layer 'act1': lam must be a finite number > 0"),
    ("lambda NaN", lambda g: first_qcfs(g).update(lam=float("nan")), None, r"layer 'act1': lam must be a finite"),
    ("unknown type", lambda g: g["layers"].insert(0, {"type": "Softmax", "name": "sm"}), None, r"layer 'sm': unknown layer type 'Softmax'"),
    ("wrong version", lambda g: g.update(version=99), None, r"format version 99 is not supported"),
    ("wrong format", lambda g: g.update(format="other"), None, r"not a pascal-ref network"),
    ("missing stride", lambda g: first_conv(g).pop("stride"), None, r"layer 'conv1': missing field 'stride'"),
    ("shape mismatch", lambda g: g.update(input_shape=[3, 6, 6]), None, r"layer 'conv1'.*expects input"),
]


@pytest.mark.parametrize("label, graph_edit, arrays_edit, message", CASES, ids=[c[0] for c in CASES])
def test_malformed_files(saved, tmp_path, label, graph_edit, arrays_edit, message):
    _, path = saved
    bad = rewrite(path, tmp_path / "bad.npz", graph_edit, arrays_edit)
    with pytest.raises(ModelFileError, match=message):
        load(bad)


def test_hostile_and_broken_archives(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ModelFileError, match="not an .npz archive|damaged"):
        load(truncated)
    with pytest.raises(ModelFileError, match="no such file"):
        load(tmp_path / "absent.npz")
    plain = tmp_path / "state_dict.npz"
    np.savez(plain, **{"layer1.0.weight": np.zeros((2, 2))})
    with pytest.raises(ModelFileError, match="not a pascal-ref model file"):
        load(plain)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{GRAPH_KEY: np.array("{}"), "conv1.weight": np.array([object()], dtype=object)})
    with pytest.raises(ModelFileError, match="pickled object array; refused"):
        load(objects)
    not_json = tmp_path / "not_json.npz"
    np.savez(not_json, **{GRAPH_KEY: np.array("{oops")})
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load(not_json)
    # A zip whose member claims to be .npy but holds a pickle: refused, never executed.
    evil = tmp_path / "evil.npz"
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr(GRAPH_KEY + ".npy", pickle.dumps(Boom()))
    with pytest.raises(ModelFileError):
        load(evil)


# ------------------------------------------------------------ strict schema (issue 16)


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.update(extra=1), r"unknown top-level field 'extra' in '__graph__'"),
    (lambda g: g["layers"][0].update(unknown=1), r"layer '\w+': unknown field 'unknown' in a \w+ entry"),
    (lambda g: g.pop("name"), r"'__graph__' has no field 'name'"),
    (lambda g: g.pop("input_levels"), r"'__graph__' has no field 'input_levels' \(null for analog input\)"),
    (lambda g: g.update(input_shape=[64.9]), r"input_shape must be a tuple of positive ints, got \[64.9\]"),
    (lambda g: g.update(input_shape=[True]), r"input_shape must be a tuple of positive ints"),
    (lambda g: g.update(name="a/../b"), r"invalid network name 'a/../b'"),
    (lambda g: g.update(name="n" * 129), r"129 characters, more than the limit of 128"),
    (lambda g: g["layers"][0].update(name="input"), r"invalid layer name 'input'.*not 'input'"),
], ids=["top-field", "layer-field", "no-name", "no-input-levels", "fractional", "bool", "slash-name", "long-name",
        "input-name"])
def test_the_schema_is_strict(saved, tmp_path, edit, message):
    _, path = saved
    with pytest.raises(ModelFileError, match=message):
        load(rewrite(path, tmp_path / "bad.npz", edit))


def test_save_never_writes_what_load_refuses(saved, tmp_path):
    network, path = saved
    load(path)
    object.__setattr__(network.layers[0], "name", "bad name")   # past the constructor's check
    with pytest.raises(ModelFileError, match=r"save: the network cannot be written as a model file that loads back: "
                                             r".*invalid layer name 'bad name'"):
        save(network, tmp_path / "never.npz")
    assert not (tmp_path / "never.npz").exists()
