"""Failures the fuzzing tier finds in code it may not change, recognized by their outcome.

Each entry is ``(name, predicate)``; the property tests count a matching
outcome as ``known`` instead of failing, and ``test_known_failures.py``
pins each one with a minimal reproducer marked ``xfail(strict=True)``, so
a fix makes that reproducer pass, which fails the tier until its entry here
and its mark are removed.  The owners and the changes needed are listed in
``docs/threat-model.md`` ("Open items").
"""
from __future__ import annotations

import re


def _traceback(kind_of_error: str, where: str, message: str = ""):
    def predicate(answer):
        return (answer["outcome"] == "traceback" and answer.get("type") == kind_of_error
                and where in answer.get("trace", "") and message in answer.get("message", ""))
    return predicate


def _overlong(source: str):
    def predicate(answer):
        return answer["outcome"] == "error" and answer.get("length", 0) > 2000 and source in answer.get("message", "")
    return predicate


def _invariant(pattern: str):
    def predicate(answer):
        return answer["outcome"] == "ok" and bool(re.search(pattern, answer.get("invariant", "")))
    return predicate


MODEL = [
    ("fileformat.load: deeply nested JSON in __graph__ is a RecursionError traceback",
     _traceback("RecursionError", "fileformat.py")),
    ("fileformat.load: an integer of more than 4300 digits in __graph__ is a ValueError traceback",
     _traceback("ValueError", "fileformat.py", "Exceeds the limit")),
    ("ir.layers: an integer too large for a float (lam=10**400) is an OverflowError traceback",
     _traceback("OverflowError", "layers.py")),
    ("ir.layers: error messages quote the whole hostile value (unbounded length)",
     _overlong(".npz: ")),
    ("fileformat.load: unknown fields are ignored", _invariant(r"field '[^']*' only in the file")),
    ("fileformat.load: a missing field takes a default", _invariant(r"field '[^']*' only in the saved graph")),
    ("fileformat.load: a non-integer size is coerced (input_shape [64.9] read as 64)",
     _invariant(r"input_shape\[\d+\]: .* in the file, .* saved")),
]

MANIFEST = [
    ("synth._load_manifest: a manifest that is not a JSON object is a TypeError traceback",
     _traceback("TypeError", "_load_manifest", "is not iterable")),
    ("synth.synthesize: 'verilog' that is not a list of strings is a TypeError traceback",
     _traceback("TypeError", "synthesize")),
    ("synth._load_manifest: deeply nested JSON is a RecursionError traceback",
     _traceback("RecursionError", "_load_manifest")),
    ("synth._load_manifest: an integer of more than 4300 digits is a ValueError traceback",
     _traceback("ValueError", "_load_manifest", "Exceeds the limit")),
    ("synth: error messages quote whole port entries (unbounded length)", _overlong("manifest.json")),
    ("synth.synthesize: a 'top' that is not a Verilog identifier reaches the wrapper and the tools",
     _invariant(r"top .* reached the tools")),
    ("synth.synthesize: 'verilog' entries outside the folder (absolute, '..', ';') are read, copied and pasted "
     "into the yosys script", _invariant(r"verilog entry .* reached the tools|unexpected files")),
]

KNOWN = {"model": MODEL, "data-mlp": [], "data-cnn": [], "checkpoint": [], "manifest": MANIFEST}
