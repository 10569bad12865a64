"""A tiny SDXL pipeline folder, built in about a second from diffusers / transformers classes,
in the exact layout of a real SDXL base release: ``model_index.json`` naming
``StableDiffusionXLPipeline``, ``unet/`` (``addition_embed_type="text_time"``), ``vae/``,
``text_encoder/`` (CLIPTextModel), ``text_encoder_2/`` (CLIPTextModelWithProjection),
``tokenizer/`` and ``tokenizer_2/`` (CLIP BPE; the second pads with ``!`` as SDXL's does) and
``scheduler/`` (EulerDiscreteScheduler with SDXL's schedule). Also a small audit folder.

Sizes follow diffusers' own SDXL pipeline tests (tests/pipelines/stable_diffusion_xl): two
32-wide text encoders, a 16/32-channel UNet, a one-downsampling VAE (16-pixel images, 8×8
latents).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from s2l_scan.reference.tokenizer import END, START, write_tokenizer

WORDS = ["a", "photo", "of", "identity", "0", "1", "painting", "dog", "cat", "landscape"]
TEXT_HIDDEN = 32
PROJECTION = 32
TIME_EMBED = 8
DOMAINS = {"identity-0": "a photo of identity 0", "identity-1": "a photo of identity 1"}


def _text_config(vocab: dict[str, int], pad: str, layers: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=TEXT_HIDDEN, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=layers, max_position_embeddings=77,
        projection_dim=PROJECTION, hidden_act="gelu", layer_norm_eps=1e-5,
        bos_token_id=vocab[START], eos_token_id=vocab[END], pad_token_id=vocab[pad])


def _tokenizers(root: Path) -> tuple[Any, Any, dict[str, int]]:
    from transformers import CLIPTokenizer

    vocab = write_tokenizer(root / "_tok1", WORDS)
    write_tokenizer(root / "_tok2", WORDS)
    config_path = root / "_tok2" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["pad_token"] = "!"  # SDXL's tokenizer_2 pads with "!", its tokenizer with <|endoftext|>
    config_path.write_text(json.dumps(config))
    special_path = root / "_tok2" / "special_tokens_map.json"
    special = json.loads(special_path.read_text())
    special["pad_token"] = "!"
    special_path.write_text(json.dumps(special))
    return (CLIPTokenizer.from_pretrained(root / "_tok1"),
            CLIPTokenizer.from_pretrained(root / "_tok2"), vocab)


def build_sdxl_pipeline(root: Path, *, seed: int = 0, prediction_type: str = "epsilon",
                        projection_input_dim: int | None = None) -> Any:
    """The tiny SDXL pipeline (seeded weights), in memory; ``root`` holds scratch tokenizer
    files. ``projection_input_dim`` overrides the UNet's ``projection_class_embeddings_input_dim``
    (6 × addition_time_embed_dim + text_encoder_2 projection_dim unless broken on purpose)."""
    import shutil

    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    root.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_2, vocab = _tokenizers(root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(16, 32), norm_num_groups=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True,
            transformer_layers_per_block=(1, 2), cross_attention_dim=2 * TEXT_HIDDEN,
            addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
            projection_class_embeddings_input_dim=(
                6 * TIME_EMBED + PROJECTION if projection_input_dim is None
                else projection_input_dim))
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=16)
        text_encoder = CLIPTextModel(_text_config(vocab, END, layers=3))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab, "!", layers=3))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", prediction_type=prediction_type)
    shutil.rmtree(root / "_tok1")
    shutil.rmtree(root / "_tok2")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False)


def write_sdxl_model(out: Path, **options: Any) -> Path:
    """Save the tiny SDXL pipeline to ``out`` (safetensors), as a real release lays it out
    (``model_index.json`` with ``force_zeros_for_empty_prompt`` and ``add_watermarker: null``).
    Returns ``out``. ``options`` go to :func:`build_sdxl_pipeline`."""
    pipe = build_sdxl_pipeline(out.parent / f".{out.name}-scratch", **options)
    pipe.save_pretrained(out, safe_serialization=True)
    index_path = out / "model_index.json"
    index = json.loads(index_path.read_text())
    index["add_watermarker"] = None
    index_path.write_text(json.dumps(index, indent=2))
    return out


def write_audit_data(out: Path, *, size: int = 16, per_class: int = 6, seed: int = 0) -> Path:
    """Two domains of random ``size``² images, ``per_class`` members and non-members each."""
    rng = np.random.default_rng(seed)
    for domain, prompt in DOMAINS.items():
        folder = out / domain
        folder.mkdir(parents=True)
        (folder / "prompt.txt").write_text(prompt + "\n")
        for kind in ("members", "nonmembers"):
            (folder / kind).mkdir()
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / kind / f"{i}.png")
    return out
