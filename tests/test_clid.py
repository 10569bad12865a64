"""CLiD against an independent oracle: the authors' published loop (mia_CLiD_impt.py) written
out literally, per sample, with diffusers' scheduler.add_noise and F.mse_loss, on the tiny
reference UNet with the same seeded noises; their replace_words_topRate's outputs written out
as literals (run on the inputs below; docs/findings.md, "CLiD against the authors' own code")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from s2l_scan.attack import Target, make_attack
from s2l_scan.baselines.clid import CUT_TOKEN, cut_top_rate, word_importances
from s2l_scan.conditioning import Conditioning, TextEncoders
from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.plan import ScanInputs
from s2l_scan.session import run_scan
from s2l_scan.stages.baselines import alphas
from s2l_scan.stages.encode import encode_domain, null_conditioning


def _authors_loop(unet, scheduler, latent, cond, uncond, noises, ts,  # type: ignore[no-untyped-def]
                  cuts=()):
    """mia_CLiD_impt.mi_mtcl_denoise for one sample, c* = the cut captions' conditionings
    (``cuts``, one row each) and the null caption, then cal_clid_th's mean over every c*."""
    ts = torch.tensor(ts).long()
    pixel = latent[None].expand(len(ts), *latent.shape)
    x = scheduler.add_noise(pixel, noises, ts)
    loss_ori = F.mse_loss(unet(x, ts, cond[None].expand(len(ts), *cond.shape)).sample.float(),
                          noises.float(), reduction="mean")
    difs = []
    for other in [*cuts, uncond[0]]:
        loss_other = F.mse_loss(unet(x, ts, other[None].expand(len(ts), *other.shape)).sample
                                .float(), noises.float(), reduction="mean")
        difs.append(float(loss_other) - float(loss_ori))
    return float(loss_ori), sum(difs) / len(difs)


# replace_words_topRate(sentence, weights, rate) for rates 0.3, 0.5, 0.7, 0.01, 1.0, as their
# function printed them (E = <|endoftext|>)
_AUTHORS_CUTS = [
    ("a photo of identity 0", [0.05, 0.06, 0.04, 0.055, 0.065],
     ["a E of identity E", "a E of E E", "E E of E E", "a photo of identity E", "E E E E E"]),
    ("a  red   car", [3, 1, 2], ["E red car", "E red E", "E E E", "E red car", "E E E"]),
    ("dog", [0.5], ["E"] * 5),
    ("one two three four five six seven eight nine ten", [1, 9, 2, 8, 3, 7, 4, 6, 5, 10],
     ["one E three E five six seven eight nine E", "one E three E five E seven E nine E",
      "one E three E five E E E E E", "one two three four five six seven eight nine E",
      "E E E E E E E E E E"]),
    ("tie tie other tie", [2, 2, 1, 2], ["E E other E"] * 4 + ["E E E E"]),
    ("x y", [1, 1], ["E E"] * 5),
]


@pytest.mark.parametrize(("caption", "importances", "expected"), _AUTHORS_CUTS)
def test_cut_top_rate_matches_the_authors_function(caption: str, importances: list[float],
                                                   expected: list[str]) -> None:
    got = [cut_top_rate(caption, importances, rate) for rate in (0.3, 0.5, 0.7, 0.01, 1.0)]
    assert got == [e.replace("E", CUT_TOKEN) for e in expected]


@given(st.lists(st.tuples(st.sampled_from(["a", "cat", "on", "mat"]),
                          st.integers(0, 5)), min_size=1, max_size=12),
       st.floats(0.01, 1.0))
def test_cut_top_rate_cuts_the_most_important(pairs: list[tuple[str, int]], rate: float) -> None:
    words, importances = [w for w, _ in pairs], [float(i) for _, i in pairs]
    out = cut_top_rate(" ".join(words), importances, rate).split()
    cut = [i for i, w in enumerate(out) if w == CUT_TOKEN]
    kept = [i for i, w in enumerate(out) if w != CUT_TOKEN]
    assert len(out) == len(words) and cut  # at least the most important word goes
    assert all(out[i] == words[i] for i in kept)
    assert not kept or min(importances[i] for i in cut) > max(importances[i] for i in kept)


def test_cut_top_rate_refuses_a_length_mismatch_and_keeps_an_empty_caption() -> None:
    with pytest.raises(ValueError, match="2 words but 1"):
        cut_top_rate("a b", [1.0], 0.5)
    assert cut_top_rate("", [], 0.5) == ""


