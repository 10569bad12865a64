"""SDXL-family pipelines (two text encoders, pooled embeddings, add_time_ids) through loading,
every attack, every probe, extraction and the report, on a tiny SDXL folder built in about a
second (tests/model_factory_sdxl.py). The conditioning and ε_θ are checked against diffusers'
own ``StableDiffusionXLPipeline.encode_prompt`` / ``_get_add_time_ids`` and UNet call."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_factory_sdxl import DOMAINS, write_audit_data, write_sdxl_model

import s2l_scan.baselines
import s2l_scan.probes  # noqa: F401 - registers the probes
from s2l_scan.attack import ATTACKS, Target, make_attack
from s2l_scan.cli import main
from s2l_scan.conditioning import Conditioning, TextEncoders, time_ids
from s2l_scan.config import ScanConfig
from s2l_scan.errors import ExitCode, ModelLoadError, UsageError
from s2l_scan.io.model import LoadedModel, load_pipeline
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.probe import PROBES, ModelCopy, ProbeContext
from s2l_scan.report.files import schema
from s2l_scan.stages.baselines import alphas
from s2l_scan.stages.encode import null_conditioning
from s2l_scan.units import digest

CAPTIONS = ["a photo of identity 0", "a painting of a dog", "a photo of identity 0"]
SIZE = (16, 16)
FAST = ["--bootstrap", "20", "--cache", "off", "--max-auc", "1",
        "--max-tpr", "1"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread, as a scan uses (two threads on a shared 2-core machine are ~50× slower
    here, not faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model/ (tiny SDXL) and data/ (two domains); read-only."""
    root = tmp_path_factory.mktemp("sdxl")
    write_sdxl_model(root / "model")
    write_audit_data(root / "data")
    return root


@pytest.fixture(scope="module")
def sdxl(sdxl_folder: Path) -> LoadedModel:
    return load_pipeline(sdxl_folder / "model")


