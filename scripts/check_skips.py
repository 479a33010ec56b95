#!/usr/bin/env python3
"""Fail a test run that skipped a test without a listed reason, or that left a tier out (issue 17).

    PYTEST_ADDOPTS="--junitxml=build/pytest.xml" make test && python scripts/check_skips.py build/pytest.xml

Reads the JUnit XML report(s) of a pytest run and checks:

* every skipped test matches an entry of :data:`ALLOWED_SKIPS` (test id and
  reason, both regular expressions), and each entry is used no more than its
  ``most`` times and at least its ``least`` times: a failed torch install
  turns the torch tests into ``could not import 'torch'`` skips, which no
  entry allows;
* the total number of skips lies in ``[sum(least), sum(most)]`` (printed);
* every tier in :data:`TIERS` ran at least its minimum number of tests (a
  tier deselected or not collected at all is a failure, not a quiet pass).

Expected failures (``xfail``, strict in this project) are listed, not judged:
pytest fails the run itself when a strict one passes. Exit code 0 when all
holds, 1 otherwise (every problem printed), 2 for a missing or empty report.
"""
from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AllowedSkip:
    test: str      # regular expression on the test id "<classname>::<name>" (classname dotted, as in JUnit)
    reason: str    # regular expression on the skip message
    least: int
    most: int
    why: str


ALLOWED_SKIPS = (
    AllowedSkip(r"^tests\.pascal_ref\.analysis\.test_verify::test_zero_width_layer_is_one_clear_error$",
                r"already refuses zero-width layers", 0, 1,
                "the network description refuses a zero-width layer before verify can see it (issue 16 moves that "
                "check; either way the layer is refused)"),
)

# (name, classname prefix in the JUnit report, fewest tests that must have run (passed, failed or xfailed)).
TIERS = (
    ("golden model", "tests.pascal_ref.", 400),
    ("architecture", "tests.architecture.", 5),
    ("fuzz", "tests.fuzz.", 20),
    ("hardware models", "tests.pascal_hdl.model.", 100),
    ("gateware (Amaranth)", "tests.pascal_hdl.gateware.", 70),
    ("generation and synthesis", "tests.pascal_hdl.flow.", 15),
    ("formal", "tests.pascal_hdl.formal.", 40),
    ("co-simulation", "cosim.", 30),
    ("co-simulation package", "tests.pascal_cosim.", 20),
    ("board (host link, driver, AXI4-Stream)", "tests.pascal_hdl.board.", 50),
)


def read_reports(paths) -> list[dict]:
    cases = []
    for path in paths:
        root = ET.parse(path).getroot()
        for case in root.iter("testcase"):
            skipped = case.find("skipped")
            status = "passed"
            message = ""
            if skipped is not None:
                status = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
                message = skipped.get("message") or (skipped.text or "")
            elif case.find("failure") is not None or case.find("error") is not None:
                status = "failed"
            cases.append({"id": f"{case.get('classname')}::{case.get('name')}", "status": status, "message": message})
    return cases


def check(cases, allowed=ALLOWED_SKIPS, tiers=TIERS) -> tuple[list[str], list[str]]:
    """Returns (problems, notes)."""
    problems, notes = [], []
    used = [0] * len(allowed)
    skips = [c for c in cases if c["status"] == "skipped"]
    for case in skips:
        base_id = re.sub(r"\[.*\]$", "", case["id"])
        hits = [i for i, entry in enumerate(allowed) if re.search(entry.test, base_id) and re.search(entry.reason, case["message"])]
        if not hits:
            problems.append(f"skip not on the allow-list: {case['id']}: {case['message'][:200]}")
        else:
            used[hits[0]] += 1
    for entry, count in zip(allowed, used):
        if count > entry.most:
            problems.append(f"{count} skips match {entry.test} (at most {entry.most})")
        if count < entry.least:
            problems.append(f"{count} skips match {entry.test} (at least {entry.least} expected)")
    least, most = sum(e.least for e in allowed), sum(e.most for e in allowed)
    line = f"skips: {len(skips)} (allowed {least}..{most})"
    (notes if least <= len(skips) <= most else problems).append(line)
    for name, prefix, minimum in tiers:
        ran = sum(c["id"].startswith(prefix) and c["status"] != "skipped" for c in cases)
        line = f"tier {name}: {ran} tests ran (at least {minimum})"
        (notes if ran >= minimum else problems).append(line)
    xfailed = [c for c in cases if c["status"] == "xfailed"]
    if xfailed:
        notes.append(f"expected failures (strict xfail, known bugs): {len(xfailed)}")
        notes.extend(f"  xfail {c['id']}: {c['message'][:120]}" for c in xfailed)
    return problems, notes


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    missing = [p for p in argv if not Path(p).is_file()]
    if missing:
        print(f"check_skips: no report {', '.join(missing)} (was pytest run with --junitxml?)", file=sys.stderr)
        return 2
    cases = read_reports(argv)
    if not cases:
        print("check_skips: the report holds no test", file=sys.stderr)
        return 2
    problems, notes = check(cases)
    for line in notes:
        print(f"check_skips: {line}")
    for line in problems:
        print(f"check_skips: FAIL: {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
