"""The pytest plugin end to end, with pytester, on the tiny reference model."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

pytest_plugins = ["pytester"]


def _args(ref: Path, *extra: str) -> list[str]:
    # Few, short generations: these tests exercise the plugin, not the extraction probe.
    return [f"--s2l-model={ref / 'model'}", f"--s2l-data={ref / 'data'}", "-p", "no:cacheprovider",
            "--s2l-extraction-samples=2", "--s2l-extraction-steps=2", "--s2l-probes=noise", *extra]


def test_inert_without_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "== s2l-scan ==" not in result.stdout.str()


def test_gate_collects_one_item_per_attack_and_domain(
        pytester: pytest.Pytester, tiny_reference: Path) -> None:
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-max-auc=1", "--s2l-max-tpr=1",
                                       "-v"))
    # 3 attacks × 3 domains × (baseline + noise probe) + 2 domains × (released + noise)
    # extraction. A domain's rows cannot show safety with 6 members / 6 non-members (no upper
    # bound below 8 per class): inconclusive, so they fail under the default on_inconclusive =
    # fail. The pooled rows (12 / 12) pass where the upper bound is within max_auc 1, except
    # the probe rows of secmi and pia, whose Δ bound reaches past max_amplification;
    # extraction passes.
    result.assert_outcomes(failed=14, passed=8)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*baselines::secmi[[]identity-1[]] FAILED*",
                                 "*baselines::pia[[]pooled[]] PASSED*",
                                 "*probes::noise/pia[[]pooled[]] FAILED*",
                                 "*extraction::released[[]identity-1[]] PASSED*",
                                 "*verdict: INCONCLUSIVE*"])
    result.stdout.fnmatch_lines(["*baselines::secmi[[]identity-1[]]: INCONCLUSIVE: no upper "
                                 "bound at n = 6 members / 6 non-members (fewer than 8 per "
                                 "class)*"])
    # live progress lines on the terminal while the scan runs (the encoding is always told)
    result.stdout.fnmatch_lines(["[[]*[]] s2l-scan: encoding the audit images (domains) 0/2",
                                 "[[]*[]] s2l-scan: encoding the audit images (domains) 2/2 "
                                 "(100%) done in *"])


def test_failing_gate_states_number_ci_threshold_and_n(pytester: pytest.Pytester,
                                                       tiny_reference: Path) -> None:
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss",
                                       "--s2l-max-auc=0", "--s2l-max-tpr=1",
                                       "--s2l-family-alpha=1"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=6, passed=4)  # baseline and probe rows; extraction passes
    result.stdout.fnmatch_lines(["*baselines::loss[[]identity-0[]]: calibrated AUC 0.* > "
                                 "max_auc 0.0 "
                                 "(AUC 0.*, 95% CI [[]*, n = 6 members / 6 non-members*"])
    assert "Traceback" not in result.stdout.str()


def test_json_report_scores_reproduce_auc(pytester: pytest.Pytester, tiny_reference: Path
                                          ) -> None:
    out = pytester.path / "report.json"
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss,pia",
                                       "--s2l-max-auc=1", "--s2l-max-tpr=1",
                                       "--s2l-on-inconclusive=warn",
                                       f"--s2l-report-json={out}"))
    # 9 rows inconclusive (6 per class, or a Δ CI past max_amplification; skipped under warn);
    # the pooled loss, pia and noise/loss rows and the 4 extraction checks pass
    result.assert_outcomes(skipped=9, passed=7)
    assert result.ret == 0
    report = json.loads(out.read_text())
    assert report["schema_version"] == "3"
    assert report["verdict"]["outcome"] == "inconclusive"
    assert report["verdict"]["passed"] is False and report["verdict"]["failed_items"] == []
    assert {row["outcome"] for row in report["results"]} == {"inconclusive", "passed"}
    for row in report["results"]:
        labels = [1] * row["n_members"] + [0] * row["n_nonmembers"]
        scores = row["member_scores"] + row["nonmember_scores"]
        assert row["auc_raw"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert row["auc"] == pytest.approx(_crossfit_oracle(row, seed=0), abs=1e-12)
        assert row["probe"] in (None, "noise")
        assert {"auc_ci", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "blind_auc"} <= set(row)


def _crossfit_oracle(row: dict[str, Any], seed: int) -> float:
    """The calibrated AUC from a row's scores with sklearn: on each half the sign whose AUC is
    ≥ ½ (+ on ties), measured on the other half; the mean of the two (loss and PIA have one
    candidate; the halves are the product's seeded split, an input, not a result)."""
    from s2l_scan.functional.metrics import crossfit_halves

    members, nonmembers = np.asarray(row["member_scores"]), np.asarray(row["nonmember_scores"])
    halves = crossfit_halves(len(members), len(nonmembers), seed)

    def half_auc(half: tuple[np.ndarray, np.ndarray], sign: float) -> float:
        m, n = sign * members[half[0]], sign * nonmembers[half[1]]
        return float(roc_auc_score([1] * len(m) + [0] * len(n), np.r_[m, n]))

    tests = []
    for calibration, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        sign = 1.0 if half_auc(calibration, 1.0) >= 0.5 else -1.0
        tests.append(half_auc(test, sign))
    return float(np.mean(tests))


@pytest.mark.parametrize(("option", "message"), [
    ("--s2l-max-auc=2", "max_auc must be a number in [[]0, 1[]]*"),
    ("--s2l-ci-end=middle", "ci_end must be one of*"),
    ("--s2l-attacks=loss,psychic", "unknown attack 'psychic'*"),
    ("--s2l-domains=identity-9", "unknown domain(s) 'identity-9'*"),
    ("--s2l-embedder=open_clip:ViT-B-32:/nowhere/w.safetensors",
     "open_clip weights '/nowhere/w.safetensors' is not an existing local file*"),
    ("--s2l-known-images=memebrs", "known_images 'memebrs' is neither one of*"),
    ("--s2l-extraction-candidates=0", "extraction_candidates must be a positive integer*"),
])
def test_usage_errors(pytester: pytest.Pytester, tiny_reference: Path, option: str,
                      message: str) -> None:
    result = pytester.runpytest(*_args(tiny_reference, option))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_model_without_data_is_a_usage_error(pytester: pytest.Pytester,
                                             tiny_reference: Path) -> None:
    result = pytester.runpytest(f"--s2l-model={tiny_reference / 'model'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs audit data*--s2l-data=DIR*"])


