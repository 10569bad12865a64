"""The scan's time budget: the pure planner (table and property tests against a brute-force
count of the generation work) and a budgeted scan's report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s2l_scan.budget import (
    DPM_STEPS,
    FLOOR,
    Knobs,
    Work,
    detection_chance,
    generation_forwards,
    plan_budget,
)
from s2l_scan.config import make_config
from s2l_scan.errors import UsageError

DEFAULT = Knobs("model", extraction_samples=32, extraction_steps=50, sp_samples=32, sp_steps=25)
WORK = Work(domains=4, extraction_models=3, sp_prompts=4, extraction_guided=True,
            sp_guided=True)


def _brute_force(work: Work, knobs: Knobs) -> int:
    """One count per distinct generated image and step, as a sampler loop would make them: a
    shared prompt's SP image is the released model's extraction image of the same index when
    the SP set fits in the extraction set (model 0 is the released model)."""
    images: dict[tuple[object, ...], int] = {}
    for model in range(work.extraction_models):
        for domain in range(work.domains):
            for i in range(knobs.extraction_samples):
                images[(model, domain, i, knobs.extraction_steps)] = knobs.extraction_steps * (
                    2 if work.extraction_guided else 1)
    for prompt in range(work.sp_prompts):
        for i in range(knobs.sp_samples):
            shared = prompt < work.shared_sp_prompts and knobs.sp_samples <= (
                knobs.extraction_samples if work.extraction_models else -1)
            images[(0, prompt, i, knobs.sp_steps) if shared else ("sp", prompt, i)] = (
                knobs.sp_steps * (2 if work.sp_guided else 1))
    return sum(images.values())


def test_the_forward_count_matches_a_brute_force_count() -> None:
    assert generation_forwards(WORK, DEFAULT) == _brute_force(WORK, DEFAULT) == 44_800


@pytest.mark.parametrize(("budget", "cut"), [
    (1e9, []),  # fits: nothing cut
    (10_000, ["sampler"]),
    (5_500, ["sampler", "sp_samples"]),
    (1, ["sampler", "sp_samples", "sp_samples", "extraction_samples", "extraction_samples"]),
])
def test_the_ladder_cuts_the_cheapest_first(budget: float, cut: list[str]) -> None:
    plan = plan_budget(budget, seconds_per_forward=0.25, fixed_s=1_000, work=WORK,
                       knobs=DEFAULT)
    assert [c.setting for c in plan.cuts] == cut
    assert plan.fits == (budget >= 1_000 + 0.25 * generation_forwards(WORK, plan.knobs))
    if "sampler" in cut:
        assert (plan.knobs.sampler, plan.knobs.extraction_steps) == ("dpmsolver++", DPM_STEPS)


@given(st.floats(1, 1e6), st.floats(1e-5, 1.0), st.floats(0, 1e5))
def test_a_plan_fits_whenever_the_floor_fits_and_cuts_nothing_it_need_not(
        budget: float, per_forward: float, fixed: float) -> None:
    plan = plan_budget(budget, seconds_per_forward=per_forward, fixed_s=fixed, work=WORK,
                       knobs=DEFAULT)
    floor = fixed + per_forward * generation_forwards(WORK, Knobs(
        "dpmsolver++", FLOOR, DPM_STEPS, FLOOR, DPM_STEPS))
    assert plan.fits == (floor <= budget or plan.predicted_s <= budget)
    if plan.fits and plan.cuts:  # one cut fewer would not have fitted
        bigger = plan_budget(plan.predicted_s + 1e-9, seconds_per_forward=per_forward,
                             fixed_s=fixed, work=WORK, knobs=DEFAULT)
        assert len(bigger.cuts) <= len(plan.cuts)
    assert plan.predicted_s == pytest.approx(
        fixed + per_forward * _brute_force(WORK, plan.knobs))


SHARED = Work(domains=4, extraction_models=3, sp_prompts=5, extraction_guided=True,
              sp_guided=True, shared_sp_prompts=4)


def test_more_guidance_scales_go_through_the_budget_and_are_cut_before_samples() -> None:
    # each more scale is the released model's extraction images again (4 domains × 32 × 50,
    # guided ×2 at 2.0; unguided at 1.0): counted, and the first extraction cut drops them
    more = replace(DEFAULT, extraction_extra_guidance=(2.0, 1.0))
    assert generation_forwards(WORK, more) == 44_800 + 4 * 32 * 50 * (2 + 1)
    plan = plan_budget(1, seconds_per_forward=0.25, fixed_s=1_000, work=WORK, knobs=more)
    settings = [c.setting for c in plan.cuts]
    assert settings.index("extraction_extra_guidance") < settings.index("extraction_samples")
    assert plan.knobs.extraction_extra_guidance == ()
    roomy = plan_budget(1e9, seconds_per_forward=0.25, fixed_s=1_000, work=WORK, knobs=more)
    assert roomy.knobs.extraction_extra_guidance == (2.0, 1.0) and not roomy.cuts


@pytest.mark.parametrize("knobs", [
    Knobs("dpmsolver++", 32, 20, 32, 20),  # the default: the 4 domains' SP sets are free
    Knobs("dpmsolver++", 32, 20, 16, 20),  # a prefix: free
    Knobs("dpmsolver++", 16, 20, 32, 20),  # more SP images than extraction's: generated apart
    Knobs("dpmsolver++", 32, 20, 32, 25),  # other steps: other images
])
def test_shared_sp_sets_are_counted_once(knobs: Knobs) -> None:
    assert generation_forwards(SHARED, knobs) == _brute_force(SHARED, knobs)


@given(st.floats(1, 1e6), st.floats(1e-5, 1.0), st.floats(0, 1e5))
def test_a_plan_with_shared_sp_sets_predicts_the_brute_force_count(
        budget: float, per_forward: float, fixed: float) -> None:
    knobs = Knobs("dpmsolver++", 32, 20, 32, 20)
    work = replace(SHARED, sp_prompts=4)  # the domains' SP sets only, all shared
    plan = plan_budget(budget, seconds_per_forward=per_forward, fixed_s=fixed, work=work,
                       knobs=knobs)
    assert plan.predicted_s == pytest.approx(
        fixed + per_forward * _brute_force(work, plan.knobs))
    # the SP images stay extraction's: cutting them alone saves nothing, so they are cut only
    # with the extraction images, and never below them
    assert plan.knobs.sp_samples == plan.knobs.extraction_samples
    assert [c.setting for c in plan.cuts].count("sp_samples") == [
        c.setting for c in plan.cuts].count("extraction_samples")


def test_detection_chance_is_one_minus_the_chance_of_missing_every_time() -> None:
    assert detection_chance(0.5, 2) == pytest.approx(0.75)
    assert detection_chance(0.0, 100) == 0.0


@pytest.mark.parametrize("bad", ["", "soon", "-5m", "0"])
def test_a_bad_budget_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="budget must be a positive duration"):
        make_config(budget=bad)


def test_a_budgeted_scan_reports_its_plan_and_runs_what_it_planned(
        tiny_reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s2l_scan.stages.budgeting as budgeting
    from s2l_scan.session import ScanInputs, run_scan

    # a slow UNet by decree (1 s per sample): even the floor's generations overrun 1 s,
    # whatever the load and however fast the rest of this scan is
    monkeypatch.setattr(budgeting, "seconds_per_forward", lambda model, batch: 1.0)

    config = make_config(attacks=["loss"], probes=[], extraction_samples=16,
                         extraction_steps=4, extraction_guidance=1.0, sampler="ddim",
                         budget="1s")
    report = run_scan(ScanInputs(model=str(tiny_reference / "model"),
                                 data=str(tiny_reference / "data")), config)
    budget = report.model["sampling"]["budget"]
    assert budget["budget_s"] == 1.0 and budget["fits"] is False  # 1 s: nothing fits
    assert budget["seconds_per_sample_forward"] == 1.0
    # no probe trains on SP sets, so their count is no cut
    assert [c["setting"] for c in budget["cuts"]] == ["sampler", "extraction_samples"]
    assert report.config["extraction_samples"] == FLOOR
    assert report.config["sampler"] == "dpmsolver++"
    assert all(r.n_generated == FLOOR for r in report.extraction)
