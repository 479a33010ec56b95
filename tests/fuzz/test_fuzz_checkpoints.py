"""Malformed and hostile torch checkpoints: ``load_pth`` gives plain containers of read-only arrays, or one
clear line; nothing in the file runs, and no small file expands without bound."""
from __future__ import annotations

import tempfile

import numpy as np
from builders import byte_mutations, pickle_programs, pth_members, write_zip, zip_variants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from known import KNOWN
from sandbox import examples

SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tensors(rng):
    return {"fc.weight": rng.normal(size=(3, 4)).astype(np.float32), "fc.bias": rng.normal(size=3),
            "steps": np.array(7, np.int64), "half": np.arange(6, dtype=np.float16).reshape(2, 3),
            "mask": np.array([True, False])}


@settings(max_examples=examples(150), **SETTINGS)
@given(program=pickle_programs(), storages=st.sampled_from([0, 1, 2]))
def test_pickle_programs(box, tmp_path_factory, program, storages):
    members = [("archive/data.pkl", program), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{index}", np.arange(4, dtype=np.float32).tobytes()) for index in range(storages)]
    path = write_zip(tempfile.mktemp(suffix=".pth", dir=tmp_path_factory.getbasetemp()), members)
    box.check(box.run("checkpoint", path), KNOWN["checkpoint"])


@settings(max_examples=examples(80), **SETTINGS)
@given(data=st.data())
def test_mutated_state_dicts(box, tmp_path_factory, data):
    members = pth_members(_tensors(np.random.default_rng(data.draw(st.integers(0, 50)))))
    path = tempfile.mktemp(suffix=".pth", dir=tmp_path_factory.getbasetemp())
    choice = data.draw(st.sampled_from(["pickle bytes", "container", "file bytes"]))
    if choice == "pickle bytes":
        members[0] = (members[0][0], data.draw(byte_mutations(members[0][1])))
        write_zip(path, members)
    elif choice == "container":
        variants, compression = data.draw(zip_variants(members))
        write_zip(path, variants, compression)
    else:
        write_zip(path, members)
        raw = open(path, "rb").read()
        with open(path, "wb") as handle:
            handle.write(data.draw(byte_mutations(raw)))
    box.check(box.run("checkpoint", path), KNOWN["checkpoint"])
