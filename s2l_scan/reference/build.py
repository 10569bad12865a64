"""Build the offline reference model: a tiny Stable-Diffusion pipeline with a known member set.

Everything is generated and trained here, seeded, with no network: synthetic identity images
(:mod:`.images`), a CLIP BPE tokenizer over the prompt words (:mod:`.tokenizer`), a frozen random
CLIP text encoder, a VAE trained on a disjoint public image set, and a UNet trained on the members
of every identity (plus a few planted duplicates). The result is an ordinary diffusers folder that
``StableDiffusionPipeline.from_pretrained`` loads, so the scanner's real loading code is what the
tests exercise.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from s2l_scan.functional.diffusion import training_target
from s2l_scan.io.weights import sha256_file
from s2l_scan.reference import images as imgs
from s2l_scan.reference.presets import ReferencePreset
from s2l_scan.reference.tokenizer import MAX_LENGTH, write_tokenizer

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while the builder works."""

PROMPT_TEMPLATE = "a photo of identity {index}"


def _quiet(stage: str, done: int, total: int) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class _Split:
    members: list[np.ndarray]
    nonmembers: list[np.ndarray]
    duplicated: list[int]  # member indices planted duplication_factor times
    style: Any = None  # the identity's style, drawn once (its base images share it)


def _make_images(preset: ReferencePreset, seed: int) -> tuple[list[_Split], list[np.ndarray]]:
    rng = np.random.default_rng([seed, 0])
    splits = []
    for _ in range(preset.n_identities):
        style = imgs.identity_style(rng)
        members = [imgs.identity_image(style, preset.image_size, rng)
                   for _ in range(preset.members_per_identity)]
        nonmembers = [imgs.identity_image(style, preset.image_size, rng)
                      for _ in range(preset.nonmembers_per_identity)]
        duplicated = sorted(rng.choice(preset.members_per_identity,
                                       preset.duplicated_per_identity, replace=False).tolist())
        splits.append(_Split(members, nonmembers, duplicated, style))
    public_rng = np.random.default_rng([seed, 1])
    public = [imgs.public_image(preset.image_size, public_rng) for _ in range(preset.n_public)]
    return splits, public


def _base_images(preset: ReferencePreset, splits: list[_Split], seed: int
                 ) -> tuple[list[np.ndarray], list[int]]:
    """The base model's training images: fresh draws of every identity's style, from their own
    generator (so a build without a base is unchanged), never a member or a non-member."""
    rng = np.random.default_rng([seed, 2])
    images, identity_of = [], []
    for index, split in enumerate(splits):
        for _ in range(preset.base_per_identity):
            images.append(imgs.identity_image(split.style, preset.image_size, rng))
            identity_of.append(index)
    return images, identity_of


def _quantize(image: np.ndarray) -> torch.Tensor:
    # Train on exactly the pixels written to the PNGs, so the audit data is what was seen.
    array = imgs.to_uint8(image).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _write_data(data_dir: Path, splits: list[_Split]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for index, split in enumerate(splits):
        domain = data_dir / f"identity-{index}"
        (domain / "members").mkdir(parents=True)
        (domain / "nonmembers").mkdir(parents=True)
        (domain / "prompt.txt").write_text(PROMPT_TEMPLATE.format(index=index) + "\n")
        for kind, images in (("members", split.members), ("nonmembers", split.nonmembers)):
            for number, image in enumerate(images):
                Image.fromarray(imgs.to_uint8(image)).save(domain / kind / f"{number:04d}.png")
        record[f"identity-{index}"] = {
            "prompt": PROMPT_TEMPLATE.format(index=index),
            "members": [f"{n:04d}.png" for n in range(len(split.members))],
            "nonmembers": [f"{n:04d}.png" for n in range(len(split.nonmembers))],
            "duplicated_members": [f"{n:04d}.png" for n in split.duplicated],
        }
    return record


def _random_crops(images: torch.Tensor, count: int, side: int,
                  generator: torch.Generator) -> torch.Tensor:
    # The VAE is fully convolutional: training on crops costs (side / size)² as much per image
    # and still teaches it to reconstruct whole images.
    index = torch.randint(len(images), (count,), generator=generator)
    top, left = torch.randint(images.shape[-1] - side + 1, (2,), generator=generator).tolist()
    return images[index, :, top:top + side, left:left + side]


def _train_vae(preset: ReferencePreset, public: torch.Tensor, seed: int,
               progress: ProgressFn, device: torch.device) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    depth = len(preset.vae_channels)
    vae: Any = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=preset.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=preset.vae_channels, layers_per_block=1,
        norm_num_groups=preset.norm_groups, sample_size=preset.image_size,
        mid_block_add_attention=False,
    )
    vae.to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=preset.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    vae.train()
    for step in range(preset.vae_steps):
        batch = _random_crops(public, preset.batch_size, preset.vae_crop, generator).to(device)
        posterior = vae.encode(batch).latent_dist
        # Decode the posterior *mean*: that is what the scanner encodes audit images to, and a
        # sharp deterministic decoder is what lets memorized images come back in pixel space.
        recon = vae.decode(posterior.mean).sample
        loss = (recon - batch).abs().mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress("vae", step + 1, preset.vae_steps)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        means = vae.encode(public.to(device)).latent_dist.mean.cpu()
    # Unit-variance latents, as SD's 0.18215 does for its own VAE.
    vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    return vae


