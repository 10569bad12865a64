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
    assert {"model", "data", "config", "fail-on", "python-version", "threads", "device",
            "extra-args", "evidence", "cache"} <= set(ACTION["inputs"])
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
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in remote)  # workflow


def test_sarif_upload_is_the_users_step_not_the_actions() -> None:
    # inside the composite action, a failed upload (a private repository without code
    # scanning) failed the job before "Enforce the gate", even on a passing gate
    assert not [step for step in _steps()
                if "upload-sarif" in str(step.get("uses", ""))]
    assert {"sarif", "markdown", "report", "html"} <= set(ACTION["outputs"])
    for name, workflow in WORKFLOWS.items():
        for job in workflow["jobs"].values():
            uploads = [step for step in job["steps"]
                       if "upload-sarif" in str(step.get("uses", ""))]
            for step in uploads:  # the user's step: after the scan, whatever its verdict
                assert "always()" in str(step["if"]), name
                assert "outputs.sarif" in str(step["with"]["sarif_file"]), name
                assert job["permissions"]["security-events"] == "write", name


EXAMPLES = ("gate-model-publish.yml", "gate-model-publish-gpu.yml")


def _minutes(budget: str) -> float:
    number, unit = float(budget[:-1]), budget[-1]
    return number * {"s": 1 / 60, "m": 1, "h": 60}[unit]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflows_give_the_job_time_above_the_scan_budget(name: str) -> None:
    # a job killed at timeout-minutes writes no report: the budget must end the scan first
    job = WORKFLOWS[name]["jobs"]["privacy-scan"]
    scan = next(step for step in job["steps"] if step.get("id") == "scan")
    assert _minutes(str(scan["with"]["budget"])) + 20 <= job["timeout-minutes"] <= 360


def test_gpu_example_runs_on_a_gpu_runner_with_cuda_wheels() -> None:
    job = WORKFLOWS["gate-model-publish-gpu.yml"]["jobs"]["privacy-scan"]
    scan = next(step for step in job["steps"] if step.get("id") == "scan")
    assert not str(job["runs-on"]).startswith("ubuntu-")
    assert scan["with"]["torch-index-url"] == "" and scan["with"]["device"] == "auto"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_gates_publishing_on_the_verdict(name: str) -> None:
    jobs = WORKFLOWS[name]["jobs"]
    assert jobs["privacy-scan"]["permissions"]["security-events"] == "write"
    assert jobs["privacy-scan"]["permissions"]["actions"] == "read"  # upload-sarif, private
    assert jobs["publish"]["needs"] == "privacy-scan"
    assert "verdict == 'passed'" in jobs["publish"]["if"]


def test_example_workflow_uses_the_actions_s2l_scan_and_never_installs_the_users_repo() -> None:
    jobs = WORKFLOWS["gate-model-publish.yml"]["jobs"]
    runs = {name: [str(step.get("run", "")) for step in job["steps"]]
            for name, job in jobs.items()}
    installs = [line for job in runs.values() for run in job for line in run.splitlines()
                if "pip install" in line]
    # `pip install .` in a user's repository installs their project, not s2l-scan
    assert installs and not [line for line in installs if re.search(r"\s\.(\s|$)", line)]
    assert all(re.search(r"==[0-9]", line) for line in installs)  # pinned
    scan_steps = jobs["privacy-scan"]["steps"]
    action_at = next(i for i, step in enumerate(scan_steps) if step.get("uses") == "./")
    card_at = next(i for i, step in enumerate(scan_steps) if "s2l-scan report" in
                   str(step.get("run", "")))
    assert card_at > action_at  # s2l-scan is on PATH once the Action installed it
    assert not any("s2l-scan" in run for run in runs["publish"])


def test_action_caches_pip_and_the_s2l_scan_cache_and_saves_even_on_failure() -> None:
    steps = {str(step.get("name")): step for step in _steps()}
    pip, restore = steps["Restore the pip cache"], steps["Restore the s2l-scan cache"]
    save = steps["Save the s2l-scan cache"]
    assert str(pip["uses"]).startswith("actions/cache@")
    assert str(restore["uses"]).startswith("actions/cache/restore@")
    assert str(save["uses"]).startswith("actions/cache/save@")
    assert "always()" in str(save["if"])  # a failed gate or a cancelled job still saves units
    install_env, scan_env = steps["Install s2l-scan"]["env"], steps["Scan"]["env"]
    assert install_env["PIP_CACHE_DIR"] == pip["with"]["path"]  # type: ignore[index]
    assert scan_env["S2L_CACHE_DIR"] == restore["with"]["path"] == save["with"]["path"]  # type: ignore[index]
    assert restore["with"]["key"] == save["with"]["key"]  # type: ignore[index]
    assert "run_id" in str(save["with"]["key"])  # type: ignore[index]
    names = list(steps)
    assert names.index("Save the s2l-scan cache") < names.index("Enforce the gate")


