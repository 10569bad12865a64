"""Asthana & Belagiannis's anisotropy detector against independent oracles: a per-pixel loop of
cosines written out in numpy, Wen's step-1 magnitude, and closed forms."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from s2l_scan.functional.memorization import (
    anisotropy_score,
    guidance_anisotropy,
    text_guidance_magnitude,
)

MIX = torch.tensor(np.random.default_rng(3).normal(size=(4, 4)), dtype=torch.float32)


def _eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A stand-in ε that mixes channels, depends on t and on the conditioning nonlinearly."""
    scale = (t.float() / 1000).view(-1, 1, 1, 1)
    mixed = torch.einsum("ij,njhw->nihw", MIX, x)
    text = c.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return torch.tanh(scale * mixed + text * x.roll(1, dims=1)) + 0.1 * text


def _oracle(x: np.ndarray, cond: np.ndarray, uncond: np.ndarray, t1: int, t2: int
            ) -> tuple[list[float], list[float]]:
    """Both terms by loops: the ℓ2 norm over all elements, the cosine pixel by pixel."""
    def eps(c: np.ndarray, t: int) -> np.ndarray:
        xt, ct = torch.tensor(x), torch.tensor(c).expand(len(x), -1, -1)
        return _eps(xt, torch.full((len(x),), t), ct).double().numpy()

    norms, aligns = [], []
    g1 = eps(cond, t1) - eps(uncond, t1)
    u2 = eps(uncond, t2)
    g2 = eps(cond, t2) - u2
    for n in range(len(x)):
        norms.append(float(np.sqrt((g1[n] ** 2).sum())))
        cosines = [float(u2[n, :, i, j] @ g2[n, :, i, j]
                         / (np.linalg.norm(u2[n, :, i, j]) * np.linalg.norm(g2[n, :, i, j])))
                   for i in range(x.shape[2]) for j in range(x.shape[3])]
        aligns.append(float(np.mean(cosines)))
    return norms, aligns


@pytest.mark.parametrize("seed", range(4))
def test_guidance_anisotropy_matches_a_per_pixel_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    cond, uncond = (rng.normal(size=(1, 7, 8)).astype(np.float32) for _ in range(2))
    norm, align = guidance_anisotropy(_eps, torch.tensor(x), torch.tensor(cond),
                                      torch.tensor(uncond), 981, 41)
    want_norm, want_align = _oracle(x, cond, uncond, 981, 41)
    np.testing.assert_allclose(norm.numpy(), want_norm, rtol=1e-5)
    np.testing.assert_allclose(align.numpy(), want_align, rtol=1e-4, atol=1e-6)
    assert norm.dtype == align.dtype == torch.float64