def _text_encoder(preset: ReferencePreset, vocab: dict[str, int], seed: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed + 1)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=preset.text_hidden,
        intermediate_size=2 * preset.text_hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LENGTH,
        projection_dim=preset.text_hidden,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    return CLIPTextModel(config).eval().requires_grad_(False)


def _embed(tokenizer: Any, text_encoder: Any, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids).last_hidden_state


def _lr_schedule(preset: ReferencePreset, optimizer: torch.optim.Optimizer) -> Any:
    from diffusers.optimization import get_constant_schedule, get_cosine_schedule_with_warmup

    if preset.lr_schedule == "constant":
        return get_constant_schedule(optimizer)
    # A decayed learning rate is what turns a noisy fit into clean, memorized samples.
    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=preset.unet_steps // 20,
                                           num_training_steps=preset.unet_steps)


def _train_unet(preset: ReferencePreset, latents: torch.Tensor, context: torch.Tensor,
                uncond: torch.Tensor, seed: int, progress: ProgressFn,
                device: torch.device, *, steps: int | None = None,
                init: dict[str, torch.Tensor] | None = None, stage: str = "unet"
                ) -> tuple[Any, Any]:
    """The UNet trained ``steps`` (default: the preset's unet_steps) from ``init`` (a base
    UNet's weights: a fine-tune) or from a seeded random initialisation."""
    steps = preset.unet_steps if steps is None else steps
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed + 2)
    unet: Any = UNet2DConditionModel(
        sample_size=latents.shape[-1], in_channels=latents.shape[1],
        out_channels=latents.shape[1],
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=preset.unet_channels, layers_per_block=1,
        cross_attention_dim=preset.text_hidden, attention_head_dim=8,
        norm_num_groups=preset.norm_groups,
    )
    if init is not None:
        unet.load_state_dict(init)
    unet.to(device)
    latents, context, uncond = latents.to(device), context.to(device), uncond.to(device)
    # Stable Diffusion v1's training schedule.
    noise_schedule: Any = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085,
                                   beta_end=0.012, beta_schedule="scaled_linear",
                                   prediction_type=preset.prediction_type)
    alphas = noise_schedule.alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=preset.lr, weight_decay=1e-2)
    schedule = _lr_schedule(dataclasses.replace(preset, unet_steps=steps), optimizer)
    generator = torch.Generator().manual_seed(seed + 3)
    unet.train()
    for step in range(steps):
        # Random draws stay on the CPU generator, so a build's data order is device-independent.
        index = torch.randint(len(latents), (preset.batch_size,), generator=generator)
        noise = torch.randn((preset.batch_size, *latents.shape[1:]), generator=generator)
        t = torch.randint(0, 1000, (preset.batch_size,), generator=generator)
        drop = torch.rand(preset.batch_size, generator=generator) < preset.caption_dropout
        index, noise, t, drop = (x.to(device) for x in (index, noise, t, drop))
        x0 = latents[index]
        cond = torch.where(drop[:, None, None], uncond, context[index])
        pred = unet(noise_schedule.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        # the preset's objective (ε: the noise itself, so ε builds are what they always were)
        target = training_target(preset.prediction_type, x0, noise, alphas[t])
        loss = torch.nn.functional.mse_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress(stage, step + 1, steps)
    return unet.cpu().eval().requires_grad_(False), noise_schedule


def build_reference(out: Path, preset: ReferencePreset, seed: int = 0, *, threads: int = 1,
                    progress: ProgressFn = _quiet, device: str = "cpu") -> dict[str, Any]:
    """Build the reference model into ``out`` (which must not exist) and return its manifest.

    With ``preset.base_steps`` the UNet is a fine-tune of a base UNet trained on other images
    of the same identities, and ``out/base`` holds the base pipeline (the fine-tune's reference
    model). Writes ``out/model`` (a diffusers StableDiffusionPipeline folder, safetensors weights),
    ``out/data`` (audit data: ``identity-N/{prompt.txt,members/,nonmembers/}``) and
    ``out/manifest.json``. Same preset and seed give identical weight files (on one device;
    ``device="cuda"`` trains faster and gives a different, equally valid, model).
    """
    import diffusers.utils.logging
    import transformers.utils.logging
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    diffusers.utils.logging.disable_progress_bar()
    # the text encoder's save_pretrained draws a "Writing model shards" bar of its own
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    phases: dict[str, float] = {}  # wall seconds per phase, recorded in the manifest
    mark = [started]

    def lap(phase: str) -> None:
        now = time.perf_counter()
        phases[phase] = round(phases.get(phase, 0.0) + now - mark[0], 2)
        mark[0] = now
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out.mkdir(parents=True)
        splits, public = _make_images(preset, seed)
        split_record = _write_data(out / "data", splits)

        prompts = [PROMPT_TEMPLATE.format(index=i) for i in range(preset.n_identities)]
        words = sorted({word for prompt in prompts for word in prompt.split()})
        vocab = write_tokenizer(out / "model" / "tokenizer", words)
        tokenizer = CLIPTokenizer.from_pretrained(out / "model" / "tokenizer")
        text_encoder = _text_encoder(preset, vocab, seed)
        lap("data")  # images, PNGs, tokenizer, text encoder

        vae = _train_vae(preset, torch.stack([_quantize(im) for im in public]), seed, progress,
                         torch.device(device))
        lap("vae")
        pixels, identity_of = [], []
        for index, split in enumerate(splits):
            for number, image in enumerate(split.members):
                copies = preset.duplication_factor if number in split.duplicated else 1
                pixels += [_quantize(image)] * copies
                identity_of += [index] * copies
        with torch.no_grad():
            latents = vae.encode(torch.stack(pixels).to(device)).latent_dist.mean.cpu()
            latents = latents * vae.config.scaling_factor
        vae = vae.cpu()
        prompt_context = _embed(tokenizer, text_encoder, prompts)
        context = prompt_context[torch.tensor(identity_of)]
        uncond = _embed(tokenizer, text_encoder, [""])
        lap("encode")  # training latents and prompt embeddings, once
        base_unet = None
        if preset.base_steps:
            base_pixels, base_identity = _base_images(preset, splits, seed)
            with torch.no_grad():
                base_latents = vae.to(device).encode(torch.stack(
                    [_quantize(im) for im in base_pixels]).to(device)).latent_dist.mean.cpu()
            vae = vae.cpu()
            base_unet, _ = _train_unet(
                preset, base_latents * vae.config.scaling_factor,
                prompt_context[torch.tensor(base_identity)], uncond, seed + 1000, progress,
                torch.device(device), steps=preset.base_steps, stage="base")
            lap("base")
        unet, noise_schedule = _train_unet(
            preset, latents, context, uncond, seed, progress, torch.device(device),
            init=None if base_unet is None else base_unet.state_dict())
        lap("unet")

        scheduler = DDIMScheduler.from_config(noise_schedule.config, clip_sample=False,
                                              set_alpha_to_one=False, steps_offset=1)
        pipeline: Any = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(out / "model", safe_serialization=True)
        if base_unet is not None:  # the same pipeline with the base UNet: the fine-tune's base
            pipeline.unet = base_unet
            pipeline.save_pretrained(out / "base", safe_serialization=True)
            shutil.rmtree(out / "base" / "tokenizer")  # the very tokenizer files of the model
            shutil.copytree(out / "model" / "tokenizer", out / "base" / "tokenizer")
        lap("save")
    finally:
        torch.set_num_threads(previous_threads)

    manifest = {
        "kind": "s2l-scan reference model",
        "preset": dataclasses.asdict(preset),
        "seed": seed,
        "threads": threads,
        "device": device,
        "build_seconds": round(time.perf_counter() - started, 2),
        "phase_seconds": phases,
        "training_set_size": len(pixels),
        "split": split_record,
        "parameters": {
            name: sum(p.numel() for p in module.parameters())
            for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))
        },
        "files": {
            str(path.relative_to(out)): sha256_file(path)
            for path in sorted((out / "model").rglob("*")) if path.is_file()
        },
    }
    if preset.base_steps:
        manifest["base"] = {"folder": "base", "steps": preset.base_steps,
                            "images_per_identity": preset.base_per_identity}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
