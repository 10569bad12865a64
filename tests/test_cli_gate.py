"""`s2l-scan scan` as a release gate: report files, the regression gate, exit codes 0 / 1 / 4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import s2l_scan.extraction.index  # noqa: F401 - load faiss once, before any scan
from s2l_scan.cli import main
from s2l_scan.errors import ExitCode

FAST = """attacks = ["loss"]
bootstrap = 50
extraction_samples = 2
extraction_steps = 2
probes = []
"""


def _scan(ref: Path, config: Path, *extra: str) -> list[str]:
    return ["scan", str(ref / "model"), "--data", str(ref / "data"), "--config", str(config),
            "--max-auc", "1", "--max-tpr", "1", *extra]


def test_scan_writes_reports_then_gates_on_a_regression(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s2l.toml"
    config.write_text(FAST)
    reports = {kind: tmp_path / f"v1.{kind}" for kind in ("json", "html", "markdown", "sarif")}
    argv = _scan(tiny_reference, config)
    for kind, path in reports.items():
        argv += [f"--report-{kind}", str(path)]
    assert main(argv) == ExitCode.INCONCLUSIVE  # nothing failed; 6 per class shows no safety
    assert all(path.stat().st_size > 0 for path in reports.values())
    assert "sarif report: " in capsys.readouterr().out

    # a previous release whose identity-0 AUC was 0.1 lower: this scan regressed past +0.02
    previous = json.loads(reports["json"].read_text())
    row = next(r for r in previous["results"] if r["domain"] == "identity-0")
    row["auc"] -= 0.1
    baseline = tmp_path / "v0.json"
    baseline.write_text(json.dumps(previous))
    now = tmp_path / "v2.json"
    code = main(_scan(tiny_reference, config, "--compare", str(baseline), "--compare-fail",
                      "auc:+0.02,extracted:+0", "--report-json", str(now)))
    assert code == 1
    printed = capsys.readouterr().out
    assert "compared with" in printed and "1 regression(s) past auc:+0.02,extracted:+0" in printed
    body = json.loads(now.read_text())
    assert body["verdict"]["outcome"] == "failed" and body["verdict"]["passed"] is False
    assert body["verdict"]["failed_items"] == ["baselines::loss[identity-0]"]
    assert body["config"]["compare"] == str(baseline)


@pytest.mark.parametrize(("extra", "message"), [
    (["--compare-fail", "auc:+0.02"], "compare_fail needs compare"),
    (["--compare", "{tmp}/nope.json"], "nope.json does not exist"),
    (["--compare", "{tmp}/s2l.toml"], "s2l.toml is not JSON"),
    (["--report-json", "{tmp}/s2l.toml"], "is also an input"),
    (["--report-html", "{tmp}/no/such/dir/r.html"], "does not exist"),
    (["--compare-fail", "auc:+0.02,auc:+0.1", "--compare", "x.json"], "given twice"),
])
def test_scan_usage_errors_exit_4_before_scanning(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        extra: list[str], message: str) -> None:
    config = tmp_path / "s2l.toml"
    config.write_text(FAST)
    argv = _scan(tiny_reference, config, *(a.format(tmp=tmp_path) for a in extra))
    assert main(argv) == 4
    assert message in capsys.readouterr().err
    assert config.read_text() == FAST
