"""CLiD against an independent oracle: the authors' published loop (mia_CLiD_impt.py) written
out literally, per sample, with diffusers' scheduler.add_noise and F.mse_loss, on the tiny
reference UNet with the same seeded noises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2l_scan.attack import Target, make_attack
from s2l_scan.conditioning import TextEncoders
from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.plan import ScanInputs
from s2l_scan.session import run_scan
from s2l_scan.stages.baselines import alphas
from s2l_scan.stages.encode import encode_domain, null_conditioning


def _authors_loop(unet, scheduler, latent, cond, uncond, noises, ts):  # type: ignore[no-untyped-def]
    """mia_CLiD_impt.mi_mtcl_denoise for one sample, c* = the null caption only."""
    ts = torch.tensor(ts).long()
    pixel = latent[None].expand(len(ts), *latent.shape)
    x = scheduler.add_noise(pixel, noises, ts)
    loss_ori = F.mse_loss(unet(x, ts, cond[None].expand(len(ts), *cond.shape)).sample.float(),
                          noises.float(), reduction="mean")
    loss_null = F.mse_loss(unet(x, ts, uncond.expand(len(ts), *uncond.shape[1:])).sample
                           .float(), noises.float(), reduction="mean")
    return float(loss_ori), float(loss_null) - float(loss_ori)


def test_clid_matches_the_authors_loop(tiny_reference: Path) -> None:
    model = load_pipeline(tiny_reference / "model")
    domain = load_audit_data(tiny_reference / "data", model.resolution).domains[0]
    enc = encode_domain(model, domain, 8)
    attack = make_attack("clid", {"timesteps": [300, 450, 600]}, seed=3)
    uncond = null_conditioning(TextEncoders.of(model.pipeline),
                               (model.resolution, model.resolution))
    target = Target(model.pipeline.unet, alphas(model), 4, prediction_type="epsilon",
                    uncond=uncond)
    scores = attack.score(target, enc.members, enc.member_cond)
    x0 = enc.members
    noises = attack._noises(x0, torch.arange(len(x0)))  # type: ignore[attr-defined]
    with torch.inference_mode():
        for i in range(len(x0)):
            loss, clid = _authors_loop(model.pipeline.unet, model.pipeline.scheduler, x0[i],
                                       enc.member_cond.hidden[i], uncond.hidden,
                                       torch.stack([n[i] for n in noises]), [300, 450, 600])
            assert scores[""][i].item() == pytest.approx(clid, rel=1e-4, abs=1e-6)
            assert scores["loss"][i].item() == pytest.approx(-loss, rel=1e-4)
            assert scores["w=4"][i].item() == pytest.approx(4 * clid - loss, rel=1e-4)


def test_clid_without_empty_prompt_is_refused(tiny_reference: Path) -> None:
    model = load_pipeline(tiny_reference / "model")
    attack = make_attack("clid", {}, seed=0)
    target = Target(model.pipeline.unet, alphas(model), 4, prediction_type="epsilon")
    with pytest.raises(UsageError, match="empty-prompt"):
        attack.score(target, torch.zeros(1, 4, 8, 8), torch.zeros(1, 77, 32))


@pytest.mark.parametrize("options", [{"timesteps": []}, {"weights": [0]}, {"weights": "x"},
                                     {"seed": -1}, {"timesteps": [1000]}])
def test_clid_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        attack = make_attack("clid", options, seed=0)
        attack.check_timesteps(1000)


def test_clid_in_a_scan_has_its_candidates(tiny_reference: Path) -> None:
    config = make_config(attacks=["clid"], extraction_samples=0, probes=["noise"],
                         bootstrap=20, permutations=20, domains=["identity-0"])
    report = run_scan(ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data")),
                      config)
    rows = [r for r in report.results if r.attack == "clid"]
    assert {r.probe for r in rows} == {None, "noise"}
    assert set(rows[0].variant_scores) == {"loss", "w=1", "w=4", "w=16"}
    assert np.isfinite(rows[0].member_scores).all()
