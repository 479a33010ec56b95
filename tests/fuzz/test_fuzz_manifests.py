"""Malformed and hostile build folders: the checks ``synthesize`` runs before any tool accept only manifests
that name plain files inside the folder and a Verilog identifier as ``top``, or give one clear line."""
from __future__ import annotations

import json

from builders import base_manifest, build_folder, manifest_values, mutated_json, nested, seal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from known import KNOWN
from sandbox import examples

SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=examples(120), **SETTINGS)
@given(manifest=mutated_json(base_manifest(), manifest_values), sealed=st.booleans())
def test_mutated_manifests(box, tmp_path_factory, manifest, sealed):
    """Half the cases re-sealed after the edit (the digest matches), so the edit meets the schema, the name
    and file checks and, if it passes them, the tools; the other half must stop at the digest."""
    if sealed:
        manifest = seal(manifest)
    path = build_folder(tmp_path_factory.getbasetemp(), json.dumps(manifest, allow_nan=True))
    box.check(box.run("manifest", path), KNOWN["manifest"])


@settings(max_examples=examples(20), **SETTINGS)
@given(text=st.one_of(st.text(max_size=40), st.sampled_from([nested(100_000), nested(50_000, '{"a":', "}"),
                                                             "[" + "1" * 5000 + "]", "\ufeff{}", ""])))
def test_manifest_text(box, tmp_path_factory, text):
    path = build_folder(tmp_path_factory.getbasetemp(), text)
    box.check(box.run("manifest", path), KNOWN["manifest"])
