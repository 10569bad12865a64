"""Issue 28.6 / 28.7: release layouts that are not a text-to-image pipeline folder are refused
at load, by name and with what to pass instead, never as "internal error" or "model_index.json:
missing"; a hub cache snapshot that is whole still loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from s2l_scan.errors import ModelLoadError
from s2l_scan.io.model import load_pipeline
from tests import model_factory as factory


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_folder(tmp_path_factory.mktemp("layouts") / "sd1")


def _copy(sd1: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sd1, tmp_path / "model"))


@pytest.mark.parametrize(("config", "culprit"), [
    ({"in_channels": 9}, r"unet in_channels is 9, but the VAE's latents have 4 channels "
                         r"\(an inpainting UNet"),
    ({"class_embed_type": "projection", "projection_class_embeddings_input_dim": 8},
     "unet class_embed_type is 'projection': a class-conditioned UNet"),
    ({"num_class_embeds": 10}, "unet num_class_embeds is 10"),
])
def test_inpainting_and_class_conditioned_unets_are_refused_at_load(
        sd1: Path, tmp_path: Path, config: dict[str, object], culprit: str) -> None:
    model = factory.unet_variant(_copy(sd1, tmp_path), **config)
    with pytest.raises(ModelLoadError, match=culprit):
        load_pipeline(model)


def test_a_hub_cache_repo_folder_names_its_snapshot(sd1: Path, tmp_path: Path) -> None:
    repo = factory.hub_cache_repo(sd1, tmp_path / "hub")
    commit = (repo / "refs" / "main").read_text()
    with pytest.raises(ModelLoadError, match="hub cache repo folder.*pass its snapshot "
                       f".*snapshots/{commit}"):
        load_pipeline(repo)
    assert load_pipeline(repo / "snapshots" / commit).model_hash == load_pipeline(sd1).model_hash


def test_a_snapshot_copied_with_its_links_dangling_names_the_link(sd1: Path,
                                                                 tmp_path: Path) -> None:
    snapshot = next((factory.hub_cache_repo(sd1, tmp_path / "hub") / "snapshots").iterdir())
    copied = Path(shutil.copytree(snapshot, tmp_path / "copied", symlinks=True))  # cp -r
    with pytest.raises(ModelLoadError, match=r"copied/model_index\.json: a broken link "
                       r"\(to \.\./\.\./blobs/.*cp -rL"):
        load_pipeline(copied)


def test_a_snapshot_missing_one_blob_names_that_link(sd1: Path, tmp_path: Path) -> None:
    snapshot = next((factory.hub_cache_repo(sd1, tmp_path / "hub") / "snapshots").iterdir())
    lost = snapshot / "unet" / "diffusion_pytorch_model.safetensors"
    lost.resolve().unlink()
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model\.safetensors: a "
                       "broken link"):
        load_pipeline(snapshot)


def test_a_controlnet_folder_says_to_pass_the_base_pipeline(sd1: Path, tmp_path: Path) -> None:
    controlnet = factory.controlnet_folder(sd1, tmp_path / "controlnet")
    with pytest.raises(ModelLoadError, match=r"single ControlNetModel .*pass the base pipeline"):
        load_pipeline(controlnet)
