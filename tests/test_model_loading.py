"""Loading checkpoints safely: good folders load, unsafe or broken ones are refused clearly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2l_scan.errors import ModelLoadError, UnsafeCheckpointError
from s2l_scan.io.model import load_pipeline
from tests.model_factory import single_file_of

UNET_WEIGHTS = Path("unet/diffusion_pytorch_model.safetensors")


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.marker),))


def _touch(path: str) -> None:
    Path(path).touch()


def _plant_pickle(model: Path, marker: Path, name: str = "diffusion_pytorch_model.bin") -> Path:
    """Replace the UNet's safetensors with a pickle that carries a payload."""
    (model / UNET_WEIGHTS).unlink()
    target = model / "unet" / name
    target.write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    return target


def test_good_folder_loads_with_identity(tiny_model_copy: Path) -> None:
    loaded = load_pipeline(tiny_model_copy)
    assert loaded.resolution == 32
    assert str(UNET_WEIGHTS) in loaded.identity
    assert len(loaded.model_hash) == 64
    assert not any(p.requires_grad for p in loaded.pipeline.unet.parameters())


@pytest.mark.parametrize("name", ["diffusion_pytorch_model.bin", "model.ckpt", "weights.pt"])
def test_pickled_weights_are_refused_and_never_run(tiny_model_copy: Path, tmp_path: Path,
                                                   name: str) -> None:
    marker = tmp_path / "pwned"
    planted = _plant_pickle(tiny_model_copy, marker, name)
    with pytest.raises(UnsafeCheckpointError, match=rf"{planted.name}.*allow-pickle"):
        load_pipeline(tiny_model_copy)
    assert not marker.exists()


def test_opt_in_still_never_unpickles_code(tiny_model_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _plant_pickle(tiny_model_copy, marker)
    with pytest.raises(ModelLoadError):
        load_pipeline(tiny_model_copy, allow_pickle=True)
    assert not marker.exists()


def test_opt_in_loads_plain_tensor_pickles(tiny_model_copy: Path) -> None:
    state = load_file(tiny_model_copy / UNET_WEIGHTS)
    (tiny_model_copy / UNET_WEIGHTS).unlink()
    torch.save(state, tiny_model_copy / "unet" / "diffusion_pytorch_model.bin")
    loaded = load_pipeline(tiny_model_copy, allow_pickle=True)
    assert "unet/diffusion_pytorch_model.bin" in loaded.identity


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tiny_model_copy: Path, value: float) -> None:
    state = load_file(tiny_model_copy / UNET_WEIGHTS)
    key = sorted(state)[0]
    state[key] = state[key].clone().fill_(value)
    save_file(state, tiny_model_copy / UNET_WEIGHTS)
    with pytest.raises(ModelLoadError, match=rf"unet\.{key}.*NaN or Inf"):
        load_pipeline(tiny_model_copy)


def test_truncated_safetensors_named(tiny_model_copy: Path) -> None:
    path = tiny_model_copy / UNET_WEIGHTS
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model\.safetensors.*truncated"):
        load_pipeline(tiny_model_copy)


def test_misshaped_weights_are_a_load_error(tiny_model_copy: Path) -> None:
    state = load_file(tiny_model_copy / UNET_WEIGHTS)
    key = next(k for k, v in sorted(state.items()) if v.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    save_file(state, tiny_model_copy / UNET_WEIGHTS)
    # refused from the safetensors header, before any module is built (io/config_bounds.py)
    with pytest.raises(ModelLoadError, match=f"{key} is .* but \\[1, 1, 1, 1\\] in the weight"):
        load_pipeline(tiny_model_copy)


def _edit_index(model: Path, **changes: object) -> None:
    index = json.loads((model / "model_index.json").read_text())
    index.update(changes)
    (model / "model_index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"_class_name": "FluxPipeline"}, ModelLoadError, "FluxPipeline.*not supported"),
    ({"unet": ["my_module", "EvilUNet"]}, UnsafeCheckpointError, "my_module.EvilUNet"),
    ({"unet": ["diffusers", "UNet2DModel"]}, UnsafeCheckpointError, "UNet2DModel"),
    ({"watermarker": ["pipeline", "Watermarker"]}, UnsafeCheckpointError, "watermarker"),
    ({"vae": "AutoencoderKL"}, ModelLoadError, "library, class"),
])
def test_model_index_is_checked(tiny_model_copy: Path, changes: dict[str, object],
                                error: type[Exception], match: str) -> None:
    _edit_index(tiny_model_copy, **changes)
    with pytest.raises(error, match=match):
        load_pipeline(tiny_model_copy)


