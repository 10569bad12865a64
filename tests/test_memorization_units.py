"""Memorization measurements are units of the store: a rescan with the same settings runs no
model forward for them (counted with forward hooks on every model part), each setting that
changes a measurement misses its unit (and only its unit), and a domain prompt's clique
generations are extraction's generation units when their settings match."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from s2l_scan.config import make_config
from s2l_scan.generation import SamplerSettings
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import LoadedModel, load_pipeline
from s2l_scan.stages.memorization import (
    MemorizationSettings,
    memorization_records,
    prompts_of,
    run_memorization,
)
from s2l_scan.units import UnitStore

BASE: dict[str, Any] = {
    "attacks": ["loss"], "probes": [], "extraction_samples": 0, "domains": ["identity-0"],
    "memorization_starts": 2, "memorization_steps": 2, "clique_generations": 2,
    "extraction_steps": 2, "extraction_delta": 1.0, "clique_size": 2}


@contextmanager
def forwards(model: LoadedModel) -> Iterator[dict[str, int]]:
    """Counts of forward calls of the UNet, the text encoder and both VAE halves."""
    pipeline = model.pipeline
    parts = {"unet": pipeline.unet, "text_encoder": pipeline.text_encoder,
             "vae.decoder": pipeline.vae.decoder, "vae.encoder": pipeline.vae.encoder}
    counts = dict.fromkeys(parts, 0)
    handles = []
    for name, module in parts.items():
        def hook(*_: Any, name: str = name) -> None:
            counts[name] += 1
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _units(store: Path) -> dict[str, int]:
    return {kind: len(list((store / kind).rglob("*.npz")))
            for kind in ("memorization-wen", "generated")}


def _records(model: LoadedModel, data: Any, store: Path, **changes: Any) -> list[Any]:
    return [dataclasses.asdict(r) for r in memorization_records(
        model, data, make_config(**{**BASE, **changes}), store=UnitStore(store))]


@pytest.fixture(scope="module")
def primed(tiny_reference: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[LoadedModel, Any, Path, list[Any]]:
    model = load_pipeline(tiny_reference / "model")
    data = load_audit_data(tiny_reference / "data", model.resolution, domains=["identity-0"])
    store = tmp_path_factory.mktemp("units") / "store"
    with forwards(model) as counted:
        records = _records(model, data, store)
    assert counted["unet"] > 0 and counted["vae.decoder"] > 0  # the first scan did the work
    return model, data, store, records


def test_a_rescan_runs_no_model_forward_for_memorization(primed: Any) -> None:
    model, data, store, first = primed
    before = _units(store)
    prompts = len(prompts_of(data))
    assert before == {"memorization-wen": prompts, "generated": prompts}
    with forwards(model) as counted:
        again = _records(model, data, store)
    assert counted == dict.fromkeys(counted, 0)
    assert again == first and _units(store) == before


@pytest.mark.parametrize(("changes", "misses"), [
    ({"memorization_starts": 3}, {"memorization-wen"}),
    ({"memorization_steps": 1}, {"memorization-wen"}),
    ({"extraction_guidance": 3.0}, {"memorization-wen", "generated"}),
    ({"seed": 1}, {"memorization-wen", "generated"}),
    ({"clique_generations": 3}, {"generated"}),
    ({"extraction_steps": 3}, {"generated"}),
    ({"sampler": "ddim"}, {"generated"}),  # Wen reads its own DDIM grid, whatever the sampler
    ({"negative_prompt": "blurry"}, {"generated"}),
    # what judges or reads the measurements keys no unit
    ({"max_text_guidance": 1.0, "clique_size": 3, "extraction_delta": 0.5}, set()),
])
def test_each_setting_misses_exactly_its_units(primed: Any, tmp_path: Path,
                                              changes: dict[str, Any], misses: set[str]
                                              ) -> None:
    model, data, store, _ = primed
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    before = _units(copy)
    with forwards(model) as counted:
        _records(model, data, copy, **changes)
    grown = {kind for kind, n in _units(copy).items() if n > before[kind]}
    assert grown == misses
    if "memorization-wen" in misses:
        assert counted["unet"] > 0 and counted["text_encoder"] > 0
    if misses == {"generated"}:
        assert counted["vae.decoder"] > 0
    if not misses:
        assert counted == dict.fromkeys(counted, 0)


def test_a_changed_prompt_or_model_misses(primed: Any, tiny_reference: Path,
                                          tmp_path: Path) -> None:
    from tests.model_factory import diffusers_lora

    model, data, store, _ = primed
    settings = MemorizationSettings(starts=2, detect_steps=2, generations=2,
                                    generation=SamplerSettings(steps=2))
    [(domain, prompt, source)] = prompts_of(data)[:1]
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    units = UnitStore(copy)
    run_memorization(model, [(domain, prompt, source)], settings, store=units)
    computed = units.computed
    run_memorization(model, [(domain, prompt, source)], settings, store=units)
    assert units.computed == computed  # the same prompt and model: stored
    run_memorization(model, [(domain, prompt + " again", source)], settings, store=units)
    assert units.computed == computed + 2  # a new prompt: its magnitudes and generations
    adapter = diffusers_lora(tiny_reference / "model", tmp_path / "lora")
    tuned = load_pipeline(tiny_reference / "model", lora=str(adapter))
    assert tuned.model_hash != model.model_hash
    run_memorization(tuned, [(domain, prompt, source)], settings, store=units)
    assert units.computed == computed + 4  # an adapter fused: another model


def test_clique_generations_of_a_domain_prompt_are_extractions_units(
        primed: Any, tmp_path: Path) -> None:
    from s2l_scan.stages.extraction import _released_generations
    from s2l_scan.stages.runtime import Runtime

    model, data, _, _ = primed
    config = make_config(**{**BASE, "extraction_samples": 3, "clique_generations": 3})
    store = UnitStore(tmp_path / "store")
    domain = data.domains[0]
    images = _released_generations(model, [domain], config, Runtime(store))
    assert images is not None and _units(store.root)["generated"] == 1  # type: ignore[arg-type]
    settings = MemorizationSettings(starts=1, detect_steps=1, generations=3, delta=1.0,
                                    generation=_sampler(config))
    with forwards(model) as counted:
        [record] = run_memorization(model, [(domain.name, domain.prompt, "prompt")], settings,
                                    store=store)
    assert counted["vae.decoder"] == 0 and counted["unet"] > 0  # Wen's magnitudes only
    assert _units(store.root)["generated"] == 1  # type: ignore[arg-type]
    assert record.clique == [0, 1, 2]  # δ = 1: the stored images, all near-copies
    fresh = run_memorization(model, [(domain.name, domain.prompt, "prompt")], settings)[0]
    assert fresh.clique == record.clique and fresh.magnitudes == record.magnitudes


def _sampler(config: Any) -> Any:
    from s2l_scan.stages.extraction import sampler

    return sampler(config)


def test_stored_generations_equal_fresh_ones(primed: Any) -> None:
    """The stored clique images are the images a fresh generation makes (no stale unit)."""
    from s2l_scan.generation import generate_images
    from s2l_scan.stages.extraction import sampler
    from s2l_scan.stages.memorization import clique_generation_key, clique_stream

    model, data, store, _ = primed
    config = make_config(**BASE)
    domain, prompt, source = prompts_of(data)[0]
    settings = MemorizationSettings(generations=2, seed=config.seed, generation=sampler(config))
    key = clique_generation_key(model, prompt, clique_stream(domain, prompt, source), settings)
    found = UnitStore(store).load("generated", key)
    assert found is not None
    fresh = generate_images(model.pipeline, prompt, 2, seed=config.seed,
                            key=clique_stream(domain, prompt, source),
                            settings=settings.generation)
    assert torch.equal(torch.from_numpy(found[0]["images"]), torch.from_numpy(fresh))


def test_a_rescan_reuses_every_unit_through_the_session(tiny_reference: Path,
                                                        tmp_path: Path) -> None:
    """The session hands its store to the memorization stage: a second scan computes nothing
    and reports the same memorization records."""
    from s2l_scan.plan import ScanInputs
    from s2l_scan.session import run_scan

    inputs = ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data"))
    config = make_config(**BASE, bootstrap=20, permutations=20, cache_dir=str(tmp_path / "u"))
    first = run_scan(inputs, config)
    again = run_scan(inputs, config)
    assert int(first.timestamps["units_computed"]) > 0
    assert again.timestamps["units_computed"] == "0"
    assert [dataclasses.asdict(r) for r in again.memorization] == \
        [dataclasses.asdict(r) for r in first.memorization]
    data = load_audit_data(tiny_reference / "data", first.model["resolution"],
                           domains=["identity-0"])
    assert _units(tmp_path / "u")["memorization-wen"] == len(prompts_of(data))
