"""The fine-tuning probes (probes/methods/) and their shared loop (s2l_scan/finetune/).

One contract test runs every registered method on the tiny reference model: it trains, changes
only what the method owns, leaves the released model untouched, reports a consistent
trainable-parameter count, saves what it trained and returns a copy the attacks can run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import s2l_scan.probes.methods  # noqa: F401 - registers the methods
from s2l_scan.errors import ScanError, UsageError
from s2l_scan.finetune import TrainConfig, TrainingData, train
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.io.model import load_pipeline
from s2l_scan.probe import PROBES, ModelCopy, ProbeContext
from s2l_scan.probes.methods.hypernetwork import add_hypernetwork
from s2l_scan.probes.methods.lora import TEXT_TARGETS, UNET_TARGETS, add_lora, fuse_lora

METHODS = [n for n in PROBES.names() if PROBES.get(n).__module__.startswith(
    "s2l_scan.probes.methods.")]
STEPS = 3
PROMPT = "a photo of identity 0"
EMBEDDING = "embeddings.token_embedding.weight"  # CLIPTextModel's state-dict key (transformers 5)
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
TEXT_WEIGHTS = "text_encoder/model.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"


def _lora_count(pipe: Any) -> int:
    """r·(in + out) per targeted linear layer, counted from the released model (rank 4)."""
    def count(module: Any, targets: tuple[str, ...]) -> int:
        return sum(4 * (m.in_features + m.out_features) for name, m in module.named_modules()
                   if any(name == t or name.endswith("." + t) for t in targets))
    return count(pipe.unet, UNET_TARGETS) + count(pipe.text_encoder, TEXT_TARGETS)


def _hyper_count(pipe: Any) -> int:
    width, hidden = pipe.unet.config.cross_attention_dim, 64  # one (K, V) pair per width
    return 2 * (width * hidden + hidden + hidden * width + width)


def _all(*names: str) -> Callable[[Any], int]:
    return lambda pipe: sum(p.numel() for n in names for p in getattr(pipe, n).parameters())


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a method may change, how many scalars it trains, and what it saves."""

    unet: str  # "all": weights move; "lora": only LoRA targets, by rank ≤ r; "none"
    text: str  # as unet, plus "tokens": new embedding rows only
    count: Callable[[Any], int]
    files: tuple[str, ...]
    hyper: bool = False  # hypernetwork MLPs installed on attn2


def _tokens(pipe: Any) -> int:
    return int(pipe.text_encoder.config.hidden_size)


