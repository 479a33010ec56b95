"""scripts/check_skips.py: a skip without a listed reason, or a tier that did not run, fails CI (issue 17)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_skips", REPO / "scripts" / "check_skips.py")
check_skips = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_skips", check_skips)   # dataclasses look their module up
_spec.loader.exec_module(check_skips)

TIERS = (("golden model", "tests.pascal_ref.", 2),)
LISTED = "tests.pascal_ref.analysis.test_verify::test_zero_width_layer_is_one_clear_error"


def case(test_id, status="passed", message=""):
    return {"id": test_id, "status": status, "message": message}


def test_a_listed_skip_passes_and_is_counted():
    cases = [case("tests.pascal_ref.a::test_x"), case("tests.pascal_ref.a::test_y"),
             case(LISTED, "skipped", "the network description already refuses zero-width layers")]
    problems, notes = check_skips.check(cases, tiers=TIERS)
    assert problems == [] and "skips: 1 (allowed 0..1)" in notes


def test_a_failed_torch_install_fails_the_check():
    """What importorskip reports when torch is missing: not on the allow-list, whatever the test."""
    cases = [case("tests.pascal_ref.a::test_x"), case("tests.pascal_ref.a::test_y"),
             case(LISTED, "skipped", "could not import 'torch': No module named 'torch'")]
    problems, _ = check_skips.check(cases, tiers=TIERS)
    assert problems == [f"skip not on the allow-list: {LISTED}: could not import 'torch': No module named 'torch'"]


def test_too_many_skips_and_a_missing_tier_fail():
    entry = check_skips.AllowedSkip(r"::test_p$", "flaky", 0, 1, "")
    cases = [case("tests.pascal_ref.a::test_p[1]", "skipped", "flaky"), case("tests.pascal_ref.a::test_p[2]", "skipped", "flaky")]
    problems, _ = check_skips.check(cases, allowed=(entry,), tiers=TIERS + (("formal", "tests.pascal_hdl.formal.", 1),))
    assert problems == [r"2 skips match ::test_p$ (at most 1)", "skips: 2 (allowed 0..1)",
                        "tier golden model: 0 tests ran (at least 2)", "tier formal: 0 tests ran (at least 1)"]


def test_report_reading_and_exit_codes(tmp_path):
    report = tmp_path / "pytest.xml"
    report.write_text('<?xml version="1.0"?><testsuites><testsuite>'
                      '<testcase classname="tests.pascal_ref.a" name="test_x"/>'
                      '<testcase classname="tests.pascal_ref.a" name="test_y"><skipped type="pytest.xfail" message="bug"/></testcase>'
                      '<testcase classname="tests.pascal_ref.a" name="test_z"><skipped type="pytest.skip" message="no gpu"/></testcase>'
                      '</testsuite></testsuites>')
    cases = check_skips.read_reports([report])
    assert [c["status"] for c in cases] == ["passed", "xfailed", "skipped"]
    assert check_skips.main([str(report)]) == 1                 # the unlisted skip (and the missing tiers)
    assert check_skips.main([str(tmp_path / "missing.xml")]) == 2
