"""Prompt-level memorization detectors against independent oracles: brute-force cliques,
pairwise distances written out, and text-guidance magnitudes with a closed form."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from s2l_scan.functional.diffusion import ddim_step
from s2l_scan.functional.memorization import (
    largest_clique,
    near_copy_graph,
    text_guidance_magnitude,
)


def _brute_clique(adjacency: np.ndarray) -> int:
    n = len(adjacency)
    for size in range(n, 0, -1):
        for nodes in itertools.combinations(range(n), size):
            if all(adjacency[a, b] for a, b in itertools.combinations(nodes, 2)):
                return size
    return 0


@pytest.mark.parametrize("seed", range(12))
def test_largest_clique_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 10))
    upper = np.triu(rng.random((n, n)) < rng.uniform(0.2, 0.9), 1)
    adjacency = upper | upper.T
    clique = largest_clique(adjacency)
    assert len(clique) == _brute_clique(adjacency)
    assert all(adjacency[a, b] for a, b in itertools.combinations(clique, 2))


def test_near_copy_graph_is_the_tiled_rms() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    images[1] = np.clip(images[0].astype(int) + 3, 0, 255)  # a near-copy of image 0
    graph = near_copy_graph(images, 0.05, tiles=2)
    x = images / 255.0
    for a, b in itertools.combinations(range(5), 2):
        tiles = [np.sqrt(((x[a, r:r + 4, c:c + 4] - x[b, r:r + 4, c:c + 4]) ** 2).mean())
                 for r in (0, 4) for c in (0, 4)]
        assert graph[a, b] == graph[b, a] == (max(tiles) <= 0.05)
    assert graph[0, 1] and not graph.diagonal().any()


def test_text_guidance_magnitude_closed_form() -> None:
    # ε(x, t, c) = 0.5·x + mean(c): the text-conditional part is mean(c) − mean(∅) everywhere
    def eps(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return 0.5 * x + c.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    alphas = torch.linspace(0.99, 0.01, 1000)
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    cond, uncond = torch.full((1, 5, 6), 0.3), torch.zeros(1, 5, 6)
    got = text_guidance_magnitude(eps, x_T, cond, uncond, alphas, [999, 979, 959], 7.0)
    assert torch.allclose(got, torch.full((3,), 0.3 * np.sqrt(32), dtype=torch.float64))
    # the trajectory moves with the guided ε̂: the mean gap per step, step by step, by hand
    def eps_x(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x * (1 + c.mean(dim=(1, 2)).view(-1, 1, 1, 1))

    got = text_guidance_magnitude(eps_x, x_T, cond, uncond, alphas, [999, 979], 2.0)
    x, total = x_T, torch.zeros(3, dtype=torch.float64)
    for i in range(2):
        e_c, e_u = x * 1.3, x
        total += (e_c - e_u).flatten(1).norm(dim=1).double()
        if i == 0:
            x = ddim_step(x, e_u + 2.0 * (e_c - e_u), alphas[999].expand(3),
                          alphas[979].expand(3))
    assert torch.allclose(got, total / 2)


def test_run_memorization_on_the_tiny_model(tiny_reference: Path, tmp_path: Path) -> None:
    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.memorization import (
        MemorizationSettings,
        prompts_of,
        run_memorization,
    )

    model = load_pipeline(tiny_reference / "model")
    data = load_audit_data(tiny_reference / "data", model.resolution)
    prompts = prompts_of(data)[:1]
    settings = MemorizationSettings(starts=2, sampler_steps=4, detect_steps=2, threshold=0.0,
                                    generations=3, delta=1.0, min_clique=3)
    [record] = run_memorization(model, prompts, settings, evidence_dir=tmp_path)
    assert record.source == "prompt" and len(record.magnitudes) == 2
    assert record.magnitude > 0 and record.flagged_magnitude
    assert record.clique == [0, 1, 2] and record.flagged_clique  # δ = 1: all near-copies
    assert record.evidence is not None and Path(record.evidence).is_file()
    again = run_memorization(model, prompts, settings)[0]
    assert again.magnitudes == record.magnitudes  # seeded


def test_memorization_checks_in_a_scan(tiny_reference: Path, tmp_path: Path) -> None:
    import jsonschema

    from s2l_scan.config import make_config
    from s2l_scan.plan import ScanInputs, build_plan
    from s2l_scan.report.files import schema
    from s2l_scan.session import run_scan

    inputs = ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data"))
    # δ = 1: every generation is a near-copy of every other, so a clique of 3 of 3 must fail;
    # a magnitude threshold no model reaches must pass
    config = make_config(attacks=["loss"], probes=[], extraction_samples=0, bootstrap=20,
                         permutations=20, domains=["identity-0"], memorization_starts=2,
                         max_text_guidance=1e9, extraction_steps=4, memorization_steps=2,
                         clique_generations=3, clique_size=3, extraction_delta=1.0,
                         evidence_dir=str(tmp_path / "evidence"))
    report = run_scan(inputs, config)
    wen, clique = report.memorization
    assert (wen.item_id, clique.item_id) == ("memorization::wen[identity-0]",
                                            "memorization::clique[identity-0]")
    assert wen.passed and wen.largest > 0 and wen.prompts[0]["source"] == "prompt"
    assert not clique.passed and clique.reasons[0].kind == "memorization"
    assert "clique" in clique.reasons[0].text
    assert Path(clique.prompts[0]["evidence"]).is_file()
    assert clique.item_id in report.failed_items and wen.item_id not in report.failed_items
    plan = build_plan(inputs, config)
    assert [str(c) for c in plan.checks(["identity-0"])][-2:] == [wen.item_id, clique.item_id]
    jsonschema.validate(json.loads(json.dumps(report.to_dict())), schema())


@pytest.mark.parametrize(("options", "named"), [
    ({"max_text_guidance": -1.0}, "max_text_guidance"),
    ({"memorization_steps": 60}, "memorization_steps"),
    ({"memorization_starts": -1}, "memorization_starts"),
    ({"clique_size": 0}, "clique_size"),
])
def test_memorization_option_errors(options: dict[str, object], named: str) -> None:
    from s2l_scan.config import make_config
    from s2l_scan.errors import UsageError

    with pytest.raises(UsageError, match=named):
        make_config(**options)


def test_wen_reads_a_ddim_grid_whatever_the_models_sampler(tiny_reference: Path) -> None:
    """Wen et al.'s script swaps DDIM in: a model shipped with PNDM (SD-1.5's) must give the
    magnitudes of the same weights under DDIM, not PNDM's repeated timesteps."""
    from diffusers import DDIMScheduler, PNDMScheduler

    from s2l_scan.io.audit_data import load_audit_data
    from s2l_scan.io.model import load_pipeline
    from s2l_scan.stages.memorization import (
        MemorizationSettings,
        prompts_of,
        run_memorization,
    )

    model = load_pipeline(tiny_reference / "model")
    prompts = prompts_of(load_audit_data(tiny_reference / "data", model.resolution))[:1]
    settings = MemorizationSettings(starts=2, sampler_steps=50, detect_steps=3)
    config = model.pipeline.scheduler.config
    magnitudes = {}
    for kind in (DDIMScheduler, PNDMScheduler):
        model.pipeline.scheduler = kind.from_config(config)
        magnitudes[kind.__name__] = run_memorization(model, prompts, settings)[0].magnitudes
    grids = []
    for kind in (DDIMScheduler, PNDMScheduler):  # the two grids differ in their first steps,
        scheduler = kind.from_config(config)     # so reading the model's own would differ
        scheduler.set_timesteps(50)
        grids.append(scheduler.timesteps[:3].tolist())
    assert grids[0] != grids[1], grids
    assert magnitudes["PNDMScheduler"] == magnitudes["DDIMScheduler"]
