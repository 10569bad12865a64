"""Real release layouts (tests/model_factory.py): each loads, is identified by exactly the files
diffusers reads, and scans end to end to finite numbers; adapters change the scores; models
that differ only in their noise schedule or an adapter share no cached unit."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2l_scan.cli import main
from s2l_scan.io.model import load_pipeline
from tests import model_factory as factory

NON_WEIGHTS = ("*.bin", "*.ckpt", "*.pt", "*.pth", "*.json")


def _diffusers_would_download(folder: Path, variant: str | None) -> set[str]:
    """The oracle: diffusers' own choice of a repository's files for a variant
    (``variant_compatible_siblings``, what ``from_pretrained`` downloads), weights only."""
    from diffusers.pipelines.pipeline_loading_utils import variant_compatible_siblings

    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    usable, _ = variant_compatible_siblings(names, variant=variant,
                                            ignore_patterns=list(NON_WEIGHTS))
    return {name for name in usable if name.endswith(".safetensors")
            and name.split("/")[0] in ("unet", "vae", "text_encoder")}


# layout → the variant diffusers must be asked for (what a user would pass it by hand)
LAYOUTS = [("sd1", None), ("sd2-v", None), ("fp16", "fp16"), ("sharded", None),
           ("sharded-fp16-beside-plain", "fp16"), ("full-repo-clone", None)]


@pytest.mark.parametrize(("layout", "variant"), LAYOUTS)
def test_a_layout_is_identified_by_exactly_the_files_diffusers_loads(
        tmp_path: Path, layout: str, variant: str | None) -> None:
    folder = factory.BASES[layout](tmp_path / layout)
    loaded = load_pipeline(folder)
    assert set(loaded.identity) == _diffusers_would_download(folder, variant)
    for name in ("unet", "vae", "text_encoder"):  # and those are the weights it holds
        state = {k.removeprefix("text_model."): v
                 for k, v in getattr(loaded.pipeline, name).state_dict().items()}
        files = [file for file in loaded.identity if file.startswith(f"{name}/")]
        assert files, name
        for file in files:
            for key, value in load_file(folder / file).items():
                held = state[key.removeprefix("text_model.")]
                assert torch.equal(held.to(value.dtype), value), (file, key)


def test_unused_weight_files_leave_the_model_hash_alone(tmp_path: Path) -> None:
    plain = load_pipeline(factory.sd1_folder(tmp_path / "plain"))
    clone = load_pipeline(factory.full_repo_clone(tmp_path / "clone"))
    assert clone.identity == plain.identity and clone.model_hash == plain.model_hash


def test_a_variant_without_a_winner_is_refused_by_name(tmp_path: Path) -> None:
    folder = factory.full_repo_clone(tmp_path / "clone")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.copy(folder / "unet" / "diffusion_pytorch_model.non_ema.safetensors",
                folder / "vae" / "diffusion_pytorch_model.non_ema.safetensors")
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").rename(
        folder / "unet" / "diffusion_pytorch_model.ema.safetensors")
    from s2l_scan.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"\['unet'\] have no plain weights.*"
                                             r"\['ema', 'non_ema'\]"):
        load_pipeline(folder)


def test_a_shard_index_naming_a_missing_shard_is_named(tmp_path: Path) -> None:
    from s2l_scan.errors import ModelLoadError

    folder = factory.sharded_folder(tmp_path / "sharded")
    shard = sorted((folder / "unet").glob("*-00002-of-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=rf"index\.json: lists shard.*{shard.name}"):
        load_pipeline(folder)


def test_single_file_with_vae_attention_round_trips_exactly(tmp_path: Path) -> None:
    """The original layout's VAE mid-attention (``mid.attn_1.{q,k,v,proj_out,norm}``, 1×1
    convolutions): diffusers' own single-file reader gives back the folder's VAE, output for
    output."""
    folder = factory.sd1_folder(tmp_path / "folder")  # the same seed: the same weights
    checkpoint, config = factory.single_file(tmp_path / "single")
    names = load_file(checkpoint)
    for part in ("q", "k", "v", "proj_out"):
        assert names[f"first_stage_model.encoder.mid.attn_1.{part}.weight"].ndim == 4
    assert "first_stage_model.decoder.mid.attn_1.norm.weight" in names
    assert not any(("to_q" in key or "group_norm" in key) for key in names
                   if key.startswith("first_stage_model."))
    ours, theirs = load_pipeline(folder), load_pipeline(checkpoint, config=config)
    assert any(".mid_block.attentions.0." in k for k in ours.pipeline.vae.state_dict())
    for name in ("unet", "vae", "text_encoder"):
        a = getattr(ours.pipeline, name).state_dict()
        b = getattr(theirs.pipeline, name).state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = [m.pipeline.vae.decode(m.pipeline.vae.encode(image).latent_dist.mean).sample
               for m in (ours, theirs)]
    assert torch.equal(out[0], out[1])


# --- end to end: a tiny scan of every family and format ---

def _scan(model: Path | str, data: Path, out: Path, *extra: str, cache: Path | None = None
          ) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "s2l.toml"
    config.write_text("bootstrap = 20\nextraction_samples = 0\nprobes = []\n"
                      + (f'cache_dir = "{cache}"\n' if cache else 'cache = "off"\n'))
    code = main(["scan", str(model), "--data", str(data), "--config", str(config),
                 "--attacks", "loss", "--report-json", str(out / "report.json"), *extra])
    assert code in (0, 1, 6)  # judged: passed, failed or inconclusive
    return dict(json.loads((out / "report.json").read_text()))


def _scores(report: dict[str, Any]) -> dict[str, list[float]]:
    rows = {r["domain"]: r["member_scores"] + r["nonmember_scores"] for r in report["results"]
            if r["domain"] != "pooled"}
    assert rows and all(math.isfinite(x) for row in rows.values() for x in row)
    assert all(math.isfinite(r["auc"]) for r in report["results"])
    return rows


@pytest.mark.parametrize("layout", [*factory.BASES, "single-file"])
def test_every_layout_scans_to_finite_numbers(tiny_reference: Path, tmp_path: Path,
                                              layout: str) -> None:
    if layout == "single-file":
        checkpoint, config = factory.single_file(tmp_path / "model")
        report = _scan(checkpoint, tiny_reference / "data", tmp_path / "scan",
                       "--model-config", str(config))
    else:
        report = _scan(factory.BASES[layout](tmp_path / "model"), tiny_reference / "data",
                       tmp_path / "scan")
    _scores(report)
    assert report["model"]["files"] and "adapters" not in report["model"]


@pytest.fixture(scope="module")
def scanned_base(tiny_reference: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("scanned-base")
    folder = factory.sd1_folder(root / "sd1")
    return folder, _scan(folder, tiny_reference / "data", root / "scan")


@pytest.mark.parametrize("name", [*factory.ADAPTERS])
def test_every_adapter_format_changes_the_scores(tiny_reference: Path, tmp_path: Path,
                                                 scanned_base: tuple[Path, dict[str, Any]],
                                                 name: str) -> None:
    folder, base = scanned_base
    adapter = factory.ADAPTERS[name](folder, tmp_path / "adapter")
    tuned = _scan(folder, tiny_reference / "data", tmp_path / "scan", "--lora", f"{adapter}:0.7")
    import jsonschema

    from s2l_scan.report.files import schema

    jsonschema.Draft202012Validator(schema()).validate(tuned)
    (record,) = tuned["model"]["adapters"]
    assert record["path"] == str(adapter) and record["weight"] == 0.7
    assert record["layers_changed"] > 0 and len(record["sha256"]) == 64
    assert tuned["model"]["model_hash"] != base["model"]["model_hash"]
    tuned_scores, base_scores = _scores(tuned), _scores(base)
    assert tuned_scores.keys() == base_scores.keys()
    assert all(tuned_scores[d] != base_scores[d] for d in base_scores)


@pytest.mark.parametrize(("case", "message"), [("renamed", "matched no layer"),
                                               ("other-base", "does not fit this model")])
def test_an_adapter_that_does_not_apply_stops_the_scan_with_exit_2(
        tiny_reference: Path, tmp_path: Path, scanned_base: tuple[Path, dict[str, Any]],
        capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    folder, _ = scanned_base
    if case == "renamed":
        peft = factory.peft_adapter(folder, tmp_path / "peft")
        weights = peft / "adapter_model.safetensors"
        save_file({k.replace("transformer_blocks", "blocks"): v
                   for k, v in load_file(weights).items()}, weights)
    else:
        peft = factory.peft_adapter(factory.wide_sd1_folder(tmp_path / "wide"), tmp_path / "peft")
    config = tmp_path / "s2l.toml"
    config.write_text('probes = []\ncache = "off"\n')
    code = main(["scan", str(folder), "--data", str(tiny_reference / "data"), "--config",
                 str(config), "--lora", str(peft)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(peft) in err and message in err


# --- unit keys: what is not in the weights still keeps cached units apart ---

def test_schedule_and_adapter_changes_share_no_cached_unit(
        tiny_reference: Path, tmp_path: Path) -> None:
    folder = factory.sd1_folder(tmp_path / "sd1")
    cache = tmp_path / "units"
    data = tiny_reference / "data"
    first = _scan(folder, data, tmp_path / "a", cache=cache)
    again = _scan(folder, data, tmp_path / "b", cache=cache)
    assert int(again["timestamps"]["units_reused"]) > 0  # the cache works...
    assert again["results"] == first["results"]
    betas = Path(shutil.copytree(folder, tmp_path / "betas"))
    factory.edit_json(betas / "scheduler" / "scheduler_config.json", beta_end=0.02)
    other = _scan(betas, data, tmp_path / "c", cache=cache)
    assert other["model"]["model_hash"] == first["model"]["model_hash"]  # same weights...
    assert other["timestamps"]["units_reused"] == "0"  # ...but another noise schedule
    assert other["results"] != first["results"]
    euler = Path(shutil.copytree(folder, tmp_path / "euler"))
    factory.edit_json(euler / "model_index.json", scheduler=["diffusers",
                                                            "EulerDiscreteScheduler"])
    factory.edit_json(euler / "scheduler" / "scheduler_config.json",
                      _class_name="EulerDiscreteScheduler")
    assert _scan(euler, data, tmp_path / "d", cache=cache)["timestamps"]["units_reused"] == "0"
    adapter = factory.kohya_lora_file(folder, tmp_path / "k.safetensors")
    for weight in ("1", "0.5"):  # an adapter, and the same adapter at another weight
        tuned = _scan(folder, data, tmp_path / f"e{weight}", "--lora", f"{adapter}:{weight}",
                      cache=cache)
        assert tuned["timestamps"]["units_reused"] == "0", weight


def test_fp16_safetensors_are_preferred_to_plain_pickles(tmp_path: Path) -> None:
    """Without --allow-pickle, an ``.fp16.safetensors`` copy beside plain ``.bin`` weights is
    what loads (the pickles are never opened); with it, diffusers' default, the plain ones."""
    folder = factory.fp16_folder(tmp_path / "fp16")
    for name, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "pytorch_model")):
        fp16 = next((folder / name).glob("*.fp16.safetensors"))
        torch.save({k: v.float() for k, v in load_file(fp16).items()},
                   folder / name / f"{stem}.bin")
    safe = load_pipeline(folder)
    assert all(file.endswith(".fp16.safetensors") for file in safe.identity)
    pickled = load_pipeline(folder, allow_pickle=True)
    assert all(file.endswith(".bin") for file in pickled.identity)