EXPECT = {
    "end_to_end": Expect("all", "all", _all("unet", "text_encoder"), (UNET_WEIGHTS, TEXT_WEIGHTS)),
    "end_to_end_ood": Expect("all", "all", _all("unet", "text_encoder"),
                             (UNET_WEIGHTS, TEXT_WEIGHTS)),
    "dreambooth": Expect("all", "none", _all("unet"), (UNET_WEIGHTS,)),
    "lora": Expect("lora", "lora", _lora_count, (LORA_FILE,)),
    "dreambooth+lora": Expect("lora", "lora", _lora_count, (LORA_FILE,)),
    "textual_inversion": Expect("none", "tokens", _tokens, ("learned_embeds.safetensors",)),
    "textual_inversion+lora": Expect("lora", "lora+tokens",
                                     lambda pipe: _lora_count(pipe) + _tokens(pipe),
                                     (LORA_FILE, "learned_embeds.safetensors")),
    "hypernetwork": Expect("none", "none", _hyper_count, ("hypernetwork.safetensors",), True),
    "dreambooth+hypernetwork": Expect("none", "none", _hyper_count,
                                      ("hypernetwork.safetensors",), True),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def loaded(tiny_reference: Path) -> Any:
    return load_pipeline(tiny_reference / "model")


@pytest.fixture(scope="module")
def pipe(loaded: Any) -> Any:
    return loaded.pipeline


@pytest.fixture(scope="module")
def context(tiny_reference: Path, loaded: Any) -> ProbeContext:
    """SP / OOD / prior sets: VAE-encoded audit images of the tiny reference (8 each)."""
    data = load_audit_data(tiny_reference / "data", loaded.resolution)

    def encode(domain: str) -> torch.Tensor:
        found = data.domain(domain)
        pixels = np.stack([im.pixels for im in (*found.members, *found.nonmembers)])[:8]
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        vae = loaded.pipeline.vae
        with torch.no_grad():
            return vae.encode(x).latent_dist.mean * vae.config.scaling_factor

    other = encode("identity-1")
    return ProbeContext(domain="identity-0", prompt=PROMPT, sp_latents=encode("identity-0"),
                        ood_latents=other, ood_prompt="a photo of identity 1",
                        prior_latents=other.flip(0), prior_prompt="a photo", seed=0)


def _state(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _digest(pipe: Any) -> str:
    digest = hashlib.sha256()
    for name in ("unet", "text_encoder", "vae"):
        for key, tensor in sorted(getattr(pipe, name).state_dict().items()):
            digest.update(key.encode() + tensor.detach().cpu().numpy().tobytes())
    processors = sorted((k, type(v).__name__) for k, v in pipe.unet.attn_processors.items())
    digest.update(json.dumps([processors, len(pipe.tokenizer)]).encode())
    return digest.hexdigest()


def _run(pipe: Any, context: ProbeContext, method: str, **options: Any) -> ModelCopy:
    changes = options.pop("ctx", {})
    probe = PROBES.get(method)(**{"steps": STEPS, **options})
    return probe.apply(ModelCopy.of(pipe), dataclasses.replace(context, **changes))


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in before.items() if k != EMBEDDING and not torch.equal(v, after[k])}


def _check_changes(rule: str, before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                   targets: tuple[str, ...]) -> None:
    changed = _changed(before, after)
    if rule == "all":
        assert changed
    elif rule.startswith("lora"):
        allowed = {k for k in before if any(k.endswith(f"{t}.weight") for t in targets)}
        assert changed and changed <= allowed, sorted(changed - allowed)
        for key in changed:
            # rtol: fusing rounds W + (α/r)BA to float32, which adds tiny full-rank noise
            delta = (after[key] - before[key]).double()
            assert torch.linalg.matrix_rank(delta, rtol=1e-4).item() <= 4, key
    else:
        assert not changed, sorted(changed)


def test_the_table_lists_every_registered_method() -> None:
    assert set(METHODS) == set(EXPECT)


@pytest.mark.parametrize("method", METHODS)
def test_method_contract(method: str, pipe: Any, context: ProbeContext, tmp_path: Path) -> None:
    expect, released = EXPECT[method], _digest(pipe)
    unet0, text0 = _state(pipe.unet), _state(pipe.text_encoder)
    probe = PROBES.get(method)(steps=STEPS)
    model = probe.apply(ModelCopy.of(pipe), dataclasses.replace(context, save_dir=str(tmp_path)))

    assert _digest(pipe) == released  # the released model is untouched
    assert model.trainable_parameters == expect.count(pipe) > 0
    assert np.isfinite(model.details["final_loss"]) and model.details["steps"] == STEPS
    json.dumps({**probe.describe(), **model.details})  # the report can carry both
    unet1, text1 = _state(model.unet), _state(model.text_encoder)
    _check_changes(expect.unet, unet0, unet1, UNET_TARGETS)
    _check_changes(expect.text, text0, text1, TEXT_TARGETS)
    old_rows = len(text0[EMBEDDING])
    if expect.text != "all":  # nothing but full fine-tuning moves the existing embeddings
        assert torch.equal(text1[EMBEDDING][:old_rows], text0[EMBEDDING])
    if "tokens" in expect.text:
        assert len(text1[EMBEDDING]) == old_rows + 1 and len(model.tokenizer) == old_rows + 1
    processors = {type(p).__name__ for k, p in model.unet.attn_processors.items() if "attn2" in k}
    assert (processors == {"HypernetworkProcessor"}) is expect.hyper
    if expect.hyper:  # the MLPs trained: their zero-initialised output layers moved
        assert any("project.weight" in k and v.abs().sum() > 0 for k, v in unet1.items())
    for name in expect.files:
        assert (tmp_path / name).stat().st_size > 0, name
    assert not any(p.requires_grad for m in (model.unet, model.text_encoder)
                   for p in m.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_returned_copy_runs_with_its_captions(method: str, pipe: Any,
                                              context: ProbeContext) -> None:
    model = _run(pipe, context, method, steps=1)
    caption = model.caption_fn(PROMPT)
    assert caption.endswith(PROMPT)
    ids = model.tokenizer([caption] * 4, padding="max_length", truncation=True,
                          max_length=model.tokenizer.model_max_length, return_tensors="pt")
    if method.startswith("textual_inversion"):  # the learned token is really in the caption
        assert int(ids.input_ids.max()) == len(model.tokenizer) - 1
    x = context.sp_latents[:4]
    with torch.no_grad():
        cond = model.text_encoder(ids.input_ids)[0]
        out = model.unet(x, torch.tensor([10, 200, 500, 900]), encoder_hidden_states=cond).sample
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_weights(method: str, pipe: Any, context: ProbeContext) -> None:
    first, again = (_run(pipe, context, method, steps=2) for _ in range(2))
    for name in ("unet", "text_encoder"):
        a, b = _state(getattr(first, name)), _state(getattr(again, name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_another_seed_other_weights(pipe: Any, context: ProbeContext) -> None:
    first = _state(_run(pipe, context, "lora", steps=1).unet)
    other = _state(_run(pipe, context, "lora", steps=1, ctx={"seed": 1}).unet)
    assert _changed(first, other)


def test_fewer_parameters_for_lighter_methods(pipe: Any, context: ProbeContext) -> None:
    counts = {m: _run(pipe, context, m, steps=1).trainable_parameters
              for m in ("textual_inversion", "hypernetwork", "lora", "dreambooth", "end_to_end")}
    assert list(counts.values()) == sorted(counts.values()), counts


def test_fused_lora_matches_the_adapter_model(pipe: Any, context: ProbeContext) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = ModelCopy.of(pipe)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in add_lora(model, rank=4, alpha=8.0, seed=0):  # B ≠ 0, as after training
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    ids = model.tokenizer([PROMPT] * 4, padding="max_length", return_tensors="pt",
                          max_length=model.tokenizer.model_max_length).input_ids
    x, t = context.sp_latents[:4], torch.tensor([10, 200, 500, 900])

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            cond = model.text_encoder(ids)[0]
            return cond, model.unet(x, t, encoder_hidden_states=cond).sample

    adapted = outputs()
    fuse_lora(model)
    fused = outputs()
    assert not any(isinstance(m, BaseTunerLayer) for part in (model.unet, model.text_encoder)
                   for m in part.modules())
    assert not hasattr(model.unet, "peft_config") and not hasattr(model.text_encoder,
                                                                  "peft_config")
    for a, b in zip(adapted, fused, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # and the adapters did change the model
        assert not torch.allclose(fused[1], pipe.unet(x, t, encoder_hidden_states=fused[0]).sample)


@pytest.mark.parametrize("method", ["lora", "dreambooth+lora"])
def test_saved_lora_loads_as_the_fused_copy(method: str, tiny_reference: Path, pipe: Any,
                                            context: ProbeContext, tmp_path: Path) -> None:
    model = _run(pipe, context, method, ctx={"save_dir": str(tmp_path)})
    reloaded = load_pipeline(tiny_reference / "model", lora=tmp_path).pipeline
    for name in ("unet", "text_encoder"):
        ours, theirs = _state(getattr(model, name)), _state(getattr(reloaded, name))
        for key in ours:
            torch.testing.assert_close(theirs[key], ours[key], atol=1e-6, rtol=1e-6)


def test_hypernetwork_starts_as_the_identity(pipe: Any, context: ProbeContext) -> None:
    model = ModelCopy.of(pipe)
    add_hypernetwork(model.unet, hidden=16, seed=0)
    x, t = context.sp_latents[:2], torch.tensor([100, 700])
    cond = torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    with torch.no_grad():
        torch.testing.assert_close(model.unet(x, t, cond).sample, pipe.unet(x, t, cond).sample,
                                   atol=0, rtol=0)


def test_saved_embeddings_are_the_learned_rows(pipe: Any, context: ProbeContext,
                                               tmp_path: Path) -> None:
    model = _run(pipe, context, "textual_inversion", tokens=2, ctx={"save_dir": str(tmp_path)})
    saved = load_file(tmp_path / "learned_embeds.safetensors")
    rows = model.text_encoder.get_input_embeddings().weight
    assert sorted(saved) == ["<s2l-0>", "<s2l-1>"] and model.caption_fn("p") == "<s2l-0> <s2l-1> p"
    for token, vector in saved.items():
        assert torch.equal(vector, rows[model.tokenizer.convert_tokens_to_ids(token)])


def test_dreambooth_without_prior_says_so(pipe: Any, context: ProbeContext) -> None:
    with_prior = _run(pipe, context, "dreambooth", steps=1)
    without = _run(pipe, context, "dreambooth", steps=1, ctx={"prior_latents": None})
    assert with_prior.details["prior_preservation"].startswith("on: 8 images")
    assert without.details["prior_preservation"].startswith("off")


@pytest.mark.parametrize(("method", "options", "match"), [
    ("end_to_end", {"steps": 0}, "steps must be an integer ≥ 1"),
    ("end_to_end", {"steps": 2.5}, "steps must be an integer ≥ 1"),
    ("lora", {"lr": 0.0}, "lr must be a number > 0"),
    ("dreambooth", {"lr": -1e-4}, "lr must be a number > 0"),
    ("hypernetwork", {"batch_size": 0}, "batch_size must be an integer ≥ 1"),
    ("lora", {"rank": 0}, "rank must be an integer ≥ 1"),
    ("dreambooth+lora", {"alpha": 0}, "alpha must be a number > 0"),
    ("textual_inversion", {"tokens": 0}, "tokens must be an integer ≥ 1"),
    ("dreambooth+hypernetwork", {"hidden": 0}, "hidden must be an integer ≥ 1"),
    ("dreambooth", {"prior_weight": -1.0}, "prior_weight must be a number ≥ 0"),
    ("textual_inversion+lora", {"embedding_lr": 0}, "embedding_lr must be a number > 0"),
])
def test_bad_options_are_refused_at_construction(method: str, options: dict[str, Any],
                                                 match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PROBES.get(method)(**options)


@pytest.mark.parametrize(("method", "ctx", "match"), [
    ("end_to_end", {"sp_latents": torch.empty(0)}, "SP set of domain 'identity-0' is empty"),
    ("textual_inversion", {"sp_latents": torch.empty(0, 4, 16, 16)}, "SP set .* is empty"),
    ("end_to_end_ood", {"ood_latents": None}, "no out-of-domain set"),
    ("dreambooth", {"prior_prompt": ""}, "without a prior_prompt"),
])
def test_missing_data_is_refused(method: str, ctx: dict[str, Any], match: str, pipe: Any,
                                 context: ProbeContext) -> None:
    with pytest.raises(UsageError, match=match):
        _run(pipe, context, method, ctx=ctx)


def test_textual_inversion_refuses_a_copy_it_already_shook(pipe: Any,
                                                           context: ProbeContext) -> None:
    model = _run(pipe, context, "textual_inversion", steps=1)
    with pytest.raises(UsageError, match="already holds"):
        PROBES.get("textual_inversion")(steps=1).apply(model, context)


@pytest.mark.parametrize(("change", "match"), [
    ({"params": []}, "no trainable parameters"),
    ({"steps": 0}, "steps must be an integer ≥ 1"),
    ({"lr": 0.0}, "lr must be a number > 0"),
    ({"batch_size": 1.5}, "batch_size must be an integer ≥ 1"),
    ({"seed": "0"}, "seed must be an integer"),
    ({"prior_weight": -1.0}, "prior_weight must be ≥ 0"),
    ({"device": "gpu0"}, "not a torch device"),
    ({"latents": torch.empty(0, 4, 16, 16)}, "non-empty SP set"),
    ({"captions": [PROMPT]}, "one caption per latent"),
    ({"captions": PROMPT}, "one caption per latent"),
    ({"prior": (torch.empty(0, 4, 16, 16), "a photo")}, "prior-preservation set"),
    ({"device": "meta"}, "lives on cpu"),
])
def test_the_loop_refuses_bad_inputs(change: dict[str, Any], match: str, pipe: Any,
                                     context: ProbeContext) -> None:
    model = ModelCopy.of(pipe)
    latents = context.sp_latents
    args: dict[str, Any] = {"latents": latents, "captions": [PROMPT] * len(latents), "prior": None,
                            "params": list(model.unet.parameters()), "steps": 1, "lr": 1e-4,
                            "batch_size": 4, "seed": 0, "prior_weight": 1.0, "device": "cpu",
                            **change}
    data = {k: args.pop(k) for k in ("latents", "captions", "prior")}
    params = args.pop("params")
    with pytest.raises(UsageError, match=match):
        train(model, TrainingData(**data), params, TrainConfig(**args))


def test_train_config_fields_have_help() -> None:
    import ast
    import inspect

    import s2l_scan.finetune.loop as loop

    body = next(node for node in ast.parse(inspect.getsource(loop)).body
                if isinstance(node, ast.ClassDef) and node.name == "TrainConfig").body
    documented = {a.target.id for a, doc in itertools.pairwise(body)
                  if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                  and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)}
    assert documented == {f.name for f in dataclasses.fields(TrainConfig)}


def test_the_loop_is_seeded_and_reports_losses(pipe: Any, context: ProbeContext) -> None:
    def run() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        model = ModelCopy.of(pipe)
        report = train(model, TrainingData.captioned(context.sp_latents, PROMPT),
                       list(model.unet.parameters()),
                       TrainConfig(steps=4, lr=1e-4, batch_size=4, seed=3))
        return report, _state(model.unet)

    (report, weights), (again, same) = run(), run()
    assert report == again and len(report["losses"]) == 4
    assert report["final_loss"] == report["losses"][-1]  # the mean of the last tenth
    assert all(torch.equal(weights[k], same[k]) for k in weights)


def _reference_loop(model: ModelCopy, latents: torch.Tensor, prior: torch.Tensor, *,
                    steps: int, lr: float, batch: int, prior_weight: float, seed: int) -> None:
    """The training loop's maths written out plainly: the oracle for train()'s maths and draw order.

    One generator draws, per step: SP batch indices, prior batch indices, noise, timesteps.
    ε-MSE with x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε; AdamW (decay 1e-2); global grad norm clipped to 1.
    """
    unet, alphas = model.unet, model.scheduler.alphas_cumprod.float()
    ids = model.tokenizer([PROMPT, "a photo"], padding="max_length", truncation=True,
                          max_length=model.tokenizer.model_max_length, return_tensors="pt")
    with torch.no_grad():
        sp_cond, prior_cond = model.text_encoder(ids.input_ids)[0].float()
    params = list(unet.parameters())
    unet.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x0 = torch.cat([latents[torch.randint(len(latents), (batch,), generator=generator)],
                        prior[torch.randint(len(prior), (batch,), generator=generator)]])
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, model.scheduler.config.num_train_timesteps, (2 * batch,),
                          generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        cond = torch.stack([sp_cond] * batch + [prior_cond] * batch)
        pred = unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=cond).sample
        sp_error = ((pred[:batch] - noise[:batch]) ** 2).mean()
        prior_error = ((pred[batch:] - noise[batch:]) ** 2).mean()
        optimizer.zero_grad()
        (sp_error + prior_weight * prior_error).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    unet.eval().requires_grad_(False)


def test_the_loop_matches_a_plain_reimplementation(pipe: Any, context: ProbeContext) -> None:
    latents, prior = context.sp_latents, context.prior_latents
    assert prior is not None
    ours, oracle = ModelCopy.of(pipe), ModelCopy.of(pipe)
    train(ours, TrainingData.captioned(latents, PROMPT, (prior, "a photo")),
          list(ours.unet.parameters()),
          TrainConfig(steps=3, lr=1e-3, batch_size=3, seed=7, prior_weight=0.5))
    _reference_loop(oracle, latents, prior, steps=3, lr=1e-3, batch=3, prior_weight=0.5, seed=7)
    start, mine, theirs = _state(pipe.unet), _state(ours.unet), _state(oracle.unet)
    assert _changed(start, mine)  # it trained
    for key in mine:  # float rounding of a differently ordered sum, not a different draw
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-6, rtol=1e-5)


def test_a_diverging_run_is_an_error_not_nan_weights(pipe: Any, context: ProbeContext) -> None:
    with pytest.raises(ScanError, match="diverged: loss is"):
        _run(pipe, context, "end_to_end", lr=1e6, steps=5)
