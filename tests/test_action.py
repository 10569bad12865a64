"""The composite GitHub Action: its shape (script-injection safe, pinned) and its scripts' logic.

The scripts run for real with a stand-in for s2l-scan, so verdicts, step outputs, the step
summary and fail-on are checked in milliseconds; the end-to-end run on the tiny reference model
(scripts/run-action-locally.sh) is marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOWS = {path.name: yaml.safe_load(path.read_text())
             for path in (ROOT / ".github" / "workflows").glob("*.yml")}


def _steps() -> list[dict[str, object]]:
    steps: list[dict[str, object]] = ACTION["runs"]["steps"]
    return steps


def test_action_is_composite_with_documented_inputs_and_outputs() -> None:
    assert ACTION["runs"]["using"] == "composite"
    assert {"model", "data", "config", "fail-on", "python-version"} <= set(ACTION["inputs"])
    assert {"verdict", "report"} <= set(ACTION["outputs"])
    assert all(spec.get("description") for spec in ACTION["inputs"].values())


def test_no_expression_is_spliced_into_a_shell_script() -> None:
    all_steps = _steps() + [step for workflow in WORKFLOWS.values()
                            for job in workflow["jobs"].values() for step in job["steps"]]
    runs = [str(step["run"]) for step in all_steps if "run" in step]
    assert runs and not [run for run in runs if "${{" in run]


def test_every_used_action_is_pinned_by_commit() -> None:
    uses = [str(step["uses"]) for step in _steps() if "uses" in step]
    uses += [str(step["uses"]) for workflow in WORKFLOWS.values()
             for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    remote = [u for u in uses if not u.startswith("./")]
    assert remote and all(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u) for u in remote)
    assert any(u.startswith("actions/upload-artifact@") for u in remote)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in remote)


def test_example_workflow_gates_publishing_on_the_verdict() -> None:
    jobs = WORKFLOWS["gate-model-publish.yml"]["jobs"]
    assert jobs["privacy-scan"]["permissions"]["security-events"] == "write"
    assert jobs["publish"]["needs"] == "privacy-scan"
    assert "verdict == 'passed'" in jobs["publish"]["if"]


FAKE_SCAN = """
import pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
code = int({code})
if code in (0, 1):
    for flag in ("--report-json", "--report-html", "--report-sarif"):
        pathlib.Path(value(flag)).write_text("{{}}")
    pathlib.Path(value("--report-markdown")).write_text("## s2l-scan: summary\\n")
pathlib.Path(sys.argv[0]).with_name("argv.txt").write_text("\\n".join(args))
sys.exit(code)
"""


def _run_action(tmp_path: Path, code: int, fail_on: str = "gate", model: str = "m"
                ) -> tuple[int, dict[str, str], str]:
    fake = tmp_path / "fake_scan.py"
    fake.write_text(FAKE_SCAN.format(code=code))
    env = {**os.environ, "S2L_SCAN": f"{sys.executable} {fake}", "S2L_MODEL": model,
           "S2L_DATA": "d", "S2L_FAIL_ON": fail_on, "S2L_OUTPUT_DIR": str(tmp_path / "out"),
           "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}
    script = str(ROOT / "scripts" / "action.sh")
    subprocess.run(["bash", script, "scan"], env=env, check=True, capture_output=True)
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    enforce = subprocess.run(["bash", script, "enforce"], capture_output=True,
                             env={**env, "S2L_EXIT_CODE": outputs["exit-code"]}, check=False)
    return enforce.returncode, outputs, (tmp_path / "summary").read_text()


@pytest.mark.parametrize(("code", "fail_on", "verdict", "step_rc"), [
    (0, "gate", "passed", 0),
    (1, "gate", "failed", 1),
    (1, "error", "failed", 0),
    (2, "error", "error", 2),
    (3, "gate", "error", 3),
    (2, "never", "error", 0),
])
def test_action_script_verdicts_outputs_and_fail_on(tmp_path: Path, code: int, fail_on: str,
                                                    verdict: str, step_rc: int) -> None:
    rc, outputs, summary = _run_action(tmp_path, code, fail_on)
    assert (rc, outputs["verdict"], outputs["exit-code"]) == (step_rc, verdict, str(code))
    if code <= 1:
        assert outputs["report"].endswith("s2l-report.json") and outputs["sarif"]
        assert summary == "## s2l-scan: summary\n"
    else:
        assert "report" not in outputs and "exit code" in summary


def test_hostile_model_path_stays_a_single_argument(tmp_path: Path) -> None:
    hostile = 'x"; touch pwned; echo "$(id)'
    _run_action(tmp_path, 0, model=hostile)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:2] == ["scan", hostile]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_bad_fail_on_is_a_usage_error(tmp_path: Path) -> None:
    env = {**os.environ, "S2L_FAIL_ON": "sometimes", "S2L_MODEL": "m"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "action.sh"), "scan"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 4 and "fail-on must be gate, error or never" in result.stderr


@pytest.mark.slow
def test_run_action_locally_on_the_tiny_reference(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run-action-locally.sh"),
                             str(tmp_path / "out")], capture_output=True, text=True, check=False)
    outputs = dict(line.split("=", 1) for line in
                   (tmp_path / "out" / "github-output.txt").read_text().splitlines())
    assert result.returncode == int(outputs["exit-code"]) and outputs["verdict"] in (
        "passed", "failed")
    for name in ("s2l-report.json", "s2l-report.html", "s2l-summary.md", "s2l-report.sarif"):
        assert (tmp_path / "out" / "report" / name).stat().st_size > 0
    assert (tmp_path / "out" / "step-summary.md").read_text().startswith("## s2l-scan")
