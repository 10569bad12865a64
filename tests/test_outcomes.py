"""Three outcomes per check and per scan: the Check shape, Reason data, the gate's interim rules,
exit codes and the on_inconclusive policy, schema-2 reports, and every renderer's INCONCLUSIVE."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest

from s2l_scan.checks import Check, Outcome, Reason, combine
from s2l_scan.cli import main
from s2l_scan.config import make_config
from s2l_scan.errors import ExitCode, NothingToScanError, ScanError, UsageError
from s2l_scan.functional.power import images_to_decide
from s2l_scan.gate import (
    MIN_PER_CLASS,
    apply_comparison,
    auc_check,
    compare_reports,
    decide,
    decide_n,
    delta_check,
    exit_code,
    judge_row,
    membership_alpha,
    tpr_check,
)
from s2l_scan.report.compare import parse_allowances
from s2l_scan.report.console import render_results
from s2l_scan.report.files import load_report, report_from_dict
from s2l_scan.report.html_page import render_html
from s2l_scan.report.junit import junit_properties
from s2l_scan.report.markdown import markdown_lines
from s2l_scan.report.model import ResultRow, ScanReport
from s2l_scan.report.model_card import section
from s2l_scan.report.sarif import render_sarif
from tests.report_factory import extraction_record, make_report, make_row, memorization_record

SCHEMA2 = Path(__file__).parent / "data" / "report-schema2.json"
P, F, I = Outcome.PASSED, Outcome.FAILED, Outcome.INCONCLUSIVE  # noqa: E741 - a table's letters


# ---- the outcome of a scan from its checks ------------------------------------------------------

def _oracle(checks: tuple[tuple[Outcome, bool], ...]) -> Outcome:
    """The rule as the issue words it, by brute force."""
    failed = [o for o, _ in checks if o == "failed"]
    gating = [o for o, g in checks if g]
    if failed:
        return F
    if gating and all(o == "passed" for o in gating):
        return P
    return I


@pytest.mark.parametrize("checks", [
    combo for size in (1, 2, 3)
    for combo in itertools.product(itertools.product((P, F, I), (True, False)), repeat=size)])
def test_scan_outcome_of_every_combination_of_checks(
        checks: tuple[tuple[Outcome, bool], ...]) -> None:
    assert combine(checks) is _oracle(checks)


def test_every_record_is_a_check_and_the_report_walks_them_all() -> None:
    report = make_report(extraction=[extraction_record()],
                         memorization=[memorization_record(threshold=None)])
    checks = list(report.checks())
    assert len(checks) == 3 + 1 + 1
    assert all(isinstance(check, Check) for check in checks)
    assert [c.gating for c in checks] == [True] * 4 + [False]  # no threshold: not gated


@pytest.mark.parametrize("body", [
    {"kind": "undecided", "setting": "max_auc", "observed": 0.7, "threshold": 0.6,
     "text": "t", "decide_n": 80},
    {"kind": "regression", "setting": "compare_fail", "observed": None, "threshold": None,
     "text": "auc rose", "decide_n": None}])
def test_reason_round_trips_through_json(body: dict[str, object]) -> None:
    reason = Reason.from_dict(json.loads(json.dumps(body)))
    assert reason.to_dict() == body
    assert Reason.from_dict("an old reason") == Reason("legacy", None, None, None, "an old reason")
    with pytest.raises(ValueError, match="reason kind"):
        Reason("made-up", None, None, None, "x")


# ---- the gate's rules ---------------------------------------------------------------------------

def _row(auc: float, upper: float | None, n: int = 20, p: float = 1e-4, **extra: object
         ) -> ResultRow:
    row = make_row(n=n)
    row.auc, row.auc_upper, row.p_adjusted = auc, upper, p
    for key, value in extra.items():
        setattr(row, key, value)
    return row


CONFIG = make_config(max_auc=0.6, max_amplification=0.05, max_tpr=0.1)
ALPHA = membership_alpha(CONFIG)


def _top(count: float, p: float) -> dict[str, object]:
    return {"count": count, "flagged": list(range(int(count))), "p_value": p, "p_adjusted": p,
            "domains": 1}


@pytest.mark.parametrize(("row", "outcome", "kinds"), [
    (_row(0.9, 0.95), F, ["auc"]),  # past max_auc and significant: a leak is shown
    (_row(0.9, 0.95, p=0.5), I, ["undecided"]),  # past but not significant: not shown
    (_row(0.5, 0.58), P, []),  # the upper bound below: safety shown
    (_row(0.5, 0.6), P, []),  # the bound at the threshold passes
    (_row(0.5, 0.7), I, ["undecided"]),  # the bound above: not shown safe
    (_row(0.55, None, n=6), I, ["undecided"]),  # no bound below 8 per class: cannot pass
    (_row(0.55, 0.7, top_members=_top(5, 1e-3)), F, ["tpr"]),  # 5 of 20 memorized > max_tpr
    (_row(0.55, 0.58, top_members=_top(5, 1e-3)), F, ["tpr"]),  # a bound never hides them
    (_row(0.55, 0.7, top_members=_top(2, 1e-3)), I, ["undecided"]),  # 2 of 20 ≤ max_tpr
    (_row(0.55, 0.7, top_members=_top(5, 0.5)), I, ["undecided"]),  # not significant
])
def test_auc_rule(row: ResultRow, outcome: Outcome, kinds: list[str]) -> None:
    got, reasons = auc_check(row, CONFIG)
    assert got is outcome
    assert [reason.kind for reason in reasons] == kinds
    if outcome is I:
        [reason] = reasons
        assert (reason.setting, reason.threshold) == ("max_auc", 0.6)
        assert reason.observed == row.auc_upper
        assert reason.decide_n is not None and reason.decide_n >= MIN_PER_CLASS
    if outcome is F and kinds == ["auc"]:
        assert reasons[0].observed == row.auc


def test_an_undecided_auc_says_the_images_that_would_decide_it() -> None:
    _, [reason] = auc_check(_row(0.5, 0.7), CONFIG)
    assert reason.decide_n == images_to_decide(0.5, 20, 20, 0.6, ALPHA, 1)
    _, [reason] = auc_check(_row(0.9, 0.95, p=0.5), CONFIG)  # a leak, not yet shown
    assert reason.decide_n == images_to_decide(0.9, 20, 20, 0.6, ALPHA, 1)


def test_decide_n_is_the_formula_rounded_up() -> None:
    assert decide_n(20, 0.5, 0.7, 0.6) == 80
    assert decide_n(13, 0.51, 0.66, 0.6) == math.ceil(13 * (0.15 / 0.09) ** 2)
    assert decide_n(100, 0.5, 0.52, 0.6) == MIN_PER_CLASS  # never below the n a pass needs
    assert decide_n(20, 0.6, 0.7, 0.6) is None  # at the threshold, no n would pass it


@pytest.mark.parametrize(("delta", "upper", "p", "outcome"), [
    (0.3, 0.4, 1e-4, F), (0.3, 0.4, 0.5, I), (0.0, 0.04, 1.0, P), (0.0, 0.2, 1.0, I),
    (0.0, None, 1.0, I)])
def test_delta_rule(delta: float, upper: float | None, p: float, outcome: Outcome) -> None:
    row = _row(0.5, 0.55, probe="noise", delta_auc=delta, delta_auc_ci=(delta - 0.1, delta + 0.1),
               delta_p_adjusted=p, delta_upper=upper)
    got, reasons = delta_check(row, CONFIG)
    assert got is outcome
    assert [r.kind for r in reasons] == {P: [], F: ["amplification"], I: ["undecided"]}[outcome]


@pytest.mark.parametrize(("estimate", "outcome"), [
    (None, None),  # 1 % FPR not estimable at this n: not gated
    ({"alpha": 0.01, "estimable": False}, None),
    ({"alpha": 0.01, "estimable": True, "tpr": 0.3, "tpr_ci": (0.2, 0.4),
      "achieved_fpr": 0.01}, F),
    ({"alpha": 0.01, "estimable": True, "tpr": 0.01, "tpr_ci": (0.0, 0.05),
      "achieved_fpr": 0.01}, P),
    ({"alpha": 0.01, "estimable": True, "tpr": 0.05, "tpr_ci": (0.0, 0.3),
      "achieved_fpr": 0.01}, I)])
def test_tpr_rule(estimate: dict[str, object] | None, outcome: Outcome | None) -> None:
    row = _row(0.5, 0.55, tpr_estimates=[] if estimate is None else [estimate])
    judged = tpr_check(row, CONFIG)
    assert (None if judged is None else judged[0]) is outcome


def test_a_row_fails_if_any_check_fails_else_inconclusive_if_any_is() -> None:
    first = _row(0.5, 0.58, n=20, p_value=1.0)
    second = _row(0.5, 0.58, n=20, p_value=1.0, probe="noise", delta_auc=0.0,
                  delta_auc_ci=(-0.05, 0.2), delta_p_value=1.0, delta_upper=0.2)
    for row in (first, second):
        judge_row(row, CONFIG)
    report = make_report([first, second])
    assert first.outcome is P and second.outcome is I  # its AUC passes, its Δ does not
    assert report.outcome is I and report.inconclusive_items == [second.item_id]
    body = report.to_dict()
    assert body["verdict"] == {"outcome": "inconclusive", "passed": False, "failed_items": [],
                               "inconclusive_items": [second.item_id]}
    assert [r["outcome"] for r in body["results"]] == ["passed", "inconclusive"]


# ---- exit codes and the policy ------------------------------------------------------------------

def test_exit_codes_are_one_enum() -> None:
    assert [(c.name, int(c)) for c in ExitCode] == [
        ("PASSED", 0), ("FAILED", 1), ("SCAN_ERROR", 2), ("NOTHING_SCANNED", 3), ("USAGE", 4),
        ("INCONCLUSIVE", 6)]  # 5 is pytest's "no tests collected"
    assert (ScanError.exit_code, NothingToScanError.exit_code, UsageError.exit_code) == (2, 3, 4)


@pytest.mark.parametrize(("outcome", "policy", "ci_end", "code"), [
    (P, "fail", "point", 0), (F, "fail", "point", 1), (I, "fail", "point", 6),
    (P, "warn", "point", 0), (F, "warn", "point", 1), (I, "warn", "point", 0),
    (I, "warn", "upper", 6),  # ci_end upper: an inconclusive verdict fails the run anyway
])
def test_exit_code_of_a_verdict_under_the_policy(outcome: Outcome, policy: str, ci_end: str,
                                                 code: int) -> None:
    report = make_report([make_row()], config={"on_inconclusive": policy, "ci_end": ci_end})
    report.results[0].outcome = outcome
    assert exit_code(report) == code


def test_on_inconclusive_is_checked() -> None:
    with pytest.raises(UsageError, match="on_inconclusive must be one of"):
        make_config(on_inconclusive="ignore")


FAST = ["--attacks", "loss", "--probes", "identity", "--bootstrap", "50",
        "--extraction-samples", "0"]


@pytest.mark.parametrize(("extra", "code"), [([], 6), (["--on-inconclusive", "warn"], 0)])
def test_cli_exits_6_on_an_inconclusive_scan_unless_warned(
        tiny_reference: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        code: int) -> None:
    # the tiny reference has 6 members / 6 non-members per domain: too few to show safety
    assert main(["scan", str(tiny_reference / "model"), "--data",
                 str(tiny_reference / "data"), *FAST, *extra]) == code
    out = capsys.readouterr().out
    assert "verdict: INCONCLUSIVE" in out
    assert ("on_inconclusive = warn" in out) is bool(extra)


pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("extra", "ret", "outcomes"), [
    ([], 6, {"failed": 6}),  # loss × (2 domains + pooled) × (released, identity probe)
    (["--s2l-on-inconclusive=warn"], 0, {"skipped": 6})])
def test_pytest_session_exits_6_or_skips_under_warn(
        pytester: pytest.Pytester, tiny_reference: Path, extra: list[str], ret: int,
        outcomes: dict[str, int]) -> None:
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--s2l-model={tiny_reference / 'model'}",
                                f"--s2l-data={tiny_reference / 'data'}", "-p",
                                "no:cacheprovider", "--s2l-attacks=loss",
                                "--s2l-probes=identity", "--s2l-extraction-samples=0",
                                "--s2l-bootstrap=50",
                                f"--junitxml={junit}", "-rs", *extra)
    assert result.ret == ret
    result.assert_outcomes(**outcomes)
    assert "INCONCLUSIVE: " in result.stdout.str()
    xml = junit.read_text()
    assert '<property name="s2l.verdict" value="inconclusive"' in xml
    assert ("<skipped" in xml) is bool(extra)
    assert xml.count('<failure message="') == (0 if extra else 6)
    assert xml.count('type="inconclusive"') == (0 if extra else 6)


# ---- schema-2 reports ---------------------------------------------------------------------------

def test_a_saved_schema2_report_loads_and_renders(tmp_path: Path) -> None:
    report = load_report(SCHEMA2)
    assert [r.outcome for r in report.results] == [P, F]
    assert all(r.kind == "legacy" for c in report.checks() for r in c.reasons)
    assert report.results[1].reasons[0].text == "AUC 0.906 > max_auc 0.6"
    assert report.outcome is F
    assert report.failed_items == json.loads(SCHEMA2.read_text())["verdict"]["failed_items"]
    out = tmp_path / "summary.md"
    assert main(["report", str(SCHEMA2), "--markdown", str(out),
                 "--html", str(tmp_path / "r.html")]) == 0
    assert "AUC 0.906 > max_auc 0.6" in out.read_text()
    again = report_from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict()  # rewritten as schema 3, it round-trips


# ---- every renderer shows INCONCLUSIVE ----------------------------------------------------------

def _inconclusive() -> ScanReport:
    report = make_report([make_row(domain="identity-0"), make_row(domain="pooled")])
    decide(report, make_config())  # 8 per class: no check can show safety
    assert report.outcome is I
    return report


def test_every_renderer_shows_inconclusive() -> None:
    report = _inconclusive()
    console = render_results(report, width=160)
    assert "verdict: INCONCLUSIVE (2 of 2 checks undecided" in console
    assert "would decide it" in console and "PASSED" not in console
    assert '<div class="banner inconclusive">Release gate INCONCLUSIVE' in render_html(report)
    markdown = "\n".join(markdown_lines(report))
    assert "⚠️ **INCONCLUSIVE**" in markdown and "### Undecided" in markdown
    sarif = render_sarif(report, root=Path("/"))
    levels = [r["level"] for r in sarif["runs"][0]["results"]]
    assert levels == ["warning", "warning"]
    assert sarif["runs"][0]["invocations"][0]["properties"]["outcome"] == "inconclusive"
    assert ("s2l.verdict", "inconclusive") in junit_properties(report)
    card = section(report)
    assert "**was INCONCLUSIVE" in card and "This is not a pass." in card
    assert "| pass |" not in card


def test_warn_policy_names_why_on_the_verdict() -> None:
    report = _inconclusive()
    report.config["on_inconclusive"] = "warn"
    console = render_results(report, width=160)
    assert "verdict: INCONCLUSIVE" in console
    assert "warning: on_inconclusive = warn, so this INCONCLUSIVE verdict exits 0" in console


# ---- consumers read Reason data, never text -----------------------------------------------------

def _regressed() -> ScanReport:
    previous = make_report([make_row(domain="identity-0")])
    current = make_report([make_row(domain="identity-0", shift=3.0, max_auc=1.0)],
                          config={"compare": "v1.json", "compare_fail": "auc:+0.02"})
    checks = compare_reports(json.loads(json.dumps(previous.to_dict())),
                             json.loads(json.dumps(current.to_dict())),
                             parse_allowances("auc:+0.02"))
    apply_comparison(current, checks, "v1.json")
    return current


def test_sarif_files_a_regression_under_its_rule_whatever_its_text() -> None:
    report = _regressed()
    for check in report.checks():  # the text is for people, and may be reworded
        check.reasons[:] = [dataclasses.replace(r, text="überarbeitet") for r in check.reasons]
    results = render_sarif(report, root=Path("/"))["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("s2l/regression/auc", "error")]
    assert results[0]["properties"]["kinds"] == ["regression"]


def test_junit_and_pytest_properties_come_from_the_check() -> None:
    report = _inconclusive()
    row = report.results[0]
    properties = row.properties(report.config)
    assert properties["outcome"] == "inconclusive"
    assert properties["threshold_max_auc"] == "0.6"
    assert dict(junit_properties(report))["s2l.inconclusive"] == "2"
