"""Reference-model calibration (``--base-model``): a fine-tune release scanned against the
base checkpoint it started from. Oracle: the base scanned as if it were the model gives the
base's own scores, so a calibrated score must equal model score − that score, sample by
sample; and a mismatched base is refused, naming the mismatch, before any weight is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from s2l_scan.checks import CheckId, calibrated
from s2l_scan.config import make_config
from s2l_scan.errors import UsageError
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.reference.build import build_reference
from s2l_scan.reference.presets import get_preset
from s2l_scan.session import run_scan

FAST = {"attacks": ["loss", "pia"], "extraction_samples": 0, "probes": [], "bootstrap": 50,
        "permutations": 50, "domains": ["identity-0"]}


@pytest.fixture(scope="module")
def finetune(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base and a fine-tune of it on the members (the builder's base_steps)."""
    out = tmp_path_factory.mktemp("finetune") / "reference"
    preset = get_preset("tiny").with_overrides(base_steps=8, base_per_identity=3)
    build_reference(out, preset, seed=0)
    return out


def test_builder_saves_a_base_that_differs_only_in_the_unet(finetune: Path) -> None:
    manifest = json.loads((finetune / "manifest.json").read_text())
    assert manifest["base"]["steps"] == 8
    assert set(manifest["phase_seconds"]) == {"data", "vae", "encode", "base", "unet", "save"}
    for part in ("vae", "text_encoder", "tokenizer"):
        for file in sorted((finetune / "model" / part).iterdir()):
            assert file.read_bytes() == (finetune / "base" / part / file.name).read_bytes()
    assert (finetune / "model/unet/diffusion_pytorch_model.safetensors").read_bytes() != \
        (finetune / "base/unet/diffusion_pytorch_model.safetensors").read_bytes()


def test_calibrated_rows_are_model_minus_base_scores(finetune: Path) -> None:
    config = make_config(**FAST)
    data = str(finetune / "data")
    report = run_scan(ScanInputs(str(finetune / "model"), data,
                                 base_model=str(finetune / "base")), config)
    on_base = run_scan(ScanInputs(str(finetune / "base"), data), config)
    rows = {row.item_id: row for row in report.results}
    base_rows = {row.item_id: row for row in on_base.results}
    for attack in ("loss", "pia"):
        plain = rows[str(CheckId.baseline(attack, "identity-0"))]
        cal = rows[str(CheckId.baseline(calibrated(attack), "identity-0"))]
        base = base_rows[str(CheckId.baseline(attack, "identity-0"))]
        np.testing.assert_allclose(cal.member_scores,
                                   np.subtract(plain.member_scores, base.member_scores),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(cal.nonmember_scores,
                                   np.subtract(plain.nonmember_scores, base.nonmember_scores),
                                   rtol=1e-6, atol=1e-6)
        assert cal.settings["calibration"]["base_model"] == str(finetune / "base")
        assert "calibration" not in plain.settings
    plan = build_plan(ScanInputs(str(finetune / "model"), data,
                                 base_model=str(finetune / "base")), config)
    assert [str(c) for c in plan.checks(["identity-0"])] == [
        str(r.check_id) for r in report.results]


def _edit(path: Path, **changes: object) -> None:
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(("part", "change", "named"), [
    ("unet/config.json", {"cross_attention_dim": 7}, "unet cross_attention_dim"),
    ("unet/config.json", {"sample_size": 3}, "unet sample_size"),
    ("scheduler/scheduler_config.json", {"prediction_type": "v_prediction"},
     "scheduler prediction_type"),
    ("scheduler/scheduler_config.json", {"beta_end": 0.02}, "scheduler beta_end"),
    ("tokenizer/vocab.json", {"zzz</w>": 99999}, "tokenizer vocabulary differs"),
])
def test_mismatched_base_is_a_usage_error_before_model_work(
        finetune: Path, tmp_path: Path, part: str, change: dict[str, object],
        named: str) -> None:
    base = Path(shutil.copytree(finetune / "base", tmp_path / "base"))
    _edit(base / part, **change)
    for weights in base.rglob("*.safetensors"):  # no weight is read: there are none
        weights.unlink()
    with pytest.raises(UsageError, match=named):
        build_plan(ScanInputs(str(finetune / "model"), str(finetune / "data"),
                              base_model=str(base)), make_config(**FAST))


@pytest.mark.parametrize(("model", "base", "named"), [
    ("reference", "/no/such/folder", "'reference' is the base of the reference build only"),
    ("MODEL", "reference", "'reference' is the base of the reference build only"),
    ("MODEL", "/no/such/folder", "not a diffusers folder"),
])
def test_base_model_usage_errors(finetune: Path, model: str, base: str, named: str) -> None:
    model = str(finetune / "model") if model == "MODEL" else model
    with pytest.raises(UsageError, match=named):
        build_plan(ScanInputs(model, str(finetune / "data"), base_model=base),
                   make_config(**FAST))


def test_reference_base_needs_a_build_with_one() -> None:
    config = make_config(reference_preset="tiny", **FAST)
    with pytest.raises(UsageError, match="has no base model"):
        run_scan(ScanInputs("reference", base_model="reference"), config)


def test_the_finetune_preset_builds_a_base() -> None:
    preset = get_preset("finetune")
    assert preset.base_steps > 0 and preset.base_per_identity > 0
    assert preset.fingerprint() != get_preset("finetune").with_overrides(
        base_steps=0, base_per_identity=0).fingerprint()


def test_a_base_model_equal_to_the_model_is_refused(finetune: Path, tmp_path: Path) -> None:
    model, data = str(finetune / "model"), str(finetune / "data")
    with pytest.raises(UsageError, match="is the scanned model itself"):
        build_plan(ScanInputs(model, data, base_model=model), make_config(**FAST))
    (tmp_path / "link").symlink_to(finetune / "model")
    with pytest.raises(UsageError, match="is the scanned model itself"):
        build_plan(ScanInputs(model, data, base_model=str(tmp_path / "link")),
                   make_config(**FAST))
    copy = shutil.copytree(finetune / "model", tmp_path / "copy")  # same weights, other folder
    with pytest.raises(UsageError, match="same weights as the scanned model"):
        run_scan(ScanInputs(model, data, base_model=str(copy)), make_config(**FAST))
