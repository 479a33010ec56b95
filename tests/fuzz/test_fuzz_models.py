"""Malformed model files: ``pascal_ref.io.fileformat.load`` gives a network that saves and loads back, or one
clear line; never a traceback, a hang or an unbounded allocation."""
from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
from builders import (
    arrays,
    byte_mutations,
    json_values,
    mutated_json,
    nested,
    write_zip,
    zip_members,
    zip_variants,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from known import KNOWN
from sandbox import examples

from pascal_ref.io.bundled import bundled_path
from pascal_ref.io.fileformat import save
from pascal_ref.testing import random_network

GRAPH_KEY = "__graph__"
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Valid model files: the bundled digits models and random dense, conv and residual networks."""
    folder = tmp_path_factory.mktemp("bases")
    paths = {"digits-mlp": bundled_path("digits-mlp"), "digits-cnn": bundled_path("digits-cnn")}
    for index, family in enumerate(("dense", "conv", "residual")):
        network = random_network(np.random.default_rng(index), family, input_levels=[4, None, 3][index])
        paths[family] = str(folder / f"{family}.npz")
        save(network, paths[family])
    result = Bases()
    for name, path in paths.items():
        with np.load(path) as archive:
            content = {key: archive[key] for key in archive.files}
        graph = json.loads(str(content.pop(GRAPH_KEY)))
        result[name] = (graph, content, open(path, "rb").read())
    return result


class Bases(dict):
    """The valid files by name: (graph, arrays, file bytes); a short repr for hypothesis reports."""

    def __repr__(self):
        return f"<{len(self)} valid model files: {', '.join(self)}>"


def _write(folder, graph_text, content) -> str:
    path = tempfile.mktemp(suffix=".npz", dir=folder)
    np.savez(path, **{GRAPH_KEY: np.array(graph_text)}, **content)
    return path


@settings(max_examples=examples(150), **SETTINGS)
@given(data=st.data())
def test_graph_field_mutations(box, tmp_path_factory, bases, data):
    graph, content, _ = bases[data.draw(st.sampled_from(sorted(bases)))]
    mutated = data.draw(mutated_json(graph))
    path = _write(tmp_path_factory.getbasetemp(), json.dumps(mutated, allow_nan=True), content)
    box.check(box.run("model", path), KNOWN["model"])


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_graph_text(box, tmp_path_factory, bases, data):
    graph, content, _ = bases["digits-mlp"]
    text = json.dumps(graph)
    choice = data.draw(st.sampled_from(["cut", "garbage", "value", "deep", "numbers"]))
    if choice == "cut":
        text = text[:data.draw(st.integers(0, len(text) - 1))]
    elif choice == "garbage":
        text = data.draw(st.text(max_size=60))
    elif choice == "value":
        text = json.dumps(data.draw(json_values), allow_nan=True)
    elif choice == "deep":
        depth = data.draw(st.sampled_from([50, 1000, 100_000]))
        text = text[:-1] + ', "extra": ' + nested(depth, *data.draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))) + "}"
    else:
        text = text.replace('"input_levels": 16', '"input_levels": ' + data.draw(
            st.sampled_from(["1e999", "-0", "16.0", "1" + "0" * 5000, "NaN", "Infinity", "0x10"])))
    path = _write(tmp_path_factory.getbasetemp(), text, content)
    box.check(box.run("model", path), KNOWN["model"])


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_array_mutations(box, tmp_path_factory, bases, data):
    graph, content, _ = bases[data.draw(st.sampled_from(sorted(bases)))]
    content = dict(content)
    key = data.draw(st.sampled_from(sorted(content)))
    action = data.draw(st.sampled_from(["replace", "reshape", "delete", "add", "rename"]))
    if action == "replace":
        content[key] = data.draw(arrays())
    elif action == "reshape":
        content[key] = content[key].reshape(-1)[:max(0, content[key].size - data.draw(st.integers(0, 3)))]
    elif action == "delete":
        del content[key]
    elif action == "add":
        content[data.draw(st.sampled_from(["extra.weight", key + "x", "fc9.bias", "__graph__x"]))] = np.zeros(2)
    else:
        content[data.draw(st.sampled_from(["../" + key, key.upper(), key + ".npy", " " + key]))] = content.pop(key)
    path = _write(tmp_path_factory.getbasetemp(), json.dumps(graph), content)
    box.check(box.run("model", path), KNOWN["model"])


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_byte_mutations(box, tmp_path_factory, bases, data):
    _, _, raw = bases[data.draw(st.sampled_from(sorted(bases)))]
    path = tempfile.mktemp(suffix=".npz", dir=tmp_path_factory.getbasetemp())
    with open(path, "wb") as handle:
        handle.write(data.draw(byte_mutations(raw)))
    box.check(box.run("model", path), KNOWN["model"])


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_container_mutations(box, tmp_path_factory, bases, data):
    name = data.draw(st.sampled_from(sorted(bases)))
    source = tempfile.mktemp(suffix=".npz", dir=tmp_path_factory.getbasetemp())
    with open(source, "wb") as handle:
        handle.write(bases[name][2])
    members, compression = data.draw(zip_variants(zip_members(source)))
    path = write_zip(tempfile.mktemp(suffix=".npz", dir=tmp_path_factory.getbasetemp()), members, compression)
    box.check(box.run("model", path), KNOWN["model"])
