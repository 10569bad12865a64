"""The scan's time budget, applied after the released model's baselines (``budget``).

By then the load, the encoding and one full round of attacks have run, so their seconds are
measured, not guessed. A short calibration times the model's UNet on one batch; what remains
besides generation is predicted from those: each probe re-runs the attacks on its copy (the
baselines' seconds again) and a training probe costs about 3 sample-forwards per training
sample per step (forward and backward). :func:`s2l_scan.budget.plan_budget` then chooses the
generation settings; rank 0 decides and every process takes its decision.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from s2l_scan.budget import BudgetPlan, Knobs, Work, plan_budget
from s2l_scan.conditioning import TextEncoders
from s2l_scan.config import ScanConfig
from s2l_scan.io.model import LoadedModel
from s2l_scan.probing import ProbeSelection
from s2l_scan.stages.runtime import Runtime
from s2l_scan.sweep import parse_budget

TRAINING_FORWARDS = 3  # a training step costs about a forward and a backward (≈ 2 forwards)


def seconds_per_forward(model: LoadedModel, batch_size: int, repeats: int = 2) -> float:
    """Seconds of one sample through the UNet: the fastest of ``repeats`` timed forwards of a
    batch (after one warm-up), divided by the batch."""
    unet = model.pipeline.unet
    config = unet.config
    size = model.resolution // model.pipeline.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((batch_size, config.in_channels, size, size), generator=generator)
    latents = latents.to(unet.device, unet.dtype)
    # the model's own conditioning (SDXL: pooled embeddings and time ids too), encoded once
    cond = TextEncoders.of(model.pipeline).encode([""] * batch_size,
                                                  (model.resolution, model.resolution))
    kwargs = cond.to(unet.device).unet_kwargs(unet.dtype)
    best = float("inf")
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            unet(latents, 500, **kwargs)
            if repeat:  # the first is a warm-up
                best = min(best, time.perf_counter() - start)
    return best / batch_size


def knobs(config: ScanConfig) -> Knobs:
    return Knobs(config.sampler, config.extraction_samples, config.extraction_steps,
                 config.sp_samples, config.sp_steps, config.extraction_extra_guidance)


def _work(config: ScanConfig, probes: ProbeSelection, domains: int) -> Work:
    planned = [spec.probe for spec in probes.planned]
    uses = {kind for probe in planned for kind in probe.uses}
    extracting = config.extraction_samples > 0
    return Work(domains=domains,
                extraction_models=(1 + (len(planned) if config.extraction_on_probes else 0))
                if extracting else 0,
                sp_prompts=(domains if "sp" in uses else 0) + ("ood" in uses) + ("prior" in uses),
                extraction_guided=config.extraction_guidance > 1,
                sp_guided=config.sp_guidance > 1,
                shared_sp_prompts=domains if "sp" in uses and extracting
                and config.extraction_guidance == config.sp_guidance else 0)


def _training_forwards(probes: ProbeSelection, batch_size: int, domains: int) -> int:
    total = 0
    for spec in probes.planned:
        options = spec.probe.describe()
        steps = options.get("steps", 0)
        if isinstance(steps, int):
            total += steps * int(options.get("batch_size", batch_size)) * TRAINING_FORWARDS
    return total * domains


def budgeted_config(config: ScanConfig, probes: ProbeSelection, model: LoadedModel,
                    domains: int, *, elapsed_s: float, baselines_s: float, runtime: Runtime
                    ) -> tuple[ScanConfig, dict[str, Any] | None]:
    """``config`` with the generation settings that fit ``config.budget`` (unchanged without
    one), and the report's record of the plan (None without a budget)."""
    if config.budget is None:
        return config, None
    plan: BudgetPlan | None = None
    per_forward = 0.0
    if runtime.is_main:
        per_forward = seconds_per_forward(model, config.batch_size)
        fixed = (elapsed_s + baselines_s * len(probes.planned)
                 + _training_forwards(probes, config.batch_size, domains) * per_forward
                 + (probes.sweep_budget_s or 0.0))
        plan = plan_budget(parse_budget(config.budget), seconds_per_forward=per_forward,
                           fixed_s=fixed, work=_work(config, probes, domains),
                           knobs=knobs(config))
    plan, per_forward = runtime.broadcast((plan, per_forward))
    assert plan is not None
    chosen = dataclasses.asdict(plan.knobs)
    record = {"budget_s": plan.budget_s, "predicted_s": round(plan.predicted_s, 1),
              "fits": plan.fits, "seconds_per_sample_forward": round(per_forward, 6),
              "cuts": [dataclasses.asdict(cut) for cut in plan.cuts]}
    return dataclasses.replace(config, **chosen), record
