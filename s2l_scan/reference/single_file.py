"""Export a diffusers SD folder to the original single-file (LDM) layout.

Real users often hold a ``model.safetensors`` in the original Stable Diffusion key layout
plus a config folder; s2l-scan loads that form with diffusers' ``from_single_file``. To test
that path offline, this module writes the reference model in the same layout. The renaming
rules are the inverse of diffusers' own single-file conversion, and the tests check the round
trip through diffusers exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                "conv_shortcut": "skip_connection"}


def _unet_key(key: str, layers: int, attention_up: set[int]) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top: dict[str, str] = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]  # type: ignore[index]  # diffusers: dict[str, object]
    if key in top:
        return top[key]
    head, _, rest = key.partition(".")
    for old, new in _UNET_RESNET.items():
        if ".resnets." in key:
            rest = re.sub(rf"(^|\.){old}\.", rf"\g<1>{new}.", rest)
    if head == "down_blocks":
        block, kind, index, tail = rest.split(".", 3)
        if kind == "downsamplers":
            return f"input_blocks.{(int(block) + 1) * (layers + 1)}.0.op.{tail.split('.', 1)[1]}"
        slot = 0 if kind == "resnets" else 1
        return f"input_blocks.{1 + int(block) * (layers + 1) + int(index)}.{slot}.{tail}"
    if head == "mid_block":
        kind, index, tail = rest.split(".", 2)
        slot = 1 if kind == "attentions" else 2 * int(index)
        return f"middle_block.{slot}.{tail}"
    if head == "up_blocks":
        block, kind, index, tail = rest.split(".", 3)
        if kind == "upsamplers":
            slot = 2 if int(block) in attention_up else 1
            return f"output_blocks.{int(block) * (layers + 1) + layers}.{slot}.{tail}"
        slot = 0 if kind == "resnets" else 1
        return f"output_blocks.{int(block) * (layers + 1) + int(index)}.{slot}.{tail}"
    raise ValueError(f"no single-file name for UNet weight {key!r}")


# diffusers' VAE mid-block attention layer → the original's (1×1 convolutions, not linears)
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                  "to_out.0": "proj_out"}


def _vae_key(key: str, n_blocks: int) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top: dict[str, str] = DIFFUSERS_TO_LDM_MAPPING["vae"]  # type: ignore[assignment]  # diffusers: dict[str, object]
    if key in top:
        return top[key]
    key = key.replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m[1]) + 1}", key)
    if "mid_block.attentions.0." in key:
        head, _, tail = key.partition("mid_block.attentions.0.")
        layer, _, kind = tail.rpartition(".")
        return f"{head}mid.attn_1.{_VAE_ATTENTION[layer]}.{kind}"
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets", r"encoder.down.\1.block", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample",
                 key)

    def up(match: re.Match[str]) -> str:
        return f"decoder.up.{n_blocks - 1 - int(match[1])}.{match[2]}"

    key = re.sub(r"decoder\.up_blocks\.(\d+)\.(resnets)",
                 lambda m: up(m).replace("resnets", "block"), key)
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.(upsamplers\.0)",
                 lambda m: up(m).replace("upsamplers.0", "upsample"), key)
    return key


def export_single_file(model_dir: Path, out_file: Path) -> Path:
    """Write ``model_dir`` (a diffusers SD folder) as one original-layout safetensors file."""
    import json

    unet_config = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((model_dir / "vae" / "config.json").read_text())
    layers = int(unet_config["layers_per_block"])
    attention_up = {i for i, kind in enumerate(unet_config["up_block_types"])
                    if "CrossAttn" in kind}
    state: dict[str, torch.Tensor] = {}
    for key, value in load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors").items():
        state[UNET_PREFIX + _unet_key(key, layers, attention_up)] = value
    n_blocks = len(vae_config["block_out_channels"])
    for key, value in load_file(model_dir / "vae" / "diffusion_pytorch_model.safetensors").items():
        name = _vae_key(key, n_blocks)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original's q, k, v, proj_out are 1×1 convs
        state[VAE_PREFIX + name] = value
    for key, value in load_file(model_dir / "text_encoder" / "model.safetensors").items():
        # transformers 5 saves CLIPTextModel without the ``text_model.`` level the LDM layout has
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        state[CLIP_PREFIX + name] = value
    if out_file.exists():
        raise FileExistsError(f"{out_file} exists; s2l-scan never overwrites files")
    save_file({k: v.contiguous() for k, v in state.items()}, out_file)
    return out_file