def test_unsafe_model_is_a_scan_error_not_a_pass(pytester: pytest.Pytester,
                                                 tiny_reference: Path, tiny_model_copy: Path
                                                 ) -> None:
    (tiny_model_copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (tiny_model_copy / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not really")
    result = pytester.runpytest(f"--s2l-model={tiny_model_copy}",
                                f"--s2l-data={tiny_reference / 'data'}", "--s2l-attacks=loss",
                                "--s2l-probes=noise")
    assert result.ret == 2  # a scan error, as the CLI's: never 1 (failed gate) nor 0
    result.assert_outcomes()  # no check was judged: none passed, failed or errored
    assert result.stdout.str().count("pickled weights can run arbitrary code") == 1


@pytest.mark.parametrize(("model", "data", "code", "message"), [
    ("{tmp}/nonexistent", "{ref}/data", 2, "*s2l-scan: error: *nonexistent: not a folder*"),
    ("{ref}/model", "{tmp}/corrupt", 2, "*s2l-scan: error: *0000.png*"),
    ("{ref}/model", "{tmp}/empty", 4, "*s2l-scan: *empty: holds no domain folder*"),
])
def test_a_scan_error_is_reported_once_with_a_short_log(
        pytester: pytest.Pytester, tiny_reference: Path, model: str, data: str, code: int,
        message: str) -> None:
    import shutil

    (pytester.path / "empty").mkdir()
    corrupt = Path(shutil.copytree(tiny_reference / "data", pytester.path / "corrupt"))
    next(corrupt.glob("*/members/0000.png")).write_bytes(b"not a png")
    paths = {"tmp": pytester.path, "ref": tiny_reference}
    result = pytester.runpytest(f"--s2l-model={model.format(**paths)}",
                                f"--s2l-data={data.format(**paths)}", "--s2l-attacks=loss",
                                "--s2l-probes=", "-p", "no:cacheprovider")
    assert result.ret == code  # as the CLI's; never 1, the failed-gate status
    output = result.stdout.str() + "\n" + result.stderr.str()
    assert "Traceback" not in output and len(output) < 4000, output
    assert output.count("s2l-scan: ") <= 2, output  # the message (and pytest's echo of it)
    assert fnmatch.fnmatch(output.replace("\n", " "), message), output


def test_a_mistyped_data_folder_says_only_what_is_wrong(pytester: pytest.Pytester,
                                                      tiny_reference: Path) -> None:
    result = pytester.runpytest(f"--s2l-model={tiny_reference / 'model'}",
                                f"--s2l-data={pytester.path / 'audit-dta'}", "-p",
                                "no:cacheprovider")
    output = result.stdout.str() + "\n" + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "audit-dta" in output
    assert "no check was selected" not in output, output  # was printed before the real error


def test_config_file_thresholds_apply(pytester: pytest.Pytester, tiny_reference: Path) -> None:
    pytester.makefile(".toml", pyproject="[tool.s2l]\nmax_auc = 0.0\nfamily_alpha = 1.0\n"
                                         "attacks = ['loss']\n")
    result = pytester.runpytest(*_args(tiny_reference))
    result.assert_outcomes(failed=6, passed=4)
    pytester.makefile(".toml", pyproject="[tool.s2l]\nmax_aucc = 0.5\n")
    result = pytester.runpytest(*_args(tiny_reference))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown s2l config key 'max_aucc'; did you mean 'max_auc'?*"])


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    # argparse formats help strings with %: a bare "1% FPR" used to crash `pytest --help`.
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--s2l-max-tpr*", "*1% FPR*"])


def test_a_failing_sweep_row_fails_the_session(pytester: pytest.Pytester,
                                               tiny_reference: Path) -> None:
    # Sweep rows are named at run time, so no test item checks them: the session's exit status
    # must still read the report's verdict. No collected check fails here (no planned probes,
    # max_auc 1; inconclusive, skipped under warn); only the sweep's Δ rows fail
    # (max_amplification -1).
    pytester.makefile(".toml", s2l='sweep_space = {noise = {sigma = [1e-3]}}\n')
    result = pytester.runpytest(
        f"--s2l-model={tiny_reference / 'model'}", f"--s2l-data={tiny_reference / 'data'}",
        "-p", "no:cacheprovider", "--s2l-attacks=loss", "--s2l-probes=",
        "--s2l-extraction-samples=0", "--s2l-max-auc=1", "--s2l-max-tpr=1",
        "--s2l-max-amplification=-1", "--s2l-family-alpha=1", "--s2l-sweep=1h",
        "--s2l-bootstrap=50", "--s2l-on-inconclusive=warn")
    # loss × 2 domains: inconclusive at 6 per class, skipped under warn; pooled (12) passes
    result.assert_outcomes(skipped=2, passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*verdict: FAILED*", "*ran as no test item*"
                                 "probes::sweep:noise(sigma=0.001)/loss[[]identity-0[]]*"])


def test_deselecting_a_failing_check_does_not_pass_the_session(pytester: pytest.Pytester,
                                                               tiny_reference: Path) -> None:
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss", "--s2l-probes=",
                                       "--s2l-extraction-samples=0", "--s2l-max-auc=0",
                                       "--s2l-family-alpha=1",
                                       "--s2l-max-tpr=1", "-k", "pooled", "-q"))
    result.assert_outcomes(failed=1)  # only baselines::loss[pooled] ran
    assert "s2l-scan: encoding" not in result.stdout.str()  # -q: no progress
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*ran as no test item*baselines::loss[[]identity-0[]]*"])


