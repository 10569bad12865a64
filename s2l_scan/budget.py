"""The scan's time budget (``budget``): which generation settings fit, and what was cut.

Generation (extraction on the released model and on every probe's copy, SP sets) is the part of
a scan whose size is a setting; attacks' scoring and probes' training are not cut (fewer audit
samples would be another audit). :func:`plan_budget` is pure: given the seconds one sample
costs through the UNet (measured by a short calibration of the model at hand), the seconds of
everything else (measured or predicted by the caller) and the generation work of the plan, it
walks a fixed ladder of cuts, cheapest in power first, until the prediction fits:

1. the sampler: DPM-Solver++ at ``DPM_STEPS`` steps for extraction and SP sets (measured on the
   reference: same planted-member recall as DDIM at 50 steps, docs/performance.md);
2. SP-set images halved, down to ``FLOOR`` (no cut when they are the released model's
   extraction images, which cost nothing more);
3. extraction images halved, down to ``FLOOR`` (SP images shared with them cut alongside).

Every cut says what it costs in power; a plan that still does not fit says so (the scan runs
at the floor and the report names the overrun) instead of silently dropping checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

DPM_STEPS = 20
FLOOR = 8


@dataclass(frozen=True)
class Knobs:
    """The generation settings the budget may cut."""

    sampler: str
    extraction_samples: int
    extraction_steps: int
    sp_samples: int
    sp_steps: int
    extraction_extra_guidance: tuple[float, ...] = ()
    """More guidance scales of the released model's extraction images (each as many again)."""


@dataclass(frozen=True)
class Work:
    """How much generation a scan's plan asks for, apart from the knobs."""

    domains: int
    extraction_models: int  # the released model, plus each probe copy with extraction on
    sp_prompts: int  # SP / OOD / prior sets generated (0 when no probe trains on them)
    extraction_guided: bool  # classifier-free guidance doubles each step's batch
    sp_guided: bool
    shared_sp_prompts: int = 0  # SP prompts (the domains') whose sets are the first sp_samples
    #   of the released model's extraction generations whenever sp_samples ≤ extraction_samples
    #   and the steps are equal (the caller checks sampler, guidance and negative prompt)


def _shared(work: Work, knobs: Knobs) -> int:
    """SP prompts that cost nothing under ``knobs``: their sets are extraction's images."""
    if (work.extraction_models and knobs.sp_samples <= knobs.extraction_samples
            and knobs.sp_steps == knobs.extraction_steps):
        return work.shared_sp_prompts
    return 0


@dataclass(frozen=True)
class Cut:
    """One step down the ladder: the setting, its old and new value, what it costs."""

    setting: str
    before: object
    after: object
    power: str


@dataclass(frozen=True)
class BudgetPlan:
    knobs: Knobs
    predicted_s: float
    budget_s: float
    cuts: tuple[Cut, ...]

    @property
    def fits(self) -> bool:
        return self.predicted_s <= self.budget_s


def generation_forwards(work: Work, knobs: Knobs) -> int:
    """Sample-forwards through the UNet of every generation the plan asks for."""
    extraction = (work.domains * work.extraction_models * knobs.extraction_samples
                  * knobs.extraction_steps * (2 if work.extraction_guided else 1))
    if work.extraction_models:  # the released model's images at each more guidance scale
        extraction += (work.domains * knobs.extraction_samples * knobs.extraction_steps
                       * sum(2 if g > 1 else 1 for g in knobs.extraction_extra_guidance))
    sp = ((work.sp_prompts - _shared(work, knobs)) * knobs.sp_samples * knobs.sp_steps
          * (2 if work.sp_guided else 1))
    return extraction + sp


def detection_chance(rate: float, samples: int) -> float:
    """Chance that ``samples`` generations regenerate at least once a training image the model
    regenerates with probability ``rate`` per generation."""
    return 1.0 - (1.0 - rate) ** samples