@pytest.mark.parametrize("culprit", ["model_index.json", "vae", "unet/config.json"])
def test_missing_pieces_are_named(tiny_model_copy: Path, culprit: str) -> None:
    target = tiny_model_copy / culprit
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(ModelLoadError, match=culprit.split("/")[0]):
        load_pipeline(tiny_model_copy)


def test_remote_code_config_is_refused(tiny_model_copy: Path) -> None:
    path = tiny_model_copy / "text_encoder" / "config.json"
    config = json.loads(path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    path.write_text(json.dumps(config))
    with pytest.raises(UnsafeCheckpointError, match="auto_map"):
        load_pipeline(tiny_model_copy)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a folder"):
        load_pipeline(tmp_path / "nowhere")


def test_loading_never_modifies_the_folder(tiny_model_copy: Path) -> None:
    before = {p: p.read_bytes() for p in tiny_model_copy.rglob("*") if p.is_file()}
    load_pipeline(tiny_model_copy)
    after = {p: p.read_bytes() for p in tiny_model_copy.rglob("*") if p.is_file()}
    assert before == after


@pytest.fixture
def single_file(tiny_reference: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The tiny model as one original-layout safetensors file, plus a config-only folder."""
    return single_file_of(tiny_reference / "model", tmp_path / "tiny.safetensors",
                          tmp_path / "config")


def test_single_file_checkpoint_loads_with_local_config(tiny_reference: Path,
                                                        single_file: tuple[Path, Path]) -> None:
    checkpoint, config = single_file
    folder = load_pipeline(tiny_reference / "model")
    loaded = load_pipeline(checkpoint, config=config)
    assert loaded.identity == {"tiny.safetensors": loaded.identity["tiny.safetensors"]}
    for name in ("unet", "vae", "text_encoder"):
        expected = getattr(folder.pipeline, name).state_dict()
        got = getattr(loaded.pipeline, name).state_dict()
        assert set(got) == set(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected), name


def test_single_file_needs_a_config_and_refuses_pickles(single_file: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    checkpoint, config = single_file
    with pytest.raises(ModelLoadError, match="needs a local diffusers config folder"):
        load_pipeline(checkpoint)
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"pickle")
    with pytest.raises(UnsafeCheckpointError, match=r"model\.ckpt"):
        load_pipeline(pickled, config=config)


def _set_scheduler_class(model: Path, name: str) -> None:
    """Name ``name`` as the scheduler in model_index.json and in the scheduler's config."""
    _edit_index(model, scheduler=["diffusers", name])
    config = model / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": name}))


@pytest.mark.parametrize("name", ["LCMScheduler", "TCDScheduler", "DDIMScheduler"])
def test_any_ddpm_family_scheduler_diffusers_ships_loads(tiny_model_copy: Path, name: str
                                                          ) -> None:
    # the refusal is for code, not for diffusers' own classes (LCM was refused as custom code)
    _set_scheduler_class(tiny_model_copy, name)
    loaded = load_pipeline(tiny_model_copy)
    assert type(loaded.pipeline.scheduler).__name__ == name
    assert loaded.pipeline.scheduler.alphas_cumprod.ndim == 1


@pytest.mark.parametrize(("name", "error", "message"), [
    ("FlowMatchEulerDiscreteScheduler", ModelLoadError, "defines no discrete noise schedule"),
    ("EvilScheduler", UnsafeCheckpointError, "'scheduler' is diffusers.EvilScheduler"),
    ("SchedulerMixin", UnsafeCheckpointError, "'scheduler' is diffusers.SchedulerMixin"),
])
def test_schedulers_the_attacks_cannot_read_are_refused_by_name(
        tiny_model_copy: Path, name: str, error: type[Exception], message: str) -> None:
    _set_scheduler_class(tiny_model_copy, name)
    with pytest.raises(error, match=message):
        load_pipeline(tiny_model_copy)
