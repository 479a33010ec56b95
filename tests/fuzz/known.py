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


MODEL: list = []

MANIFEST: list = []

KNOWN = {"model": MODEL, "data-mlp": [], "data-cnn": [], "checkpoint": [], "manifest": MANIFEST}