def test_the_norm_term_is_wens_step_one_magnitude() -> None:
    x = torch.randn(5, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    cond, uncond = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    norm, _ = guidance_anisotropy(_eps, x, cond, uncond, 981, 41)
    wen = text_guidance_magnitude(_eps, x, cond, uncond, torch.linspace(0.99, 0.01, 1000),
                                  [981], 7.5)
    torch.testing.assert_close(norm, wen)


def test_alignment_is_one_when_guidance_points_along_the_unconditional_eps() -> None:
    # ε(x, t, c) = (1 + mean c)·x: the guidance is (mean c − mean ∅)·x, parallel to ε(∅)
    def eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (1 + c.mean(dim=(1, 2))).view(-1, 1, 1, 1) * x

    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    up, down = torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), -0.5)
    _, along = guidance_anisotropy(eps, x, up, torch.zeros(1, 2, 2), 900, 40)
    _, against = guidance_anisotropy(eps, x, down, torch.zeros(1, 2, 2), 900, 40)
    torch.testing.assert_close(along, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(against, -torch.ones(2, dtype=torch.float64))


def test_anisotropy_score_weights_and_bad_input() -> None:
    np.testing.assert_allclose(anisotropy_score([1.0, 2.0], [0.5, -0.5], 1.0, 2.0), [2.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        anisotropy_score([1.0, 2.0], [0.5], 1.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        anisotropy_score([1.0], [0.5], float("nan"), 2.0)
    with pytest.raises(ValueError, match="x_T"):
        guidance_anisotropy(_eps, torch.zeros(4, 4), torch.zeros(1, 2, 2),
                            torch.zeros(1, 2, 2), 900, 40)


def _tiny(tiny_reference: Path) -> tuple[Any, list[tuple[str, str, str]]]:
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.memorization import prompts_of

    model = load_pipeline(tiny_reference / "model")
    return model, prompts_of(load_audit_data(tiny_reference / "data", model.resolution))[:2]


def test_the_stage_pairs_its_norm_with_wens_magnitude_start_by_start(
        tiny_reference: Path) -> None:
    from s2l_scan.stages.memorization import MemorizationSettings, run_memorization

    model, prompts = _tiny(tiny_reference)
    settings = MemorizationSettings(starts=3, detect_steps=1, anisotropy_starts=3,
                                    alignment_weight=0.5, anisotropy_threshold=-2.0)
    records = run_memorization(model, prompts, settings)
    for record in records:
        terms = record.anisotropy
        assert terms is not None and record.flagged_anisotropy  # score ≥ −0.5 > −2
        # the same seeded starts and the grid's first step: Wen's step-1 value, start by start
        np.testing.assert_allclose(terms.norm, record.magnitudes, rtol=1e-6)
        assert all(-1.0 <= a <= 1.0 for a in terms.alignment)
        np.testing.assert_allclose(
            terms.score, np.add(terms.norm, 0.5 * np.asarray(terms.alignment)))
    again = run_memorization(model, prompts, settings)
    assert [r.anisotropy for r in again] == [r.anisotropy for r in records]  # seeded
    assert records[0].anisotropy != records[1].anisotropy  # each prompt its own


def test_anisotropy_runs_four_unet_forwards_a_start_and_no_wen_when_alone(
        tiny_reference: Path, tmp_path: Path) -> None:
    from s2l_scan.stages.memorization import MemorizationSettings, run_memorization
    from s2l_scan.units import UnitStore
    from tests.test_memorization_units import forwards

    model, prompts = _tiny(tiny_reference)
    settings = MemorizationSettings(starts=0, anisotropy_starts=3)
    store = UnitStore(tmp_path / "units")
    with forwards(model) as counted:
        [record] = run_memorization(model, prompts[:1], settings, store=store)
    # 2 timesteps × (conditional + unconditional), the 3 starts batched; no Wen step taken
    assert counted["unet"] == 4 and record.magnitude is None and not record.magnitudes
    assert counted["vae.decoder"] == 0
    with forwards(model) as counted:  # a rescan: the unit is stored
        again = run_memorization(model, prompts[:1], dataclasses.replace(
            settings, alignment_weight=7.0), store=store)[0]
    assert counted == dict.fromkeys(counted, 0)
    assert record.anisotropy is not None and again.anisotropy is not None
    assert again.anisotropy.norm == record.anisotropy.norm  # the weight only combines them
    assert again.anisotropy.score != record.anisotropy.score


def test_an_anisotropy_check_in_a_scan(tiny_reference: Path) -> None:
    import json

    import jsonschema

    from s2l_scan.config import make_config
    from s2l_scan.plan import ScanInputs, build_plan
    from s2l_scan.report.files import schema
    from s2l_scan.session import run_scan

    inputs = ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data"))
    # the score is norm + 2·alignment ≥ −2 (a cosine ≥ −1), so max_anisotropy −3 must fail
    config = make_config(attacks=["loss"], probes=[], extraction_samples=0, bootstrap=20,
                         permutations=20, domains=["identity-0"], memorization_starts=2,
                         anisotropy_starts=2, max_anisotropy=-3.0)
    report = run_scan(inputs, config)
    wen, anisotropy = report.memorization
    assert anisotropy.item_id == "memorization::anisotropy[identity-0]"
    assert not wen.gating and not wen.flagged  # ungated: reported only
    assert anisotropy.outcome == "failed"
    assert "log-probability anisotropy score" in anisotropy.reasons[0].text
    assert "max_anisotropy -3" in anisotropy.reasons[0].text
    assert anisotropy.reasons[0].setting == "max_anisotropy"
    assert anisotropy.settings["norm_t"] > anisotropy.settings["align_t"]
    entry = anisotropy.prompts[0]
    assert entry["value"] == pytest.approx(entry["norm"] + 2.0 * entry["alignment"])
    assert entry["norm"] == pytest.approx(wen.prompts[0]["value"], rel=1e-6)
    plan = build_plan(inputs, config)
    assert [str(c) for c in plan.checks(["identity-0"])][-2:] == [wen.item_id,
                                                                  anisotropy.item_id]
    jsonschema.validate(json.loads(json.dumps(report.to_dict())), schema())


@pytest.mark.parametrize(("options", "named"), [
    ({"anisotropy_starts": -1}, "anisotropy_starts"),
    ({"max_anisotropy": float("nan")}, "max_anisotropy"),
    ({"max_anisotropy": True}, "max_anisotropy"),
    ({"anisotropy_alignment_weight": -0.5}, "anisotropy_alignment_weight"),
])
def test_anisotropy_option_errors(options: dict[str, object], named: str) -> None:
    from s2l_scan.config import make_config
    from s2l_scan.errors import UsageError

    with pytest.raises(UsageError, match=named):
        make_config(**options)


def test_the_default_scan_runs_no_detector() -> None:
    from s2l_scan.config import make_config
    from s2l_scan.detectors import DETECTORS, enabled_detectors

    assert enabled_detectors(make_config()) == []
    assert list(DETECTORS) == ["wen", "anisotropy", "clique"]
    assert [d.name for d in enabled_detectors(make_config(anisotropy_starts=1))] == [
        "anisotropy"]
