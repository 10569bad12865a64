"""Release gating end to end under pytest (pytester, tiny reference model): report files,
JUnit properties, the regression gate against a previous report, and usage errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from report_factory import extraction_record, make_report, make_row, sarif_validator

from s2l_scan.report.files import schema

pytest_plugins = ["pytester"]

# conftest.py imports the engine once, so pytester's in-process runs never drop faiss (see there)

# fast scans: one attack, a small bootstrap, two tiny generations per domain for extraction,
# no probe (the passing run adds the noise probe, so probe items are covered too)
FAST = """[tool.s2l]
attacks = ["loss"]
bootstrap = 50
extraction_samples = 2
extraction_steps = 2
probes = []
"""


def _args(ref: Path, *extra: str) -> list[str]:
    return [f"--s2l-model={ref / 'model'}", f"--s2l-data={ref / 'data'}", "-p", "no:cacheprovider",
            *extra]


def test_gate_writes_every_report_and_junit_properties(
        pytester: pytest.Pytester, tiny_reference: Path) -> None:
    pytester.makefile(".toml", pyproject=FAST.replace("probes = []", 'probes = ["noise"]'))
    out = pytester.path
    result = pytester.runpytest(*_args(
        tiny_reference, "--s2l-max-auc=1", "--s2l-max-tpr=1", f"--junitxml={out / 'j.xml'}",
        f"--s2l-report-json={out / 'r.json'}", f"--s2l-report-html={out / 'r.html'}",
        f"--s2l-report-markdown={out / 'r.md'}", f"--s2l-sarif={out / 'r.sarif'}", "-v"))
    # 2 domains' loss rows × 2, inconclusive at 6 per class (fail under on_inconclusive =
    # fail); the pooled rows (12 per class) and released and noise extraction × 2 pass
    result.assert_outcomes(failed=4, passed=6)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*probes::noise/loss[[]identity-0[]] FAILED*",
                                 "*probes::noise/loss[[]pooled[]] PASSED*",
                                 "*extraction::released[[]identity-1[]] PASSED*",
                                 "*extraction::noise[[]identity-0[]] PASSED*",
                                 "*s2l-scan: sarif report written to*r.sarif"])
    body = json.loads((out / "r.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(body)  # a real report, not a mock
    assert body["config"]["report_sarif"] == str(out / "r.sarif")  # the effective config
    sarif = json.loads((out / "r.sarif").read_text())
    sarif_validator().validate(sarif)
    # nothing failed: each inconclusive row is a warning, not an error
    assert [r["level"] for r in sarif["runs"][0]["results"]] == ["warning"] * 4
    assert "⚠️ **INCONCLUSIVE**" in (out / "r.md").read_text()
    assert "<script" not in (out / "r.html").read_text()
    suite = ET.parse(out / "j.xml").getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["s2l.verdict"] == "inconclusive"
    assert properties["s2l.model_hash"] == body["model"]["model_hash"]
    assert float(properties["s2l.threshold_max_auc"]) == 1  # --s2l-max-auc=1
    cases = ET.parse(out / "j.xml").getroot().iter("testcase")
    pooled = next(c for c in cases if c.get("name") == "loss[pooled]")  # junit drops "::"
    case_properties = {p.get("name"): p.get("value") for p in pooled.iter("property")}
    assert {"observed_auc", "observed_blind_auc", "threshold_max_auc"} <= set(case_properties)
    assert float(properties["s2l.observed_auc.baselines::loss[pooled]"]) == pytest.approx(
        next(r["auc"] for r in body["results"] if r["domain"] == "pooled"), rel=1e-5)


def _previous_report(path: Path, auc: float) -> Path:
    """A previous release's report with the tiny scan's checks, every AUC set to ``auc``."""
    rows = [make_row(domain=domain, max_auc=1) for domain in ("identity-0", "identity-1",
                                                               "pooled")]
    for row in rows:
        row.auc = auc
    extraction = [extraction_record(domain="identity-0"), extraction_record(domain="identity-1")]
    path.write_text(json.dumps(make_report(rows, extraction=extraction).to_dict()))
    return path


def test_regression_against_previous_report_fails_items_without_traceback(
        pytester: pytest.Pytester, tiny_reference: Path) -> None:
    pytester.makefile(".toml", pyproject=FAST)
    previous = _previous_report(pytester.path / "v1.json", auc=0.0)
    result = pytester.runpytest(*_args(
        tiny_reference, "--s2l-max-auc=1", "--s2l-max-tpr=1", f"--s2l-compare={previous}",
        "--s2l-compare-fail=auc:+0.02,extracted:+0", "--s2l-report-json=now.json"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3, passed=2)  # every AUC rose from 0; extraction stayed 0
    result.stdout.fnmatch_lines([
        "*baselines::loss[[]identity-0[]]: auc rose from 0 to 0.* since the previous report "
        f"{previous}; allowed auc:+0.02*",
        f"*compared with {previous}: 3 regression(s) past auc:+0.02,extracted:+0*"])
    assert "Traceback" not in result.stdout.str()
    body = json.loads((pytester.path / "now.json").read_text())
    assert {c["status"] for c in body["comparison"]} == {"regressed", "ok"}
    assert len(body["verdict"]["failed_items"]) == 3 and body["verdict"]["passed"] is False


@pytest.mark.parametrize(("options", "message"), [
    (["--s2l-compare-fail=auc:+0.02"], "compare_fail needs compare*"),
    (["--s2l-compare={tmp}/missing.json"], "previous report (compare) */missing.json does not "
                                           "exist"),
    (["--s2l-compare={tmp}/garbage.json"], "*garbage.json is not JSON*"),
    (["--s2l-compare={tmp}/old.json"], "*old.json has report schema version '0'*"),
    (["--s2l-compare={tmp}/v1.json", "--s2l-compare-fail=auc:-1"], "*expected METRIC:+AMOUNT*"),
    (["--s2l-compare={tmp}/v1.json", "--s2l-compare-fail=fid:+1"], "*unknown metric 'fid'*"),
    (["--s2l-sarif={tmp}"], "*is a folder; give a file name"),
    (["--s2l-report-json={tmp}/v1.json", "--s2l-compare={tmp}/v1.json"],
     "report_json */v1.json is also an input*"),
    (["--s2l-report-html=x.html", "--s2l-report-markdown=x.html"],
     "report_markdown x.html is also given to report_html*"),
])
def test_new_options_usage_errors(pytester: pytest.Pytester, tiny_reference: Path,
                                  options: list[str], message: str) -> None:
    tmp = pytester.path
    (tmp / "garbage.json").write_text("{")
    (tmp / "old.json").write_text('{"schema_version": "0"}')
    _previous_report(tmp / "v1.json", auc=0.5)
    result = pytester.runpytest(*_args(tiny_reference, *(o.format(tmp=tmp) for o in options)))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*s2l-scan: {message}"])
    assert (tmp / "v1.json").exists() and not (tmp / "x.html").exists()