def _latents(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def _target(model: LoadedModel) -> Target:
    return Target(model.pipeline.unet, alphas(model), 4, prediction_type=model.prediction_type)


def test_an_sdxl_folder_loads_as_sdxl(sdxl: LoadedModel) -> None:
    from diffusers import StableDiffusionXLPipeline

    assert sdxl.family == "sdxl" and isinstance(sdxl.pipeline, StableDiffusionXLPipeline)
    assert sdxl.resolution == 16
    assert "text_encoder_2/model.safetensors" in sdxl.identity
    assert sdxl.pipeline.watermark is None  # generated pixels never depend on a package


def test_conditioning_is_the_pipelines_own_encode_prompt(sdxl: LoadedModel) -> None:
    pipe = sdxl.pipeline
    ours = TextEncoders.of(pipe).encode(CAPTIONS, SIZE)
    with torch.inference_mode():
        embeds, _, pooled, _ = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False)
    expected_ids = pipe._get_add_time_ids(
        SIZE, (0, 0), SIZE, dtype=torch.float32,
        text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    torch.testing.assert_close(ours.hidden, embeds, rtol=0, atol=0)
    assert ours.pooled is not None and ours.time_ids is not None
    torch.testing.assert_close(ours.pooled, pooled, rtol=0, atol=0)
    torch.testing.assert_close(ours.time_ids, expected_ids.expand(len(CAPTIONS), -1))
    assert ours.hidden.shape[-1] == pipe.unet.config.cross_attention_dim


@pytest.mark.parametrize("t", [0, 90, 500, 999])
def test_eps_is_the_pipelines_own_unet_call(sdxl: LoadedModel, t: int) -> None:
    pipe, x = sdxl.pipeline, _latents()
    steps = torch.full((len(x),), t)
    with torch.inference_mode():
        embeds, _, pooled, _ = pipe.encode_prompt(CAPTIONS, do_classifier_free_guidance=False)
        ids = pipe._get_add_time_ids(SIZE, (0, 0), SIZE, dtype=embeds.dtype,
                                     text_encoder_projection_dim=32).repeat(len(x), 1)
        expected = pipe.unet(x, steps, encoder_hidden_states=embeds,
                             added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        ours = _target(sdxl).eps_fn()(x, steps, TextEncoders.of(pipe).encode(CAPTIONS, SIZE))
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_an_sdxl_unet_without_pooled_embeddings_is_an_error(sdxl: LoadedModel) -> None:
    hidden = TextEncoders.of(sdxl.pipeline).encode(CAPTIONS, SIZE).hidden
    with pytest.raises(ValueError, match="SDXL"), torch.inference_mode():
        _target(sdxl).eps_fn()(_latents(), torch.zeros(3, dtype=torch.long), hidden)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_scores_sdxl_with_finite_numbers(sdxl: LoadedModel, name: str) -> None:
    attack = make_attack(name, {}, seed=0)
    encoders = TextEncoders.of(sdxl.pipeline)
    target = _target(sdxl)
    target.uncond = null_conditioning(encoders, SIZE)  # for attacks that need ε(x_t, ∅)

    def encode(texts: Sequence[str]) -> Conditioning:
        return encoders.encode(list(texts), SIZE)

    # and, as the stages do, the perturbed captions of attacks that perturb them (CLiD's c*)
    perturbed = [encode(texts) for texts in attack.perturbed_captions(CAPTIONS, encode)]
    scores = attack.score(target, _latents(), encode(CAPTIONS), perturbed)
    assert scores[""].shape == (3,) and all(bool(torch.isfinite(s).all())
                                            for s in scores.values())


def _small(cls: Any) -> dict[str, Any]:
    """Options that make any fine-tuning probe take a couple of steps."""
    fields = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in {"steps": 1, "batch_size": 2, "tokens": 1}.items() if k in fields}


@pytest.mark.parametrize("name", PROBES.names())
def test_every_probe_shakes_sdxl_or_is_refused_by_name(sdxl: LoadedModel, sdxl_folder: Path,
                                                       name: str, tmp_path: Path) -> None:
    cls = PROBES.get(name)
    if "sdxl" not in cls.families:
        config = ScanConfig(probes=(name,), attacks=("loss",))
        with pytest.raises(UsageError, match=re.escape(f"probe {name!r} does not support SDXL")):
            build_plan(ScanInputs(str(sdxl_folder / "model"), str(sdxl_folder / "data")),
                       config)
        return
    before = {k: v.clone() for k, v in sdxl.pipeline.unet.state_dict().items()}
    latents = _latents(4, seed=1)
    context = ProbeContext(domain="d", prompt="a photo of identity 0", sp_latents=latents,
                           ood_latents=latents, ood_prompt="a painting", prior_latents=latents,
                           prior_prompt="a photo", save_dir=str(tmp_path))
    shaken = cls(**_small(cls)).apply(ModelCopy.of(sdxl.pipeline), context)
    target = Target(shaken.unet, alphas(sdxl), 4, prediction_type=sdxl.prediction_type)
    cond = TextEncoders.of(shaken).encode(CAPTIONS, SIZE)
    scores = make_attack("loss", {}, seed=0).score(target, _latents(), cond)[""]
    assert bool(torch.isfinite(scores).all())
    after = sdxl.pipeline.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the release is untouched


def test_a_saved_sdxl_lora_loads_back(sdxl: LoadedModel, tmp_path: Path) -> None:
    from s2l_scan.probes.methods.lora import LoRA

    context = ProbeContext(domain="d", prompt="a photo of identity 0",
                           sp_latents=_latents(4), save_dir=str(tmp_path))
    LoRA(steps=2, batch_size=2).apply(ModelCopy.of(sdxl.pipeline), context)
    from safetensors.torch import load_file

    keys = load_file(tmp_path / "pytorch_lora_weights.safetensors").keys()
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder", "text_encoder_2"}


def test_sdxl_scan_end_to_end(sdxl_folder: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Every built-in attack, noise + LoRA probes, extraction on the release and the copies."""
    config = tmp_path / "s2l.toml"
    config.write_text('probes = ["noise", "lora"]\nsp_samples = 2\nsp_steps = 2\n'
                      "permutations = 20\n[probe_options.lora]\nsteps = 2\nbatch_size = 2\n")
    out = tmp_path / "report.json"
    code = main(["scan", str(sdxl_folder / "model"), "--data", str(sdxl_folder / "data"),
                 "--config", str(config), "--attacks", ",".join(ATTACKS.names()),
                 "--extraction-samples", "2", "--extraction-steps", "2",
                 "--max-amplification", "1", "--report-json", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == ExitCode.INCONCLUSIVE, err  # nothing failed; the tiny sets show no safety
    body = json.loads(out.read_text())
    jsonschema.Draft202012Validator(schema()).validate(body)
    assert body["model"]["family"] == "sdxl"
    probes = {row["probe"] for row in body["results"]}
    assert probes == {None, "noise", "lora"}
    assert {row["attack"] for row in body["results"]} == set(ATTACKS.names())
    assert all(0 <= row["auc"] <= 1 for row in body["results"])
    sources = {(record["probe"], record["domain"]) for record in body["extraction"]}
    assert sources == {(p, d) for p in (None, "noise", "lora") for d in DOMAINS}


@pytest.mark.parametrize("component", ["text_encoder_2", "tokenizer_2"])
def test_an_sdxl_folder_missing_a_component_is_refused_by_name(
        sdxl_folder: Path, tmp_path: Path, component: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(shutil.copytree(sdxl_folder / "model", tmp_path / "model"))
    shutil.rmtree(model / component)
    code = main(["scan", str(model), "--data", str(sdxl_folder / "data"), "--probes", "",
                 "--attacks", "loss", "--extraction-samples", "0", *FAST])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"missing component(s) ['{component}']" in err and "SDXL" in err
    assert "Traceback" not in err


def _edit_json(path: Path, **changes: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_mismatched_sdxl_dimensions_are_refused_naming_the_fields(tmp_path: Path) -> None:
    model = write_sdxl_model(tmp_path / "model", projection_input_dim=81)
    with pytest.raises(ModelLoadError, match="projection_class_embeddings_input_dim is 81"):
        load_pipeline(model)


def test_an_sdxl_unet_in_an_sd_folder_is_refused(sdxl_folder: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(sdxl_folder / "model", tmp_path / "model"))
    index = json.loads((model / "model_index.json").read_text())
    for key in ("text_encoder_2", "tokenizer_2", "force_zeros_for_empty_prompt",
                "add_watermarker", "image_encoder"):
        index.pop(key)
    (model / "model_index.json").write_text(json.dumps(
        {**index, "_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelLoadError, match="addition_embed_type is 'text_time'"):
        load_pipeline(model)


def test_an_sdxl_refiner_is_refused_by_name(sdxl_folder: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(sdxl_folder / "model", tmp_path / "model"))
    _edit_json(model / "model_index.json", _class_name="StableDiffusionXLImg2ImgPipeline")
    with pytest.raises(ModelLoadError, match="StableDiffusionXLImg2ImgPipeline' is not"):
        load_pipeline(model)


def test_sd_conditioning_keys_units_as_bare_hidden_states_did() -> None:
    """SD-1.x unit-store keys are unchanged by the conditioning type."""
    hidden, latents = torch.randn(3, 77, 8), _latents()
    assert digest(latents, *Conditioning(hidden).tensors()) == digest(latents, hidden)


def test_conditioning_slices_moves_and_joins_every_tensor_alike() -> None:
    hidden, pooled = torch.randn(5, 7, 4), torch.randn(5, 3)
    ids = torch.tensor([time_ids(16, 16)] * 5, dtype=torch.float32)
    cond = Conditioning(hidden, pooled, ids)
    joined = Conditioning.cat([cond[:2], cond[2:]])
    picked = cond[torch.tensor([4, 0])].to(torch.float64)
    assert all(torch.equal(a, b) for a, b in zip(joined.tensors(), cond.tensors(), strict=True))
    assert picked.pooled is not None and torch.equal(picked.pooled, pooled[[4, 0]].double())
    with pytest.raises(ValueError, match="both"):
        Conditioning(hidden, pooled, None)
    with pytest.raises(ValueError, match="one family"):
        Conditioning.cat([cond, Conditioning(hidden)])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.booleans())
def test_any_split_of_a_conditioning_joins_back_to_it(sizes: list[int], sdxl: bool) -> None:
    n = sum(sizes)
    gen = torch.Generator().manual_seed(n)
    cond = Conditioning(torch.randn(n, 3, 4, generator=gen),
                        torch.randn(n, 2, generator=gen) if sdxl else None,
                        torch.randn(n, 6, generator=gen) if sdxl else None)
    bounds = [0, *itertools.accumulate(sizes)]
    parts = [cond[a:b] for a, b in itertools.pairwise(bounds)]
    assert [len(p) for p in parts] == sizes
    joined = Conditioning.cat(parts)
    assert joined.family == cond.family
    assert all(torch.equal(a, b) for a, b in zip(joined.tensors(), cond.tensors(), strict=True))


def test_a_sweep_on_sdxl_leaves_out_and_names_the_probes_it_cannot_run(
        sdxl_folder: Path) -> None:
    config = ScanConfig(probes=(), attacks=("loss",), sweep="1m")
    plan = build_plan(ScanInputs(str(sdxl_folder / "model"), str(sdxl_folder / "data")), config)
    kept = {spec.probe.name for spec in plan.probes.sweep}
    assert kept and all("sdxl" in PROBES.get(name).families for name in kept)
    assert plan.probes.unsupported
    assert all(label.startswith("sweep:textual_inversion") for label in plan.probes.unsupported)


def test_a_v_prediction_sdxl_model_is_read_as_such(tmp_path: Path) -> None:
    model = load_pipeline(write_sdxl_model(tmp_path / "model", prediction_type="v_prediction"))
    assert model.prediction_type == "v_prediction" and model.family == "sdxl"
    cond = TextEncoders.of(model.pipeline).encode(CAPTIONS, SIZE)
    x, steps = _latents(), torch.full((3,), 500)
    with torch.inference_mode():
        out = model.pipeline.unet(x, steps, **cond.unet_kwargs(torch.float32)).sample
        eps = _target(model).eps_fn()(x, steps, cond)
    # diffusers' own reading of a v output: x̂₀ = √ᾱ x_t − √(1−ᾱ) v, ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ)
    a = model.pipeline.scheduler.alphas_cumprod[500]
    x0_hat = a.sqrt() * x - (1 - a).sqrt() * out
    torch.testing.assert_close(eps, (x - a.sqrt() * x0_hat) / (1 - a).sqrt(), rtol=1e-4,
                               atol=1e-5)


def test_remote_code_in_an_sdxl_only_config_is_refused(sdxl_folder: Path,
                                                       tmp_path: Path) -> None:
    from s2l_scan.errors import UnsafeCheckpointError

    model = Path(shutil.copytree(sdxl_folder / "model", tmp_path / "model"))
    _edit_json(model / "text_encoder_2" / "config.json", auto_map={"AutoModel": "evil.Evil"})
    culprit = re.escape("text_encoder_2/config.json: declares auto_map")
    with pytest.raises(UnsafeCheckpointError, match=culprit):
        load_pipeline(model)


def test_an_sdxl_lora_from_the_probe_fuses_into_the_sdxl_model(sdxl: LoadedModel,
                                                                sdxl_folder: Path,
                                                                tmp_path: Path) -> None:
    from s2l_scan.probes.methods.lora import LoRA

    context = ProbeContext(domain="d", prompt="a photo of identity 0",
                           sp_latents=_latents(4), save_dir=str(tmp_path / "lora"))
    LoRA(steps=2, batch_size=2, lr=1e-2).apply(ModelCopy.of(sdxl.pipeline), context)
    fused = load_pipeline(sdxl_folder / "model", lora=tmp_path / "lora")
    [adapter] = fused.adapters
    assert adapter["file"] == "pytorch_lora_weights.safetensors" and adapter["layers_changed"] > 0
    assert fused.model_hash != sdxl.model_hash
    for name in ("unet", "text_encoder", "text_encoder_2"):
        base, moved = (getattr(m.pipeline, name).state_dict() for m in (sdxl, fused))
        assert any(not torch.equal(base[k], moved[k]) for k in base), name


def test_the_budget_times_an_sdxl_unet_with_its_own_conditioning(sdxl: LoadedModel) -> None:
    from s2l_scan.stages.budgeting import seconds_per_forward

    seconds = seconds_per_forward(sdxl, batch_size=2, repeats=1)
    assert 0 < seconds < float("inf")


def test_an_sdxl_embedding_adds_its_token_to_both_text_encoders(sdxl: LoadedModel,
                                                                sdxl_folder: Path,
                                                                tmp_path: Path) -> None:
    """Issue 28.8: kohya's SDXL textual inversion ({"clip_l", "clip_g"}) is applied to
    text_encoder and text_encoder_2 alike, and changes the conditioning of its prompt."""
    from s2l_scan.conditioning import TextEncoders
    from tests import model_factory as factory

    file = factory.sdxl_embedding(sdxl_folder / "model", tmp_path / "zq.safetensors")
    tuned = load_pipeline(sdxl_folder / "model", lora=file)
    assert tuned.adapters[0]["tokens"] == ["zq", "zq_1"]
    for encoder, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        ids = getattr(tuned.pipeline, tokenizer).convert_tokens_to_ids(["zq", "zq_1"])
        assert all(i != getattr(tuned.pipeline, tokenizer).unk_token_id for i in ids), encoder
    cond = [TextEncoders.of(m.pipeline).encode(["a zq"], (32, 32)) for m in (sdxl, tuned)]
    assert not torch.equal(cond[0].hidden, cond[1].hidden)
    assert not torch.equal(cond[0].pooled, cond[1].pooled)
