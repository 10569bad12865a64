"""The regression gate against a previous report: allowances, matching, statuses, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_factory import extraction_record, make_report, make_row

from s2l_scan.checks import Outcome
from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.gate import apply_comparison, decide, regression_reason
from s2l_scan.gate import compare_reports as compare
from s2l_scan.report.compare import config_changes, parse_allowances, summary
from s2l_scan.report.files import load_report, read_report_dict


def _body(report: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    return body


@pytest.mark.parametrize(("text", "canonical"), [
    ("auc:+0.02", ["auc:+0.02"]),
    ("auc:0.02, extracted:+0", ["auc:+0.02", "extracted:+0"]),
    ("tpr:+10%", ["tpr:+10%"]),
    ("asr:+1e-3", ["asr:+0.001"]),
])
def test_parse_allowances(text: str, canonical: list[str]) -> None:
    assert [a.text for a in parse_allowances(text)] == canonical


@pytest.mark.parametrize(("text", "message"), [
    ("aucc:+0.02", "unknown metric 'aucc'; did you mean 'auc'?"),
    ("auc:-0.02", "expected METRIC:+AMOUNT"),
    ("auc", "expected METRIC:+AMOUNT"),
    ("auc:+0.1,auc:+0.2", "given twice"),
    (" , ", "names no metric"),
])
def test_bad_allowances_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("?", r"\?").replace("+", r"\+")):
        parse_allowances(text)


def _pair(previous_shift: float, current_shift: float) -> tuple[dict[str, Any], Any]:
    previous = make_report([make_row(domain="identity-0", shift=previous_shift, max_auc=1)])
    current = make_report([make_row(domain="identity-0", shift=current_shift, max_auc=1)])
    return _body(previous), current


@pytest.mark.parametrize(("allowance", "status"), [
    ("auc:+0.02", "regressed"),
    ("auc:+0.5", "ok"),
    ("auc:+1000%", "ok"),
    ("tpr:+0", "ok"),  # both TPRs are 0 in the factory
])
def test_rise_past_allowance_regresses(allowance: str, status: str) -> None:
    previous, current = _pair(0.0, 1.5)
    checks = compare(previous, _body(current), parse_allowances(allowance))
    assert [check.status for check in checks] == [status]
    assert checks[0].passed is (status == "ok")


def test_equal_rise_is_allowed_despite_float_rounding() -> None:
    previous, current = _pair(0.0, 0.0)
    previous["results"][0]["auc"] = 0.60
    body = _body(current)
    body["results"][0]["auc"] = 0.62  # 0.62 - 0.60 = 0.0200000000000000018
    assert compare(previous, body, parse_allowances("auc:+0.02"))[0].status == "ok"


@pytest.mark.parametrize("allow_dropped", [False, True])
def test_rows_match_by_attack_probe_domain_and_dropped_rows_fail(allow_dropped: bool) -> None:
    previous = _body(make_report([make_row(domain="identity-0"), make_row(domain="old")]))
    current = _body(make_report([make_row(domain="identity-0", shift=5.0),
                                 make_row(domain="new", shift=5.0),
                                 make_row(domain="identity-0", probe="lora", shift=5.0)]))
    checks = compare(previous, current, parse_allowances("auc:+0"), allow_dropped)
    assert [(c.item, c.status, c.passed) for c in checks] == [
        ("baselines::loss[identity-0]", "regressed", False),
        ("baselines::loss[new]", "new", True),
        ("probes::lora/loss[identity-0]", "new", True),
        ("baselines::loss[old]", "missing", allow_dropped),
    ]


def test_dropped_checks_are_found_whatever_the_metrics_once_each() -> None:
    # the finding: a scan with fewer attacks and no extraction compared on AUC alone said
    # "0 regression(s)"; every check of the previous report it lacks is now listed and fails
    previous = _body(make_report([make_row(domain="a"), make_row(domain="b"),
                                  make_row(domain="a", attack="secmi")],
                                 extraction=[extraction_record(domain="a")]))
    current = _body(make_report([make_row(domain="a")], extraction=[]))
    checks = compare(previous, current, parse_allowances("auc:+0.5,tpr:+0.5"))
    dropped = [(c.item, c.metric) for c in checks if c.status == "missing"]
    assert dropped == [("baselines::loss[b]", "auc"), ("baselines::secmi[a]", "auc"),
                       ("extraction::released[a]", "extracted")]
    assert not any(c.passed for c in checks if c.status == "missing")
    report = make_report([make_row(domain="a")])
    apply_comparison(report, checks, "v1.json")
    assert report.to_dict()["verdict"]["failed_items"] == [item for item, _ in dropped]
    assert regression_reason(checks[-1], "v1.json").kind == "dropped"
    assert regression_reason(checks[-1], "v1.json").text.startswith(
        "dropped: checked in the previous report v1.json but not in this scan")


@pytest.mark.parametrize(("previous", "current", "changed"), [
    ({"max_auc": 0.6, "seed": 0}, {"max_auc": 0.6, "seed": 0}, []),
    ({"probes": ["noise", "lora"]}, {"probes": []}, [("probes", ["noise", "lora"], [])]),
    ({"attacks": ("loss",)}, {"attacks": ["loss"]}, []),  # a tuple is its JSON list
    ({}, {"max_tpr": 0.1}, [("max_tpr", None, 0.1)]),  # a key the old version lacked
    ({"compare": "v0.json", "cache_dir": "/a", "report_html": "a.html", "threads": 1},
     {"compare": "v1.json", "cache_dir": "/b", "report_html": None, "threads": 4},
     [("threads", 1, 4)]),  # where files go is bookkeeping, not a change of the scan
])
def test_config_changes(previous: dict[str, Any], current: dict[str, Any],
                        changed: list[tuple[str, Any, Any]]) -> None:
    assert [(c["key"], c["previous"], c["current"])
            for c in config_changes(previous, current)] == changed


def test_decide_lists_config_changes_and_honours_allow_dropped_checks() -> None:
    previous = _body(make_report([make_row(domain="identity-0", max_auc=1),
                                  make_row(domain="gone", max_auc=1)]))
    previous["config"]["max_auc"] = 0.9
    # allowed, the drop no longer fails; the one row (8 per class) is judged by the real gate,
    # and at max_auc 1.0 its upper bound (issued from 8 per class) is within it: passed
    for allow, outcome in [(False, Outcome.FAILED), (True, Outcome.PASSED)]:
        config = make_config({"compare": "v1.json", "allow_dropped_checks": allow,
                              "max_auc": 1.0})
        report = make_report([make_row(domain="identity-0", max_auc=1)])
        report.config = config.to_dict()  # the scan echoes its config
        decide(report, config, previous, (), "v1.json")
        assert report.outcome is outcome
        assert [c["key"] for c in report.config_changes] == ["max_auc"]
        lines = summary(report.comparison, report.config_changes, "v1.json", None, allow)
        assert lines[0] == ("compared with v1.json: 0 regression(s) past nothing (compare only), "
                            f"1 dropped check(s){' (allowed)' if allow else ''}, 0 new check(s), "
                            "1 configuration change(s)")
        assert lines[1:] == ["  dropped baselines::loss[gone]", "  config max_auc: 0.9 → 1.0"]


def test_extraction_counts_compare_per_probe_and_domain() -> None:
    previous = _body(make_report(extraction=[extraction_record(extracted=1)]))
    current = _body(make_report(extraction=[extraction_record(extracted=2),
                                            extraction_record(domain="identity-1")]))
    checks = compare(previous, current, parse_allowances("extracted:+0"))
    assert [(c.item, c.previous, c.current, c.status) for c in checks] == [
        ("extraction::released[identity-0]", 1.0, 2.0, "regressed"),
        ("extraction::released[identity-1]", None, 0.0, "new"),
    ]


def test_extracted_compares_distinct_images_not_generations() -> None:
    # The same member image, matched by more generations now: no more images were extracted.
    previous = _body(make_report(extraction=[extraction_record(extracted=1)]))
    current = _body(make_report(extraction=[extraction_record(extracted=1,
                                                              matched_generations=4)]))
    checks = compare(previous, current, parse_allowances("extracted:+0"))
    assert [(c.previous, c.current, c.status) for c in checks] == [(1.0, 1.0, "ok")]
    more = _body(make_report(extraction=[extraction_record(extracted=2, matched_generations=2)]))
    checks = compare(previous, more, parse_allowances("extracted:+0"))
    assert [(c.previous, c.current, c.status) for c in checks] == [(1.0, 2.0, "regressed")]


def test_previous_report_without_extraction_is_no_baseline() -> None:
    previous = _body(make_report())
    del previous["extraction"]
    checks = compare(previous, _body(make_report(extraction=[extraction_record(extracted=3)])),
                     parse_allowances("extracted:+0"))
    assert [(c.status, c.passed, c.current) for c in checks] == [
        ("no-baseline", True, 3)]


def test_compare_without_allowances_is_information_only() -> None:
    previous, current = _pair(0.0, 5.0)
    checks = compare(previous, _body(current))
    assert [(c.metric, c.status, c.allowance) for c in checks] == [("auc", "ok", None)]


def test_apply_fails_the_row_with_a_reason_and_the_verdict() -> None:
    previous, current = _pair(0.0, 1.5)
    assert current.passed
    apply_comparison(current, compare(previous, _body(current), parse_allowances("auc:+0.02")),
                     "v1.json")
    row = current.results[0]
    assert not row.passed and not current.passed
    assert row.reasons[0].kind == "regression" and row.reasons[0].setting == "compare_fail"
    assert row.reasons[0].text.startswith("auc rose from ")
    assert "since the previous report v1.json; allowed auc:+0.02" in row.reasons[0].text
    assert current.to_dict()["verdict"]["failed_items"] == ["baselines::loss[identity-0]"]


def test_extraction_regression_fails_the_verdict_once() -> None:
    previous = _body(make_report([make_row(max_auc=1)],
                                 extraction=[extraction_record(extracted=0)]))
    current = make_report([make_row(max_auc=1)],
                          extraction=[extraction_record(extracted=1, max_extracted=5)])
    apply_comparison(current, compare(previous, _body(current),
                                      parse_allowances("extracted:+0")), "v1.json")
    assert current.passed is False
    assert current.to_dict()["verdict"]["failed_items"] == ["extraction::released[identity-0]"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "no schema_version"),
    ('{"schema_version": "1"}', "schema version '1'; this s2l-scan reads versions 2, 3"),
    ('{"schema_version": "2", "model": {}, "config": {}}', "missing 'results'"),
    ('{"schema_version": "2", "model": {}, "config": {}, "results": [{"attack": "x"}]}',
     "results\\[0\\] lacks"),
])
def test_unreadable_previous_reports_are_usage_errors_naming_the_file(
        tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "v1.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=f"{path}.*{message}"):
        read_report_dict(path)


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    report = make_report(extraction=[extraction_record(extracted=1)])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report.to_dict()))
    assert _body(load_report(path)) == _body(report)


@pytest.mark.parametrize(("values", "message"), [
    ({"compare_fail": "auc:+0.02"}, "compare_fail needs compare"),
    ({"compare": "v1.json", "compare_fail": "auk:+1"}, "did you mean 'auc'"),
    ({"compare": ""}, "compare must be a non-empty string"),
    ({"report_sarif": 3}, "report_sarif must be a non-empty string"),
    ({"comapre": "v1.json"}, "did you mean 'compare'"),
])
def test_config_keys_validate(values: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_config(values)


def test_compare_fail_accepts_a_toml_table() -> None:
    config = make_config({"compare": "v1.json", "compare_fail": {"auc": 0.02, "tpr": "10%"}})
    assert config.compare_fail == "auc:+0.02,tpr:+10%"
    assert config.to_dict()["compare_fail"] == "auc:+0.02,tpr:+10%"


@pytest.mark.parametrize(("current_rows", "extra", "code", "line"), [
    (3, [], 0, "0 regression(s) past nothing (compare only), 0 dropped check(s), 0 new check(s)"),
    (1, [], 1, "2 dropped check(s), 0 new check(s)"),
    (1, ["--allow-dropped-checks"], 0, "2 dropped check(s) (allowed)"),
    (3, ["--compare-fail", "auc:+0"], 0, "0 regression(s) past auc:+0"),
])
def test_report_command_compares_two_saved_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], current_rows: int,
        extra: list[str], code: int, line: str) -> None:
    from s2l_scan.cli import main

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(make_report().to_dict()))
    current = make_report()
    current.results = current.results[:current_rows]
    new.write_text(json.dumps(current.to_dict()))
    markdown = tmp_path / "summary.md"
    assert main(["report", str(new), "--compare", str(old), "--markdown", str(markdown),
                 *extra]) == code
    out = capsys.readouterr().out
    assert line in out and f"comparison: {'passed' if code == 0 else 'FAILED'}" in out
    assert f"Compared with `{old}`" in markdown.read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["--compare-fail", "auc:+0", "--html", "{tmp}/x.html"], "need --compare"),
    (["--compare", "{tmp}/missing.json"], "does not exist"),
    (["--compare", "{tmp}/compared.json"], "already compared with"),
    (["--compare", "{tmp}/r.json", "--compare-fail", "auk:+1"], "did you mean 'auc'"),
])
def test_report_compare_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     argv: list[str], message: str) -> None:
    from s2l_scan.cli import main

    (tmp_path / "r.json").write_text(json.dumps(make_report().to_dict()))
    compared = make_report()
    apply_comparison(compared, [], "v0.json", [{"key": "seed", "previous": 0, "current": 1}])
    (tmp_path / "compared.json").write_text(json.dumps(compared.to_dict()))
    report = "compared.json" if "already" in message else "r.json"
    args = [a.format(tmp=tmp_path) for a in argv]
    assert main(["report", str(tmp_path / report), *args]) == 4
    assert message in capsys.readouterr().err


def test_a_compared_report_matches_the_json_schema() -> None:
    import jsonschema

    from s2l_scan.report.files import schema

    previous = _body(make_report([make_row(domain="identity-0"), make_row(domain="gone")]))
    previous["config"]["seed"] = 5
    config = make_config({"compare": "v1.json"})
    report = make_report([make_row(domain="identity-0")])
    report.config = config.to_dict()
    decide(report, config, previous, (), "v1.json")
    body = _body(report)
    assert body["config_changes"] and body["comparison"]
    jsonschema.Draft202012Validator(schema()).validate(body)