def test_deselecting_every_check_is_no_pass(pytester: pytest.Pytester,
                                            tiny_reference: Path) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss", "--s2l-probes=",
                                       "--s2l-extraction-samples=0", "-k", "test_ok"))
    result.assert_outcomes(passed=1)  # the project's own test; no s2l check ran
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*s2l-scan: no check was selected*nothing was scanned*"])


@pytest.mark.parametrize(("selection", "outcomes"), [
    # loss × 2 domains, inconclusive at 6 per class: skipped under warn; pooled (12) passes
    ((), {"skipped": 2, "passed": 1, "failed": 2}),  # wen × 2 domains fail
    (("-k", "baselines"), {"skipped": 2, "passed": 1}),  # the failing wen checks deselected
])
def test_a_failing_memorization_check_fails_the_session(
        pytester: pytest.Pytester, tiny_reference: Path, selection: tuple[str, ...],
        outcomes: dict[str, int]) -> None:
    # Every row passes (max_auc 1); a text-guidance magnitude is > 0 for any prompt of a model
    # whose text changes its noise prediction, so max_text_guidance 0 flags every domain.
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss", "--s2l-probes=",
                                       "--s2l-extraction-samples=0", "--s2l-max-auc=1",
                                       "--s2l-max-tpr=1", "--s2l-bootstrap=50",
                                       "--s2l-memorization-starts=1",
                                       "--s2l-max-text-guidance=0",
                                       "--s2l-on-inconclusive=warn", *selection))
    result.assert_outcomes(**outcomes)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*memorization::wen[[]identity-0[]]*max_text_guidance 0*",
                                 "*verdict: FAILED*"])
    if selection:
        result.stdout.fnmatch_lines(["*ran as no test item*memorization::wen[[]identity-0[]]*"])


def test_junit_classnames_and_node_ids_are_the_check_ids(pytester: pytest.Pytester,
                                                        tiny_reference: Path) -> None:
    import xml.etree.ElementTree as ET

    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(*_args(tiny_reference, "--s2l-attacks=loss", "--s2l-probes=",
                                       "--s2l-extraction-samples=0", "--s2l-bootstrap=50",
                                       f"--junitxml={junit}", "-rA"))
    cases = ET.parse(junit).getroot().iter("testcase")
    assert {case.get("classname") for case in cases} == {"baselines"}  # was ".baselines"
    assert "PASSED ::" not in result.stdout.str()  # node ids no longer start with "::"