def test_evidence_input_states_its_privacy_trade_off() -> None:
    evidence = ACTION["inputs"]["evidence"]
    assert evidence["default"] == "false"
    assert {"TRAINING", "PRIVACY", "artifact"} <= set(re.findall(r"\w+", evidence["description"]))
    readme = (ROOT / "README.md").read_text()
    assert "evidence: \"true\"" in readme and "training images" in readme


FAKE_SCAN = """
import json, pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
code = int({code})
verdict = {verdict!r}
if verdict is not None:
    for flag in ("--report-html", "--report-sarif"):
        pathlib.Path(value(flag)).write_text("{{}}")
    pathlib.Path(value("--report-json")).write_text(json.dumps({{"verdict": verdict}}))
    pathlib.Path(value("--report-markdown")).write_text("## s2l-scan: summary\\n")
pathlib.Path(sys.argv[0]).with_name("argv.txt").write_text("\\n".join(args))
sys.exit(code)
"""


REPORTED = {0: {"passed": True, "failed_items": []}, 1: {"passed": False, "failed_items": ["x"]},
            6: {"passed": False, "failed_items": [], "outcome": "inconclusive"}}


def _run_action(tmp_path: Path, code: int, fail_on: str = "gate", model: str = "m",
                verdict: object = "by-code", **inputs: str) -> tuple[int, dict[str, str], str]:
    fake = tmp_path / "fake_scan.py"
    written = REPORTED.get(code) if verdict == "by-code" else verdict
    fake.write_text(FAKE_SCAN.format(code=code, verdict=written))
    env = {**os.environ, "S2L_SCAN": f"{sys.executable} {fake}", "S2L_MODEL": model,
           "S2L_PYTHON": sys.executable,
           "S2L_DATA": "d", "S2L_FAIL_ON": fail_on, "S2L_OUTPUT_DIR": str(tmp_path / "out"),
           "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), **inputs}
    script = str(ROOT / "scripts" / "action.sh")
    subprocess.run(["bash", script, "scan"], env=env, check=True, capture_output=True)
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    enforce = subprocess.run(["bash", script, "enforce"], capture_output=True,
                             env={**env, "S2L_EXIT_CODE": outputs["exit-code"],
                                  "S2L_VERDICT": outputs["verdict"]}, check=False)
    return enforce.returncode, outputs, (tmp_path / "summary").read_text()


@pytest.mark.parametrize(("code", "fail_on", "verdict", "step_rc"), [
    (0, "gate", "passed", 0),
    (1, "gate", "failed", 1),
    (1, "error", "failed", 0),
    (2, "error", "error", 2),
    (3, "gate", "error", 3),
    (2, "never", "error", 0),
    (6, "gate", "inconclusive", 6),  # fail-on gate fails an inconclusive gate too
    (6, "error", "inconclusive", 0),
])
def test_action_script_verdicts_outputs_and_fail_on(tmp_path: Path, code: int, fail_on: str,
                                                    verdict: str, step_rc: int) -> None:
    rc, outputs, summary = _run_action(tmp_path, code, fail_on)
    assert (rc, outputs["verdict"], outputs["exit-code"]) == (step_rc, verdict, str(code))
    if code in REPORTED:
        assert outputs["report"].endswith("s2l-report.json") and outputs["sarif"]
        assert outputs["markdown"].endswith("s2l-summary.md")
        assert summary == "## s2l-scan: summary\n"
    else:
        assert "report" not in outputs and "exit code" in summary


@pytest.mark.parametrize(("code", "verdict"), [
    (0, None),  # exit 0 and no report (e.g. a model "--version" printed a version)
    (0, {"passed": False, "failed_items": ["x"]}),  # exit 0 but the report failed
    (1, {"passed": True, "failed_items": []}),
    (0, "not a verdict"),
])
def test_a_pass_needs_a_report_that_says_passed(tmp_path: Path, code: int,
                                                verdict: object) -> None:
    rc, outputs, _ = _run_action(tmp_path, code, verdict=verdict)
    assert outputs["verdict"] == "error" and rc != 0


@pytest.mark.parametrize("name", ["S2L_MODEL", "S2L_DATA", "S2L_CONFIG", "S2L_COMPARE",
                                  "S2L_OUTPUT_DIR"])
def test_a_path_input_that_would_be_read_as_an_option_is_refused(tmp_path: Path,
                                                                 name: str) -> None:
    env = {**os.environ, "S2L_MODEL": "m", "S2L_OUTPUT_DIR": str(tmp_path / "out"),
           "S2L_SCAN": "false", name: "--version"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "action.sh"), "scan"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 4 and "starts with '-'" in result.stderr
    assert "./--version" in result.stderr


def test_hostile_model_path_stays_a_single_argument(tmp_path: Path) -> None:
    hostile = 'x"; touch pwned; echo "$(id)'
    _run_action(tmp_path, 0, model=hostile)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:2] == ["scan", hostile]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize(("inputs", "expected"), [
    ({}, []),
    ({"S2L_THREADS": "4", "S2L_DEVICE": "cuda:1"}, ["--threads=4", "--device=cuda:1"]),
    ({"S2L_DEVICE": "--compare=/etc/x"}, ["--device=--compare=/etc/x"]),  # stays a value
    ({"S2L_EVIDENCE": "true"}, ["--evidence-dir={out}/evidence"]),
    ({"S2L_EXTRA_ARGS": "--max-auc=0.55\n\n--probes\nnoise, lora\r\n$(touch pwned) *"},
     ["--max-auc=0.55", "--probes", "noise, lora", "$(touch pwned) *"]),  # one line, one arg
])
def test_action_passes_threads_device_evidence_and_extra_args_as_single_arguments(
        tmp_path: Path, inputs: dict[str, str], expected: list[str]) -> None:
    _run_action(tmp_path, 0, **inputs)
    argv = (tmp_path / "argv.txt").read_text().split("\n")
    assert argv[12:] == [a.format(out=tmp_path / "out") for a in expected]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize(("inputs", "message"), [
    ({"S2L_FAIL_ON": "sometimes"}, "fail-on must be gate, error or never"),
    ({"S2L_THREADS": "0"}, "threads must be a positive integer"),
    ({"S2L_THREADS": "4; id"}, "threads must be a positive integer"),
    ({"S2L_EVIDENCE": "yes"}, "evidence must be true or false"),
    ({"S2L_EXTRA_ARGS": "--seed=1\n--report-json=/tmp/x"}, "--report-json is set by the Action"),
    ({"S2L_EXTRA_ARGS": "--threads\n8"}, "--threads is set by the Action; use its input"),
    ({"S2L_EXTRA_ARGS": "--budget=1s"}, "--budget is set by the Action; use its input"),
    ({"S2L_EXTRA_ARGS": "--cache-dir\n/tmp/x"}, "--cache-dir is set by the Action"),
    ({"S2L_CACHE_INPUT": "on", "step": "install"}, "cache must be true or false"),
])
def test_bad_action_inputs_are_usage_errors(tmp_path: Path, inputs: dict[str, str],
                                            message: str) -> None:
    step = inputs.get("step", "scan")
    env = {**os.environ, "S2L_MODEL": "m", "S2L_OUTPUT_DIR": str(tmp_path / "out"),
           **{name: value for name, value in inputs.items() if name != "step"}}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "action.sh"), step], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 4 and message in result.stderr


