"""The offline reference model: a real diffusers folder, deterministic, with a known split."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from s2l_scan.errors import UsageError
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.reference.build import build_reference
from s2l_scan.reference.cache import cached_reference
from s2l_scan.reference.presets import get_preset


def test_folder_loads_offline_and_samples(tiny_reference: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_reference / "model", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a photo of identity 0", num_inference_steps=3, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3)
    assert np.isfinite(out).all()


def test_tokenizer_has_one_token_per_prompt_word(tiny_reference: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_reference / "model" / "tokenizer")
    ids = tokenizer("a photo of identity 1").input_ids
    assert len(ids) == 2 + 5  # bos, five words, eos: the BPE merges were really read
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == "a photo of identity 1"


def test_manifest_records_the_split(tiny_reference: Path) -> None:
    manifest = json.loads((tiny_reference / "manifest.json").read_text())
    preset = get_preset("tiny")
    assert manifest["preset"]["name"] == "tiny"
    assert set(manifest["split"]) == {f"identity-{i}" for i in range(preset.n_identities)}
    for record in manifest["split"].values():
        assert len(record["members"]) == preset.members_per_identity
        assert len(record["nonmembers"]) == preset.nonmembers_per_identity
        assert len(record["duplicated_members"]) == preset.duplicated_per_identity
        assert set(record["duplicated_members"]) <= set(record["members"])
    expected = preset.n_identities * (preset.members_per_identity + preset.duplicated_per_identity
                                      * (preset.duplication_factor - 1))
    assert manifest["training_set_size"] == expected
    assert all(count > 0 for count in manifest["parameters"].values())
    assert "model/unet/diffusion_pytorch_model.safetensors" in manifest["files"]
    # every phase timed once, and the laps add up to (at most) the whole build
    phases = manifest["phase_seconds"]
    assert set(phases) == {"data", "vae", "encode", "unet", "save"}
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) <= manifest["build_seconds"] + 0.01 * len(phases)


def test_data_matches_manifest_and_loads(tiny_reference: Path) -> None:
    manifest = json.loads((tiny_reference / "manifest.json").read_text())
    data = load_audit_data(tiny_reference / "data", resolution=32)
    assert [d.name for d in data.domains] == sorted(manifest["split"])
    for domain in data.domains:
        record = manifest["split"][domain.name]
        assert domain.prompt == record["prompt"]
        assert [m.path.name for m in domain.members] == record["members"]


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path,
                                                   tiny_reference: Path) -> None:
    first = json.loads((tiny_reference / "manifest.json").read_text())["files"]
    again = build_reference(tmp_path / "again", get_preset("tiny"), seed=0)["files"]
    other = build_reference(tmp_path / "other", get_preset("tiny"), seed=1)["files"]
    weights = [name for name in first if name.endswith(".safetensors")]
    assert len(weights) == 3
    assert {n: again[n] for n in weights} == {n: first[n] for n in weights}
    assert all(other[n] != first[n] for n in weights)


def test_build_refuses_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError):
        build_reference(tmp_path, get_preset("tiny"), seed=0)


def test_cache_builds_once_and_leaves_no_staging(tmp_path: Path) -> None:
    preset = get_preset("tiny").with_overrides(unet_steps=2, vae_steps=2)
    first = cached_reference(preset, 0, root=tmp_path)
    stamp = os.stat(first / "manifest.json").st_mtime_ns
    assert cached_reference(preset, 0, root=tmp_path) == first
    assert os.stat(first / "manifest.json").st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "reference").iterdir()] == [first.name]
    assert cached_reference(preset.with_overrides(unet_steps=3), 0, root=tmp_path) != first


@pytest.mark.parametrize(("knob", "value"), [
    ("members_per_identity", 0), ("duplicated_per_identity", 99), ("caption_dropout", 1.0),
    ("norm_groups", 7), ("vae_crop", 64), ("lr_schedule", "linear"),
])
def test_preset_validation(knob: str, value: object) -> None:
    with pytest.raises(UsageError, match=knob.split("_")[0]):
        get_preset("tiny").with_overrides(**{knob: value})


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    from s2l_scan.reference.build import _lr_schedule

    preset = get_preset("tiny").with_overrides(lr_schedule="cosine", unet_steps=100, lr=1e-3)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=preset.lr)
    schedule = _lr_schedule(preset, optimizer)
    rates = []
    for _ in range(preset.unet_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == 0.0 and max(rates) == pytest.approx(1e-3)
    assert rates.index(max(rates)) == 5  # warm-up: 5 % of the steps
    assert rates[-1] < 1e-5 and all(a >= b for a, b in itertools.pairwise(rates[5:]))


def test_unknown_preset_and_knob_list_the_known_ones() -> None:
    with pytest.raises(UsageError, match="default"):
        get_preset("huge")
    with pytest.raises(UsageError, match="members_per_identity"):
        get_preset("tiny").with_overrides(members=3)


def test_scan_seed_does_not_pick_another_reference_model(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    from s2l_scan.config import make_config
    from s2l_scan.session import ScanInputs, resolve_inputs

    monkeypatch.setenv("S2L_CACHE_DIR", str(tmp_path))
    inputs = ScanInputs(model="reference")
    model, _ = resolve_inputs(inputs, make_config(reference_preset="tiny", seed=5))
    assert "-seed0-" in model.parent.name
    other, _ = resolve_inputs(inputs, make_config(reference_preset="tiny", seed=5,
                                                  reference_seed=1))
    assert "-seed1-" in other.parent.name and other != model
    with pytest.raises(UsageError, match="reference_seed must be a non-negative integer"):
        make_config(reference_seed=-1)
