"""Base-calibrated probe rows (``--base-model`` with probes): each probe re-runs the
``NAME+base`` variants, its copy's score minus the base model's, with Δ against the released
model's ``NAME+base`` row. Oracle: the base scanned as if it were the model gives the base's
own scores, so a probe's calibrated score must equal the probe's plain score − that score,
sample by sample and candidate by candidate; Δ must be the cross-fitted Δ of those scores
against the released ``NAME+base`` row's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from s2l_scan.checks import CheckId, calibrated
from s2l_scan.config import make_config
from s2l_scan.functional import metrics
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.reference.build import build_reference
from s2l_scan.reference.presets import get_preset
from s2l_scan.session import run_scan

pytest_plugins = ["pytester"]

DOMAINS = ["identity-0", "identity-1"]
FAST = {"attacks": ["loss", "pia"], "extraction_samples": 0, "probes": ["noise"],
        "bootstrap": 50, "permutations": 50, "domains": DOMAINS}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A tiny base and a fine-tune of it; the fine-tune scanned with its base and the noise
    probe, and the base scanned as if it were the model (its own scores)."""
    out = tmp_path_factory.mktemp("finetune") / "reference"
    build_reference(out, get_preset("tiny").with_overrides(base_steps=8, base_per_identity=3),
                    seed=0)
    data = str(out / "data")
    report = run_scan(ScanInputs(str(out / "model"), data, base_model=str(out / "base")),
                      make_config(**FAST))
    on_base = run_scan(ScanInputs(str(out / "base"), data), make_config(**{**FAST,
                                                                          "probes": []}))
    return out, report, on_base


@pytest.mark.parametrize("domain", [*DOMAINS, "pooled"])
@pytest.mark.parametrize("attack", ["loss", "pia"])
def test_probe_calibrated_score_is_copy_minus_base(scanned: Any, attack: str,
                                                   domain: str) -> None:
    _, report, on_base = scanned
    rows = {row.item_id: row for row in report.results}
    base_rows = {row.item_id: row for row in on_base.results}
    plain = rows[str(CheckId.probe("noise", attack, domain))]
    cal = rows[str(CheckId.probe("noise", calibrated(attack), domain))]
    base = base_rows[str(CheckId.baseline(attack, domain))]
    (pm, pn), (cm, cn), (bm, bn) = plain.candidates(), cal.candidates(), base.candidates()
    assert set(cm) == set(pm) == set(bm)  # every candidate (variant) calibrated
    for key in cm:
        np.testing.assert_allclose(cm[key], np.subtract(pm[key], bm[key]), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose(cn[key], np.subtract(pn[key], bn[key]), rtol=1e-6,
                                   atol=1e-6)
    # Δ against the released model's calibrated row, on the same samples
    released = rows[str(CheckId.baseline(calibrated(attack), domain))]
    config = make_config(**FAST)
    delta = metrics.crossfit_delta(
        {k: np.asarray(v) for k, v in cm.items()}, {k: np.asarray(v) for k, v in cn.items()},
        *({k: np.asarray(v) for k, v in side.items()} for side in released.candidates()),
        config.seed, bootstrap_seed=config.resample_seed, n_resamples=config.bootstrap)
    assert cal.delta_auc == pytest.approx(delta.delta, abs=1e-9)
    assert not np.allclose(cm[""], pm[""])  # the base's scores were subtracted, not zeros
    assert cal.settings["calibration"] == released.settings["calibration"]
    assert cal.settings["probe"]["label"] == "noise"
    assert "calibration" not in plain.settings
    # gated like every probe row: in the Holm family, and judged
    assert cal.delta_p_adjusted is not None and cal.p_adjusted is not None


def test_plan_names_every_calibrated_probe_check(scanned: Any) -> None:
    out, report, _ = scanned
    plan = build_plan(ScanInputs(str(out / "model"), str(out / "data"),
                                 base_model=str(out / "base")), make_config(**FAST))
    planned = [str(c) for c in plan.checks(DOMAINS)]
    assert sorted(planned) == sorted(str(r.check_id) for r in report.results)
    assert "probes::noise/pia+base[pooled]" in planned
    without_base = build_plan(ScanInputs(str(out / "model"), str(out / "data")),
                              make_config(**FAST))
    assert not any("+base" in str(c) for c in without_base.checks(DOMAINS))


def test_no_base_no_calibrated_probe_rows_and_the_report_is_valid(scanned: Any) -> None:
    import json

    import jsonschema

    from s2l_scan.report.files import schema

    _, report, on_base = scanned
    assert not any(row.attack.endswith("+base") for row in on_base.results)
    jsonschema.validate(json.loads(json.dumps(report.to_dict())), schema())


def test_every_renderer_lists_the_calibrated_probe_rows(scanned: Any, tmp_path: Path) -> None:
    from s2l_scan.report.console import render_results
    from s2l_scan.report.outputs import RENDERERS

    _, report, _ = scanned
    fewer = dataclasses.replace(report, results=[
        row for row in report.results if not (row.probe and row.attack.endswith("+base"))])
    renders = {kind: renderer.render for kind, renderer in RENDERERS.items()}
    renders["console"] = lambda r, _folder: render_results(r, width=240)
    for kind, render in renders.items():
        full, less = render(report, tmp_path), render(fewer, tmp_path)
        assert full.count("pia+base") > less.count("pia+base"), kind


def test_the_pytest_plugin_collects_the_calibrated_probe_checks(
        scanned: Any, pytester: pytest.Pytester) -> None:
    out, _, _ = scanned
    result = pytester.runpytest(
        f"--s2l-model={out / 'model'}", f"--s2l-data={out / 'data'}",
        f"--s2l-base-model={out / 'base'}", "--s2l-attacks=loss", "--s2l-probes=noise",
        "--s2l-domains=identity-0", "--s2l-extraction-samples=0", "--s2l-max-auc=1",
        "--s2l-max-tpr=1", "--s2l-max-amplification=1", "--s2l-bootstrap=20",
        "-p", "no:cacheprovider", "-v")
    # every row is inconclusive at this n (no leak shown, no safety either): under the default
    # on_inconclusive = fail each collected check fails as INCONCLUSIVE
    result.assert_outcomes(failed=4)
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*baselines::loss+base[[]identity-0[]] FAILED*",
                                 "*probes::noise/loss[[]identity-0[]] FAILED*",
                                 "*probes::noise/loss+base[[]identity-0[]] FAILED*"])