@pytest.mark.slow
def test_run_action_locally_on_the_tiny_reference(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run-action-locally.sh"),
                             str(tmp_path / "out")], capture_output=True, text=True, check=False)
    outputs = dict(line.split("=", 1) for line in
                   (tmp_path / "out" / "github-output.txt").read_text().splitlines())
    assert result.returncode == int(outputs["exit-code"]) and outputs["verdict"] in (
        "passed", "failed", "inconclusive")
    for name in ("s2l-report.json", "s2l-report.html", "s2l-summary.md", "s2l-report.sarif"):
        assert (tmp_path / "out" / "report" / name).stat().st_size > 0
    assert (tmp_path / "out" / "step-summary.md").read_text().startswith("## s2l-scan")


@pytest.mark.parametrize("model", ["--help", "-h", "--version", "--data=x"])
def test_a_model_input_starting_with_a_dash_is_refused(tmp_path: Path, model: str) -> None:
    env = {**os.environ, "S2L_MODEL": model, "S2L_OUTPUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "action.sh"), "scan"], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 4 and "starts with '-'" in result.stderr


def test_a_scan_that_wrote_no_report_never_passes(tmp_path: Path) -> None:
    """Exit 0 without a report (e.g. a help text, a wrapper that did nothing) is a scan error;
    a stale report of an earlier run in the output folder does not count."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "s2l-report.json").write_text("{}")  # an earlier run's
    fake = tmp_path / "fake_scan.py"
    fake.write_text("import sys; sys.exit(0)\n")
    env = {**os.environ, "S2L_SCAN": f"{sys.executable} {fake}", "S2L_MODEL": "m",
           "S2L_DATA": "d", "S2L_OUTPUT_DIR": str(tmp_path / "out"),
           "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}
    script = str(ROOT / "scripts" / "action.sh")
    subprocess.run(["bash", script, "scan"], env=env, check=True, capture_output=True)
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    assert (outputs["verdict"], outputs["exit-code"]) == ("error", "2")
    enforce = subprocess.run(["bash", script, "enforce"], capture_output=True,
                             env={**env, "S2L_EXIT_CODE": outputs["exit-code"]}, check=False)
    assert enforce.returncode == 2
