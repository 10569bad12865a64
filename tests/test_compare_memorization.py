"""The regression compare covers the memorization checks (memorization::wen[domain],
memorization::clique[domain]) like every other check: matched by (detector, domain), dropped
and new ones listed, and the largest Wen magnitude / clique size gated by compare_fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_factory import make_report, make_row, memorization_record

from s2l_scan.checks import Outcome
from s2l_scan.gate import apply_comparison
from s2l_scan.gate import compare_reports as compare
from s2l_scan.report.compare import parse_allowances


def _body(report: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    return body


def _report(*records: Any) -> Any:
    return make_report([make_row(max_auc=1)], memorization=list(records))


@pytest.mark.parametrize(("detector", "allowance", "before", "after", "status"), [
    ("wen", "text_guidance:+0", (1.0, 2.0), (1.0, 2.0), "ok"),
    ("wen", "text_guidance:+0", (1.0, 2.0), (2.5, 1.0), "regressed"),  # largest 2 → 2.5
    ("wen", "text_guidance:+0.5", (1.0, 2.0), (2.5, 1.0), "ok"),
    ("wen", "text_guidance:+20%", (1.0, 2.0), (2.5, 1.0), "regressed"),  # +0.5 > 0.4
    ("wen", "text_guidance:+0", (1.0, 2.0), (3.0, 0.5), "regressed"),
    ("anisotropy", "anisotropy:+0", (-0.5, 0.2), (0.2, -1.0), "ok"),
    ("anisotropy", "anisotropy:+0", (-0.5, 0.2), (0.3, -1.0), "regressed"),  # 0.2 → 0.3
    ("anisotropy", "anisotropy:+0.2", (-0.5, 0.2), (0.3, -1.0), "ok"),
    ("clique", "clique:+0", (2, 3), (3, 1), "ok"),
    ("clique", "clique:+0", (2, 3), (4, 1), "regressed"),
    ("clique", "clique:+1", (2, 3), (4, 1), "ok"),
])
def test_largest_value_is_gated(detector: str, allowance: str, before: tuple[float, ...],
                                after: tuple[float, ...], status: str) -> None:
    previous = _body(_report(memorization_record(detector, values=before, threshold=None)))
    current = _report(memorization_record(detector, values=after, threshold=None))
    checks = [c for c in compare(previous, _body(current), parse_allowances(allowance))
              if c.item.startswith("memorization::")]
    [check] = checks
    assert check.item == f"memorization::{detector}[identity-0]"
    assert (check.previous, check.current) == (max(before), max(after))
    assert check.status == status and check.passed is (status == "ok")
    apply_comparison(current, checks, "v1.json")
    record = current.memorization[0]
    assert record.gating is False  # threshold None: reported, gated only by the compare
    assert record.outcome is (Outcome.INCONCLUSIVE if status == "ok" else Outcome.FAILED)
    assert current.to_dict()["verdict"]["failed_items"] == (
        [] if status == "ok" else [check.item])
    if status == "regressed":
        assert record.reasons[-1].kind == "regression"
        assert record.reasons[-1].text.startswith(f"{check.metric} rose from ")


def test_a_metric_reads_only_its_own_detector() -> None:
    previous = _body(_report(memorization_record("wen", values=(1.0,)),
                             memorization_record("clique", values=(1,), threshold=None)))
    current = _body(_report(memorization_record("wen", values=(5.0,)),
                            memorization_record("clique", values=(9,), threshold=None)))
    checks = compare(previous, current, parse_allowances("clique:+0"))
    assert [(c.item, c.metric, c.status) for c in checks
            if c.item.startswith("memorization::")] == [
        ("memorization::clique[identity-0]", "clique", "regressed")]


@pytest.mark.parametrize("allow_dropped", [False, True])
def test_dropped_and_new_memorization_checks(allow_dropped: bool) -> None:
    previous = _body(_report(memorization_record("wen", "identity-0"),
                             memorization_record("clique", "identity-0", threshold=None)))
    current = _report(memorization_record("wen", "identity-0"),
                      memorization_record("wen", "identity-1"))
    checks = compare(previous, _body(current), (), allow_dropped)
    listed = [(c.item, c.metric, c.status, c.passed) for c in checks
              if c.item.startswith("memorization::")]
    assert listed == [
        ("memorization::wen[identity-1]", "text_guidance", "new", True),
        ("memorization::clique[identity-0]", "clique", "missing", allow_dropped)]
    apply_comparison(current, checks, "v1.json")
    assert current.passed is allow_dropped


def test_a_previous_report_from_before_memorization_lists_them_new() -> None:
    previous = _body(_report())
    del previous["memorization"]
    checks = compare(previous, _body(_report(memorization_record("wen"))),
                     parse_allowances("text_guidance:+0"))
    assert [(c.item, c.status, c.passed) for c in checks
            if c.item.startswith("memorization::")] == [
        ("memorization::wen[identity-0]", "new", True)]


def test_report_command_gates_a_memorization_regression(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    from s2l_scan.cli import main
    from s2l_scan.report.files import schema

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_report(memorization_record("wen", values=(1.0,),
                                                          threshold=None)).to_dict()))
    new.write_text(json.dumps(_report(memorization_record("wen", values=(1.5,),
                                                          threshold=None)).to_dict()))
    out_json = tmp_path / "compared.json"
    assert main(["report", str(new), "--compare", str(old), "--compare-fail",
                 "text_guidance:+0.1", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "regressed memorization::wen[identity-0]: text_guidance 1 → 1.5" in out
    compared = json.loads(out_json.read_text())
    jsonschema.validate(compared, schema())
    assert compared["verdict"]["failed_items"] == ["memorization::wen[identity-0]"]
    assert main(["report", str(new), "--compare", str(old), "--compare-fail",
                 "text_guidance:+0.5"]) == 0
