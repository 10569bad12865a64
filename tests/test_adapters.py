"""Adapters (--lora): every shared format fuses the same maths, is verified to change the model,
is recorded, and a wrong or unreadable adapter is refused by name, never silently ignored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2l_scan.errors import ModelLoadError, UnsafeCheckpointError, UsageError
from s2l_scan.io.adapters import NO_MATCH, AdapterSpec
from s2l_scan.io.model import LoadedModel, load_pipeline, sha256_file
from tests import model_factory as factory


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_folder(tmp_path_factory.mktemp("adapters") / "sd1")


@pytest.fixture(scope="module")
def base_model(base: Path) -> LoadedModel:
    return load_pipeline(base)


def _lora_delta(base: Path, kind: str = "lora") -> dict[str, torch.Tensor]:
    """The oracle: each targeted UNet weight's change, from the adapter's own factors (the
    module the factory saved in every format), by the formulas of the LoRA / LoHa papers."""
    unet = factory.peft_unet(base, kind)
    modules = dict(unet.named_modules())
    deltas: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if kind == "lora" and hasattr(module, "lora_A") and "default" in module.lora_A:
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            deltas[f"{name}.weight"] = (b @ a).detach()  # alpha / r = 1
        if kind == "loha" and hasattr(module, "hada_w1_a") and "default" in module.hada_w1_a:
            p = {k: getattr(module, k)["default"].detach()
                 for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")}
            deltas[f"{name}.weight"] = ((p["hada_w1_a"] @ p["hada_w1_b"])
                                        * (p["hada_w2_a"] @ p["hada_w2_b"]))  # alpha / r = 1
    assert deltas
    return deltas


def _assert_fused(base_model: LoadedModel, tuned: LoadedModel, deltas: dict[str, torch.Tensor],
                  weight: float = 1.0) -> None:
    before, after = base_model.pipeline.unet.state_dict(), tuned.pipeline.unet.state_dict()
    assert set(before) == set(after)  # fused: no adapter layers left behind
    for key in before:
        expected = before[key] + weight * deltas[key] if key in deltas else before[key]
        torch.testing.assert_close(after[key], expected, atol=1e-5, rtol=1e-5, msg=key)


FORMATS = [("diffusers-folder", "diffusers"), ("diffusers-file", "diffusers"),
           ("peft-lora", "peft"), ("kohya-file", "kohya")]


@pytest.mark.parametrize(("name", "form"), FORMATS)
def test_every_lora_format_fuses_the_same_update(base: Path, base_model: LoadedModel,
                                                 tmp_path: Path, name: str, form: str) -> None:
    adapter = factory.ADAPTERS[name](base, tmp_path / "adapter")
    tuned = load_pipeline(base, lora=adapter)
    deltas = _lora_delta(base)
    _assert_fused(base_model, tuned, deltas)
    (record,) = tuned.adapters
    weights = adapter if adapter.is_file() else next(adapter.glob("*.safetensors"))
    assert record == {"path": str(adapter), "format": form, "weight": 1.0,
                      "sha256": sha256_file(weights), "file": weights.name,
                      "layers_changed": len(deltas)}
    assert tuned.model_hash != base_model.model_hash
    assert tuned.identity == base_model.identity  # the base's files; the adapter has its block


def test_peft_loha_folder_fuses_the_hadamard_product(base: Path, base_model: LoadedModel,
                                                     tmp_path: Path) -> None:
    adapter = factory.peft_adapter(base, tmp_path / "loha", "loha")
    tuned = load_pipeline(base, lora=adapter)
    _assert_fused(base_model, tuned, _lora_delta(base, "loha"))
    assert tuned.adapters[0]["format"] == "peft"


def test_weights_scale_and_several_adapters_add(base: Path, base_model: LoadedModel,
                                                tmp_path: Path) -> None:
    kohya = factory.kohya_lora_file(base, tmp_path / "k.safetensors")
    half = load_pipeline(base, lora=f"{kohya}:0.5")
    deltas = _lora_delta(base)
    _assert_fused(base_model, half, deltas, 0.5)
    assert half.adapters[0]["weight"] == 0.5
    assert half.model_hash != load_pipeline(base, lora=kohya).model_hash
    peft = factory.peft_adapter(base, tmp_path / "peft")
    both = load_pipeline(base, lora=[f"{kohya}:0.5", AdapterSpec(peft, 0.25)])
    _assert_fused(base_model, both, deltas, 0.75)
    assert [a["format"] for a in both.adapters] == ["kohya", "peft"]


def test_lycoris_loha_file_is_refused_by_name(base: Path, tmp_path: Path) -> None:
    loha = factory.lycoris_loha_file(base, tmp_path / "loha.safetensors")
    with pytest.raises(ModelLoadError, match=r"loha\.safetensors: a LyCORIS LoHa adapter.*"
                                             r"peft adapter folder"):
        load_pipeline(base, lora=loha)


def _renamed(source: Path, out: Path, rename: Any) -> Path:
    save_file({rename(k): v for k, v in load_file(source).items()}, out)
    return out


@pytest.mark.parametrize("name", ["diffusers-file", "kohya-file"])
def test_an_adapter_that_names_no_layer_is_refused(base: Path, tmp_path: Path,
                                                   name: str) -> None:
    """The false pass: diffusers skips keys it cannot place with a warning only."""
    adapter = factory.ADAPTERS[name](base, tmp_path / "adapter")
    # block names this UNet does not have
    stranger = _renamed(adapter, tmp_path / "stranger.safetensors",
                        lambda k: k.replace("down_blocks", "side_blocks").replace(
                            "up_blocks", "other_blocks").replace("mid_block", "side_block"))
    with pytest.raises(ModelLoadError) as error:
        load_pipeline(base, lora=stranger)
    assert str(error.value).startswith(str(stranger))
    assert NO_MATCH in str(error.value) or "could not fuse" in str(error.value)


def test_an_adapter_that_fits_in_part_is_refused(base: Path, tmp_path: Path) -> None:
    adapter = factory.diffusers_lora_file(base, tmp_path / "adapter.safetensors")
    partial = _renamed(adapter, tmp_path / "partial.safetensors",
                       lambda k: k.replace("up_blocks", "other_blocks"))
    n_targeted = len(_lora_delta(base))
    n_up = len({k.split(".lora")[0] for k in load_file(adapter) if "up_blocks" in k})
    assert 0 < n_up < n_targeted
    with pytest.raises(ModelLoadError, match=rf"partial\.safetensors: only {n_targeted - n_up} "
                                             rf"of the {n_targeted} layers.*other_blocks"):
        load_pipeline(base, lora=partial)


def test_a_peft_adapter_for_other_modules_matches_no_layer(base: Path, tmp_path: Path) -> None:
    adapter = factory.peft_adapter(base, tmp_path / "peft")
    weights = adapter / "adapter_model.safetensors"
    _renamed(weights, weights, lambda k: k.replace("transformer_blocks", "blocks"))
    with pytest.raises(ModelLoadError, match=rf"peft: .*{NO_MATCH}"):
        load_pipeline(base, lora=adapter)


@pytest.mark.parametrize("name", ["diffusers-file", "peft-lora", "kohya-file"])
def test_an_adapter_for_another_base_names_the_layer(base: Path, tmp_path: Path,
                                                     name: str) -> None:
    wide = factory.wide_sd1_folder(tmp_path / "wide")
    adapter = factory.ADAPTERS[name](base, tmp_path / "adapter")
    with pytest.raises(ModelLoadError) as error:
        load_pipeline(wide, lora=adapter)
    message = str(error.value)
    assert message.startswith(str(adapter)) and "Traceback" not in message
    assert "does not fit this model: at layer" in message and "blocks" in message, message


def test_pickled_and_missing_adapters_are_refused(base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "pytorch_lora_weights.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors LoRA weights.*pickled"):
        load_pipeline(base, lora=folder)
    with pytest.raises(UnsafeCheckpointError, match=r"lora\.ckpt.*pickled adapter"):
        (tmp_path / "lora.ckpt").write_bytes(b"pickle")
        load_pipeline(base, lora=tmp_path / "lora.ckpt")
    with pytest.raises(ModelLoadError, match="no such adapter"):
        load_pipeline(base, lora=tmp_path / "nowhere.safetensors")
    peft = factory.peft_adapter(base, tmp_path / "peft")
    config = peft / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "peft_type": "IA3"}))
    with pytest.raises(ModelLoadError, match="peft_type 'IA3'"):
        load_pipeline(base, lora=peft)


@pytest.mark.parametrize(("text", "path", "weight"), [
    ("a/lora.safetensors", "a/lora.safetensors", 1.0),
    ("a/lora.safetensors:0.8", "a/lora.safetensors", 0.8),
    ("C:/x/lora", "C:/x/lora", 1.0),  # a drive letter, not a weight
    ("lora:-1", "lora", -1.0),
])
def test_adapter_spec_parses_an_optional_weight(text: str, path: str, weight: float) -> None:
    assert AdapterSpec.parse(text) == AdapterSpec(Path(path), weight)


def test_a_non_finite_weight_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="finite"):
        AdapterSpec.parse("lora.safetensors:nan")


def test_lora_is_repeatable_and_a_bad_weight_is_a_usage_error_before_loading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from s2l_scan.cli import build_parser, main
    from s2l_scan.plan import ScanInputs

    args = build_parser().parse_args(["scan", "m", "--lora", "a", "--lora", "b.safetensors:0.5"])
    assert args.lora == ["a", "b.safetensors:0.5"]
    assert ScanInputs(model="m", data="d", lora=("a", "b:0.5")).adapters == ("a", "b:0.5")
    assert ScanInputs(model="m", data="d", lora="a").adapters == ("a",)
    code = main(["scan", str(tmp_path / "nowhere"), "--data", str(tmp_path), "--lora",
                 "a.safetensors:inf"])
    assert code == 4 and "finite" in capsys.readouterr().err


def _kohya_merged(base_model: LoadedModel, kohya: Path, weight: float = 1.0
                  ) -> dict[str, torch.Tensor]:
    """The oracle: sd-scripts' own merge (networks/merge_lora.py ``merge_to_sd_model``):
    W += weight · alpha / rank · up @ down, each layer with its own alpha."""
    state = load_file(kohya)
    merged = {k: v.clone() for k, v in base_model.pipeline.unet.state_dict().items()}
    for key in state:
        if not key.endswith(".lora_down.weight"):
            continue
        stem = key.removesuffix(".lora_down.weight")
        down, up = state[key].float(), state[f"{stem}.lora_up.weight"].float()
        alpha = float(state[f"{stem}.alpha"])
        target = next(k for k in merged if factory._kohya_name(k.removesuffix(".weight")) == stem)
        merged[target] = merged[target] + weight * alpha / down.shape[0] * (up @ down)
    return merged


def test_kohya_per_block_alphas_fuse_at_each_layers_own_scale(
        base: Path, base_model: LoadedModel, tmp_path: Path) -> None:
    """Issue 28.1: diffusers' conversion gives mid_block / up_blocks attention layers another
    layer's alpha (it splits names on ``.lora.``); the scan must fuse kohya's own maths."""
    kohya = factory.kohya_lora_file(base, tmp_path / "locon.safetensors", block_alphas={
        "down_blocks": 2.0, "mid_block": 1.0, "up_blocks.0": 0.5, "up_blocks.1": 4.0})
    tuned = load_pipeline(base, lora=f"{kohya}:0.7")
    expected = _kohya_merged(base_model, kohya, 0.7)
    for key, value in tuned.pipeline.unet.state_dict().items():
        torch.testing.assert_close(value, expected[key], atol=1e-5, rtol=1e-5, msg=key)


def test_a_mis_scaled_layer_is_refused_by_name(base: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The magnitude check, not the folding, is what stands between a conversion bug and a
    silent scale: with diffusers left to read the alphas itself, the file is refused."""
    from s2l_scan.io import adapters

    kohya = factory.kohya_lora_file(base, tmp_path / "locon.safetensors", block_alphas={
        "down_blocks": 2.0, "mid_block": 1.0, "up_blocks.0": 0.5, "up_blocks.1": 4.0})
    monkeypatch.setattr(adapters, "fold_kohya_alphas", lambda state: state)
    with pytest.raises(ModelLoadError, match=r"layer unet\.\S+ changed by [\d.]+× the update"):
        load_pipeline(base, lora=kohya)


def test_fold_kohya_alphas_keeps_the_update() -> None:
    down, up = torch.randn(4, 6), torch.randn(5, 4)
    folded = adapters_module().fold_kohya_alphas(
        {"l.lora_down.weight": down, "l.lora_up.weight": up, "l.alpha": torch.tensor(2.0),
         "z.lora_down.weight": down, "z.lora_up.weight": up, "z.alpha": torch.tensor(0.0)})
    assert "l.alpha" not in folded and "z.alpha" not in folded
    torch.testing.assert_close(up @ folded["l.lora_down.weight"], 0.5 * (up @ down))
    torch.testing.assert_close(up @ folded["z.lora_down.weight"], up @ down)  # 0 means rank


def adapters_module() -> Any:
    from s2l_scan.io import adapters

    return adapters
