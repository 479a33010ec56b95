"""Malformed data files: ``load_data(path, network=...)`` gives data the model can take, or one clear line."""
from __future__ import annotations

import tempfile

import numpy as np
from builders import arrays, byte_mutations, npy_bytes, write_zip, zip_variants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from known import KNOWN
from sandbox import examples

SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MODELS = {"data-mlp": (64,), "data-cnn": (1, 8, 8)}


def sample_shapes(input_shape):
    """Shapes near the model's: exact, flat, channels last, one axis off, empty, scalars."""
    n = st.integers(0, 5)
    size = int(np.prod(input_shape))
    near = [input_shape, (size,), tuple(reversed(input_shape)), input_shape[1:], input_shape + (1,),
            (size + 1,), (8, 8), (8, 8, 1), (1, 8, 8), (2, 32), ()]
    return st.builds(lambda count, tail: (count,) + tuple(tail), n, st.sampled_from(near))


@settings(max_examples=examples(120), **SETTINGS)
@given(data=st.data())
def test_generated_arrays(box, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(sorted(MODELS)))
    x = data.draw(arrays(sample_shapes(MODELS[kind])))
    content = {"x": x}
    if data.draw(st.booleans()):
        count = x.shape[0] if x.ndim else 1
        content["y"] = data.draw(arrays(st.sampled_from([(count,), (count, 1), (), (count + 1,), (0,)])))
    if data.draw(st.integers(0, 9)) == 0:
        content[data.draw(st.sampled_from(["z", "X", "labels", "x.npy"]))] = np.zeros(3)
    path = tempfile.mktemp(suffix=".npz", dir=tmp_path_factory.getbasetemp())
    np.savez(path, **content)
    box.check(box.run(kind, path), KNOWN[kind])


@settings(max_examples=examples(60), **SETTINGS)
@given(data=st.data())
def test_container_and_byte_mutations(box, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(sorted(MODELS)))
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    x = rng.uniform(0, 1, (6,) + MODELS[kind])
    members = [("x.npy", npy_bytes(x)), ("y.npy", npy_bytes(rng.integers(0, 10, 6)))]
    path = tempfile.mktemp(suffix=".npz", dir=tmp_path_factory.getbasetemp())
    if data.draw(st.booleans()):
        variants, compression = data.draw(zip_variants(members))
        write_zip(path, variants, compression)
    else:
        write_zip(path, members)
        raw = open(path, "rb").read()
        with open(path, "wb") as handle:
            handle.write(data.draw(byte_mutations(raw)))
    box.check(box.run(kind, path), KNOWN[kind])