def test_word_importances_is_one_minus_cosine_of_the_deleted_word() -> None:
    vocab = {"a": [1.0, 0.0, 0.0], "red": [0.0, 2.0, 0.0], "car": [0.0, 1.0, 3.0]}

    def encode(texts):  # type: ignore[no-untyped-def]
        rows = [np.sum([vocab[w] for w in text.split()], axis=0) for text in texts]
        return Conditioning(torch.tensor(np.array(rows))[:, None, :])

    full = np.array([1.0, 3.0, 3.0])
    expected = [1 - full @ v / np.linalg.norm(full) / np.linalg.norm(v)
                for v in (np.array([0.0, 3.0, 3.0]), np.array([1.0, 1.0, 3.0]),
                          np.array([1.0, 2.0, 0.0]))]
    assert word_importances(encode, "a red car") == pytest.approx(expected, rel=1e-12)
    assert word_importances(encode, " ") == []


def _tiny_target(tiny_reference: Path):  # type: ignore[no-untyped-def]
    """The tiny reference's first domain encoded, its text encoders, the empty-prompt
    conditioning and a CLiD target over its UNet: what both authors'-loop checks start from."""
    model = load_pipeline(tiny_reference / "model")
    domain = load_audit_data(tiny_reference / "data", model.resolution).domains[0]
    enc = encode_domain(model, domain, 8)
    encoders = TextEncoders.of(model.pipeline)
    uncond = null_conditioning(encoders, (model.resolution, model.resolution))
    target = Target(model.pipeline.unet, alphas(model), 4, prediction_type="epsilon",
                    uncond=uncond)
    return model, enc, encoders, uncond, target


def _authors_scores(model, enc, uncond, attack, perturbed=()):  # type: ignore[no-untyped-def]
    """(loss, discrepancy) of every member from the authors' loop, with the attack's own seeded
    noises at timesteps 300/450/600 (and its perturbed captions, if any)."""
    x0 = enc.members
    noises = attack._noises(x0, torch.arange(len(x0)))
    with torch.inference_mode():
        return [_authors_loop(model.pipeline.unet, model.pipeline.scheduler, x0[i],
                              enc.member_cond.hidden[i], uncond.hidden,
                              torch.stack([n[i] for n in noises]), [300, 450, 600],
                              [p.hidden[i] for p in perturbed])
                for i in range(len(x0))]


def test_clid_matches_the_authors_loop(tiny_reference: Path) -> None:
    model, enc, _, uncond, target = _tiny_target(tiny_reference)
    attack = make_attack("clid", {"timesteps": [300, 450, 600]}, seed=3)
    scores = attack.score(target, enc.members, enc.member_cond)
    for i, (loss, clid) in enumerate(_authors_scores(model, enc, uncond, attack)):
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
    config = make_config(attacks=["clid", "clid-impt"], extraction_samples=0, probes=["noise"],
                         bootstrap=20, permutations=20, domains=["identity-0"])
    report = run_scan(ScanInputs(str(tiny_reference / "model"), str(tiny_reference / "data")),
                      config)
    rows = [r for r in report.results if r.attack == "clid"]
    assert {r.probe for r in rows} == {None, "noise"}
    assert set(rows[0].variant_scores) == {"loss", "w=1", "w=4", "w=16"}
    assert np.isfinite(rows[0].member_scores).all()
    # clid-impt: its own rows, the same conditional loss (same noises), another discrepancy
    impt = {r.probe: r for r in report.results if r.attack == "clid-impt"}
    assert set(impt) == {None, "noise"}
    plain = {r.probe: r for r in rows}
    for probe in (None, "noise"):
        np.testing.assert_allclose(impt[probe].variant_scores["loss"]["members"],
                                   plain[probe].variant_scores["loss"]["members"], rtol=1e-6)
        assert not np.allclose(impt[probe].member_scores, plain[probe].member_scores)


def test_clid_impt_matches_the_authors_loop(tiny_reference: Path) -> None:
    model, enc, encoders, uncond, target = _tiny_target(tiny_reference)
    attack = make_attack("clid-impt", {"timesteps": [300, 450, 600]}, seed=3)
    size = (model.resolution, model.resolution)
    lists = attack.perturbed_captions(enc.member_captions,
                                      lambda texts: encoders.encode(list(texts), size))
    assert len(lists) == 3 and all(CUT_TOKEN in c for c in lists[0])
    perturbed = [encoders.encode(texts, size) for texts in lists]
    scores = attack.score(target, enc.members, enc.member_cond, perturbed)
    for i, (loss, clid) in enumerate(_authors_scores(model, enc, uncond, attack, perturbed)):
        assert scores[""][i].item() == pytest.approx(clid, rel=1e-4, abs=1e-6)
        assert scores["loss"][i].item() == pytest.approx(-loss, rel=1e-4)
    with pytest.raises(UsageError, match="cuts 3 caption"):
        attack.score(target, enc.members, enc.member_cond)


@pytest.mark.parametrize("options", [{"cuts": [0]}, {"cuts": [1.5]}, {"cuts": "x"},
                                     {"cuts": [True]}])
def test_clid_bad_cuts(options: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="cuts"):
        make_attack("clid-impt", options, seed=0)
