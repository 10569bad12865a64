"""The sampler of extraction and SP-set generations (``sampler``): a named diffusers scheduler
built from the model's config, swapped in for the generations alone, recorded in the report and
part of every generation unit key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.generation import SamplerSettings, generate_images
from s2l_scan.io.model import load_pipeline
from s2l_scan.samplers import SAMPLERS, make_scheduler, sampler_class, sampler_identity

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "prediction_type": "v_prediction"}


@pytest.mark.parametrize("bad", ["pndm", "DDIM", "", 3])
def test_an_unknown_sampler_is_a_usage_error_naming_the_choices(bad: Any) -> None:
    with pytest.raises(UsageError, match=r"sampler must be one of: model .*ddim .*dpmsolver"):
        make_config(sampler=bad)


@pytest.mark.parametrize(("name", "cls"), [("model", PNDMScheduler), ("ddim", DDIMScheduler),
                                           ("dpmsolver++", DPMSolverMultistepScheduler)])
def test_a_sampler_keeps_the_models_noise_schedule(name: str, cls: type) -> None:
    own = PNDMScheduler(**SD_SCHEDULE)
    made = make_scheduler(name, own)
    assert type(made) is cls and sampler_class(name, own) == cls.__name__
    assert made.config.prediction_type == "v_prediction"
    np.testing.assert_array_equal(made.alphas_cumprod.numpy(), own.alphas_cumprod.numpy())
    assert (made is own) == (name == "model")


def test_dpmsolver_is_the_plus_plus_variant() -> None:
    assert make_scheduler("dpmsolver++", DDIMScheduler()).config.algorithm_type == "dpmsolver++"


def test_the_identity_tells_samplers_and_scheduler_configs_apart() -> None:
    pndm, ddim = PNDMScheduler(**SD_SCHEDULE), DDIMScheduler(**SD_SCHEDULE)
    ids = {sampler_identity(name, own) for name in SAMPLERS for own in (pndm, ddim)}
    # 3 samplers × 2 configs, less one: "ddim" on a DDIM model is that model's own sampler,
    # the same images, so the same key
    assert len(ids) == 2 * len(SAMPLERS) - 1
    assert sampler_identity("ddim", ddim) == sampler_identity("model", ddim)


def test_generation_with_a_named_sampler_equals_diffusers_with_that_scheduler(
        tiny_reference: Path) -> None:
    pipe = load_pipeline(tiny_reference / "model").pipeline
    own = pipe.scheduler
    settings = SamplerSettings(sampler="dpmsolver++", steps=3, guidance=2.0, batch_size=2)
    ours = generate_images(pipe, "a photo of identity 0", 2, seed=0, key="d", settings=settings)
    assert pipe.scheduler is own  # swapped back
    # the oracle: diffusers' own pipeline with the scheduler set by hand
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(own.config,
                                                             algorithm_type="dpmsolver++")
    try:
        theirs = generate_images(pipe, "a photo of identity 0", 2, seed=0, key="d",
                                 settings=SamplerSettings(steps=3, guidance=2.0, batch_size=2))
    finally:
        pipe.scheduler = own
    np.testing.assert_array_equal(ours, theirs)
    model = generate_images(pipe, "a photo of identity 0", 2, seed=0, key="d",
                            settings=SamplerSettings(steps=3, guidance=2.0, batch_size=2))
    assert not np.array_equal(ours, model)


def test_the_sampler_is_part_of_every_generation_unit_key() -> None:
    from s2l_scan.probes.sp_set import sp_set_key
    from s2l_scan.stages.extraction import _generation_key, sp_sampler
    from s2l_scan.stages.probes import _ProbeRun
    from s2l_scan.stages.runtime import Runtime

    model = SimpleNamespace(model_hash="h", platform={},
                            pipeline=SimpleNamespace(scheduler=PNDMScheduler()))
    domain = SimpleNamespace(prompt="p", name="d")
    enc = SimpleNamespace(members=np.zeros(2), nonmembers=np.ones(2), member_captions=[0],
                          nonmember_captions=[0])
    subject = SimpleNamespace(model=model, encoded={"d": enc},
                              data=SimpleNamespace(domain=lambda name: domain))
    spec = SimpleNamespace(probe=SimpleNamespace(describe=dict), label="noise")
    keys: dict[str, set[str]] = {"generated": set(), "sp": set(), "probe": set()}
    for name in SAMPLERS:
        config = make_config(sampler=name)
        keys["generated"].add(_generation_key(model, domain, config))  # type: ignore[arg-type]
        keys["sp"].add(sp_set_key("h", "p", 2, 0, sp_sampler(config), {},
                                  sampler_identity(name, model.pipeline.scheduler)))
        keys["probe"].add(_ProbeRun(subject, [], config, index=None,  # type: ignore[arg-type]
                                    runtime=Runtime())._key(spec, "d"))  # type: ignore[arg-type]
    assert all(len(found) == len(SAMPLERS) for found in keys.values())


def test_the_report_records_each_generations_sampler(tiny_reference: Path) -> None:
    from s2l_scan.session import ScanInputs, run_scan

    config = make_config(attacks=["loss"], probes=[], extraction_samples=2, extraction_steps=2,
                         extraction_guidance=1.0, sampler="dpmsolver++", sp_steps=3)
    report = run_scan(ScanInputs(model=str(tiny_reference / "model"),
                                 data=str(tiny_reference / "data")), config)
    own = type(load_pipeline(tiny_reference / "model").pipeline.scheduler).__name__
    assert own != "DPMSolverMultistepScheduler"  # else the test could not tell them apart
    assert report.model["sampling"] == {
        "extraction": {"sampler": "dpmsolver++", "scheduler": "DPMSolverMultistepScheduler",
                       "steps": 2, "guidance": 1.0},
        "sp_sets": {"sampler": "dpmsolver++", "scheduler": "DPMSolverMultistepScheduler",
                    "steps": 3, "guidance": 7.5}}
    assert report.extraction and all(
        (r.settings["sampler"], r.settings["scheduler"], r.settings["steps"])
        == ("dpmsolver++", "DPMSolverMultistepScheduler", 2) for r in report.extraction)