def _ladder(knobs: Knobs, work: Work) -> list[tuple[Knobs, Cut]]:
    """Each cut in order, applied on top of the ones before; a cut of work the plan does not
    ask for (SP sets without a training probe) is no cut."""
    steps: list[tuple[Knobs, Cut]] = []
    current = knobs
    if current.sampler != "dpmsolver++" or current.extraction_steps > DPM_STEPS:
        new = replace(current, sampler="dpmsolver++",
                      extraction_steps=min(current.extraction_steps, DPM_STEPS),
                      sp_steps=min(current.sp_steps, DPM_STEPS))
        steps.append((new, Cut("sampler", f"{current.sampler} × {current.extraction_steps}",
                               f"dpmsolver++ × {new.extraction_steps}",
                               "none measured: on the reference DPM-Solver++ at 20 steps "
                               "extracts the same planted members as DDIM at 50 "
                               "(docs/performance.md)")))
        current = new
    while work.sp_prompts > _shared(work, current) and current.sp_samples > FLOOR:
        new = replace(current, sp_samples=max(FLOOR, current.sp_samples // 2))
        steps.append((new, Cut("sp_samples", current.sp_samples, new.sp_samples,
                               "fine-tuning probes train on fewer self-generated images: a "
                               "weaker attacker, so a probe's Δ-AUC may understate "
                               "amplification (not measured at this size)")))
        current = new
    if work.extraction_models and current.extraction_extra_guidance:
        new = replace(current, extraction_extra_guidance=())
        steps.append((new, Cut(
            "extraction_extra_guidance", list(current.extraction_extra_guidance), [],
            "extraction samples the released model at extraction_guidance only: a copy it "
            "gives back only at a lower guidance scale is missed (reported on a DreamBooth "
            "release: planted members at RMS 0.074 / 0.094 at guidance 2, 0.145-0.178 at 7.5)")))
        current = new
    while work.extraction_models and current.extraction_samples > FLOOR:
        new = replace(current, extraction_samples=max(FLOOR, current.extraction_samples // 2))
        if _shared(work, current) and not _shared(work, new):
            # keep the SP sets extraction's images: more SP images than extraction's would be
            # generated apart, and cost more than the cut saves
            current = replace(current, sp_samples=new.extraction_samples)
            steps.append((current, Cut(
                "sp_samples", new.sp_samples, current.sp_samples,
                "fine-tuning probes train on fewer self-generated images (the SP sets are the "
                "released model's extraction images, cut next): a weaker attacker, so a "
                "probe's Δ-AUC may understate amplification (not measured at this size)")))
            new = replace(current, extraction_samples=new.extraction_samples)
        before, after = current.extraction_samples, new.extraction_samples
        steps.append((new, Cut(
            "extraction_samples", before, after,
            f"a training image regenerated at 5 % per generation is found with probability "
            f"{detection_chance(0.05, after):.0%} (was {detection_chance(0.05, before):.0%}); "
            f"at 1 %: {detection_chance(0.01, after):.0%} (was "
            f"{detection_chance(0.01, before):.0%})")))
        current = new
    return steps


def plan_budget(budget_s: float, *, seconds_per_forward: float, fixed_s: float, work: Work,
                knobs: Knobs) -> BudgetPlan:
    """The knobs that fit ``budget_s``: the plan's own when they fit, else the fewest cuts of
    the ladder that do (all of them when none does; ``fits`` is then False).

    ``seconds_per_forward``: one sample through the UNet; ``fixed_s``: everything that is not
    generation (loading, attacks, training, elapsed time already spent).
    """
    if not (math.isfinite(budget_s) and budget_s > 0):
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if not (math.isfinite(seconds_per_forward) and seconds_per_forward > 0):
        raise ValueError(f"seconds_per_forward must be positive, got {seconds_per_forward!r}")

    def predicted(k: Knobs) -> float:
        return fixed_s + generation_forwards(work, k) * seconds_per_forward

    chosen, cuts = knobs, []
    for step, cut in _ladder(knobs, work):
        if predicted(chosen) <= budget_s:
            break
        chosen = step
        cuts.append(cut)
    return BudgetPlan(chosen, predicted(chosen), budget_s, tuple(cuts))
