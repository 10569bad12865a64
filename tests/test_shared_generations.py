"""SP sets and the released model's extraction generations: one generation unit per domain
when the settings make them the same images (issue 18), apart when they do not."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import s2l_scan.generation as generation
from s2l_scan.config import make_config

SETTINGS: dict[str, Any] = {"extraction_samples": 3, "extraction_steps": 2, "sp_samples": 2,
                            "sp_steps": 2, "extraction_guidance": 2.0, "sp_guidance": 2.0,
                            "batch_size": 2}


def _spy(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str, float, int]]:
    """Count every image generated, by (model, prompt, guidance, image index): the pipeline
    call of :func:`s2l_scan.generation._generate` sees each image once, whoever asked. The
    model is "released" for the first UNet that generates (extraction on the released model
    runs before the probes), else "copy" (a probe's copies differ in their prompt)."""
    made: Counter[tuple[str, str, float, int]] = Counter()
    released: list[Any] = []
    real = generation._generate

    def spy(pipeline: Any, prompt: str, count: int, *, first: int, settings: Any,
            **kwargs: Any) -> np.ndarray:
        released.extend([] if released else [pipeline.unet])
        model = "released" if pipeline.unet is released[0] else "copy"
        for i in range(first, first + count):
            made[(model, prompt, settings.guidance, i)] += 1
        return real(pipeline, prompt, count, first=first, settings=settings, **kwargs)

    monkeypatch.setattr(generation, "_generate", spy)
    return made


@pytest.mark.parametrize("cache", ["off", "on"])
def test_a_scan_generates_each_models_images_for_a_domain_once(
        tiny_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        cache: str) -> None:
    from s2l_scan.session import ScanInputs, run_scan

    made = _spy(monkeypatch)
    config = make_config(**{**SETTINGS, "attacks": ["loss"], "probes": ["lora"],
                            "probe_options": {"lora": {"steps": 1}}, "bootstrap": 20,
                            "permutations": 20, "cache": cache,
                            "cache_dir": str(tmp_path / "units")})
    report = run_scan(ScanInputs(model=str(tiny_reference / "model"),
                                 data=str(tiny_reference / "data")), config)
    domains = {record.domain for record in report.extraction}
    assert domains and set(made.values()) == {1}  # no image generated twice
    per_model = Counter(model for model, *_ in made)
    # the released model and the LoRA copy of each domain generate extraction_samples images
    # per domain; the SP sets (2 per domain) add nothing
    assert per_model == {"released": 3 * len(domains), "copy": 3 * len(domains)}
    if cache == "on":
        assert not (tmp_path / "units" / "sp-set").exists()  # no SP set of its own


def _sets(tiny_reference: Path, **changes: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """(SP set, released extraction images) of the first domain, through the scan's stages."""
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.extraction import _released_generations
    from s2l_scan.stages.probes import GeneratedSets
    from s2l_scan.stages.runtime import Runtime

    model = load_pipeline(tiny_reference / "model")
    domain = load_audit_data(tiny_reference / "data", model.resolution).domains[0]
    config = make_config(**{**SETTINGS, **changes})
    runtime = Runtime()
    extraction = _released_generations(model, [domain], config, runtime)
    assert extraction is not None
    sets = GeneratedSets(model, config, torch.from_numpy, runtime.store, runtime,
                         {domain.name: domain}.__getitem__)
    return np.asarray(sets.sp_latents(domain.name, domain.prompt)), extraction[domain.name], \
        config


def test_the_sp_set_is_a_prefix_of_extractions_images_when_the_settings_match(
        tiny_reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _spy(monkeypatch)
    sp, extraction, config = _sets(tiny_reference)
    assert sp.shape[0] == config.sp_samples < extraction.shape[0]
    np.testing.assert_array_equal(sp, extraction[:config.sp_samples])
    # the layout the store and other processes hand back, so the SP latents (and the probes
    # trained on them) are the same bits in one process, in several, and on a resumed scan
    assert extraction.flags["C_CONTIGUOUS"]
    assert sum(made.values()) == config.extraction_samples  # the SP set generated nothing


@pytest.mark.parametrize("changes", [
    {"sp_guidance": 3.0},  # other guidance: other images
    {"sp_steps": 3},
    {"sp_samples": 4},  # more SP images than extraction's: a set of its own
])
def test_the_sp_set_is_its_own_when_the_settings_differ(
        tiny_reference: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]) -> None:
    made = _spy(monkeypatch)
    sp, extraction, config = _sets(tiny_reference, **changes)
    assert sp.shape[0] == config.sp_samples
    assert not np.array_equal(sp[:2], extraction[:2])
    assert sum(made.values()) == config.extraction_samples + config.sp_samples
