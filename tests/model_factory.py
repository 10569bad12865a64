"""Tiny Stable Diffusion 1.x / 2.x checkpoints in the layouts real releases ship, in seconds.

Every model is built from diffusers' and transformers' own classes with random weights (seeded),
then written the way a release is: a diffusers folder (SD-1.x with ``safety_checker: [null,
null]``, SD-2 v-prediction), an fp16-only variant, sharded weights, an fp16 sharded UNet beside
plain VAE and text-encoder weights, a full repository clone with unused ``.fp16`` and
``.non_ema`` extras, and the original single-file layout with its config folder. Adapters come
in every format people share: diffusers (``pytorch_lora_weights.safetensors``), peft
(``adapter_model.safetensors`` + ``adapter_config.json``, LoRA or LoHa), kohya
(``lora_unet_…``) and LyCORIS LoHa (``hada_w1_a``…) as bare files.

The models take 32 px images with a 4-channel latent, like the tiny reference, so its audit data
scans them. SDXL fixtures live in ``model_factory_sdxl.py``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from s2l_scan.reference.tokenizer import MAX_LENGTH, write_tokenizer

WORDS = ("a", "photo", "of", "identity", "0", "1", "2", "3")
SD1_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "clip_sample": False,
                "set_alpha_to_one": False, "steps_offset": 1}
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def components(folder: Path, *, seed: int = 0, prediction_type: str = "epsilon",
               vae_attention: bool = True, unet_channels: tuple[int, int] = (16, 32)
               ) -> dict[str, Any]:
    """The five components of a tiny SD pipeline; the tokenizer is written under ``folder``.

    ``vae_attention``: the VAE has SD's mid-block self-attention (the reference VAE has none).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = write_tokenizer(folder / "tokenizer-src", list(WORDS))
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer-src")
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32,
        mid_block_add_attention=vae_attention)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=unet_channels, layers_per_block=1, cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LENGTH, projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    scheduler = DDIMScheduler(**SD1_SCHEDULE, prediction_type=prediction_type)
    return {"vae": vae.eval(), "unet": unet.eval(), "text_encoder": text_encoder.eval(),
            "tokenizer": tokenizer, "scheduler": scheduler}


def _pipeline(parts: dict[str, Any]) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def _save(out: Path, seed: int = 0, prediction_type: str = "epsilon",
          vae_attention: bool = True, unet_channels: tuple[int, int] = (16, 32),
          **save: Any) -> Path:
    work = out.parent / f".{out.name}-work"
    pipeline = _pipeline(components(work, seed=seed, prediction_type=prediction_type,
                                    vae_attention=vae_attention, unet_channels=unet_channels))
    pipeline.save_pretrained(out, safe_serialization=True, **save)
    shutil.rmtree(work)
    return out


# --- base models, one function per release layout ---

def sd1_folder(out: Path, seed: int = 0) -> Path:
    """SD-1.x diffusers folder (epsilon, ``safety_checker: [null, null]``)."""
    return _save(out, seed)


def wide_sd1_folder(out: Path, seed: int = 0) -> Path:
    """An SD-1.x folder with wider UNet blocks: the same layer names, other shapes (the base an
    adapter of :func:`sd1_folder` does not fit)."""
    return _save(out, seed, unet_channels=(24, 48))


def sd2_v_folder(out: Path, seed: int = 0) -> Path:
    """SD-2 768-v style: the scheduler's prediction_type is v_prediction."""
    return _save(out, seed, prediction_type="v_prediction")


def fp16_folder(out: Path, seed: int = 0) -> Path:
    """Only ``*.fp16.safetensors`` weights (half precision), as the ``fp16`` branch ships."""
    work = out.parent / f".{out.name}-work"
    pipeline = _pipeline(components(work, seed=seed)).to(torch.float16)
    pipeline.save_pretrained(out, safe_serialization=True, variant="fp16")
    shutil.rmtree(work)
    return out


def sharded_folder(out: Path, seed: int = 0) -> Path:
    """Every weight component split into shards with an index (``-0000k-of-0000n``)."""
    return _save(out, seed, max_shard_size="100KB")


def sharded_fp16_beside_plain(out: Path, seed: int = 0) -> Path:
    """A sharded fp16 UNet (``diffusion_pytorch_model.fp16-0000k-of-0000n``) beside plain,
    unsharded VAE and text-encoder weights (the layout that crashed diffusers' variant guess)."""
    _save(out, seed)
    unet_dir = out / "unet"
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(unet_dir).to(torch.float16)
    (unet_dir / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(unet_dir, safe_serialization=True, variant="fp16",
                         max_shard_size="100KB")
    assert any("fp16-00001-of-" in p.name for p in unet_dir.iterdir())
    return out


def full_repo_clone(out: Path, seed: int = 0) -> Path:
    """The plain weights plus the extras a full clone of an SD-1.5 repository holds: an
    ``.fp16`` copy of each component, a ``.non_ema`` UNet, pickled ``.bin`` copies, original
    single-file checkpoints at the root and a safety checker, none of which a scan loads
    (different content, so hashing them would move the model hash)."""
    _save(out, seed)
    for name, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        state = load_file(out / name / f"{stem}.safetensors")
        save_file({k: v.half() for k, v in state.items()}, out / name / f"{stem}.fp16.safetensors")
        if name == "unet":
            save_file({k: v + 0.01 for k, v in state.items()},
                      out / name / f"{stem}.non_ema.safetensors")
        pickled = "pytorch_model" if name == "text_encoder" else stem
        torch.save(state, out / name / f"{pickled}.bin")  # the legacy pickled copies
    # the root's original-layout checkpoints and the safety checker a real clone has
    from s2l_scan.reference.single_file import export_single_file

    export_single_file(out, out / "v1-5-pruned-emaonly.safetensors")
    (out / "v1-5-pruned-emaonly.ckpt").write_bytes(b"a pickle never opened")
    (out / "safety_checker").mkdir()
    (out / "safety_checker" / "config.json").write_text("{}")
    (out / "safety_checker" / "model.safetensors").write_bytes(b"never opened")
    edit_json(out / "model_index.json", requires_safety_checker=True,
              safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
              feature_extractor=["transformers", "CLIPImageProcessor"])
    return out


def single_file_of(folder: Path, checkpoint: Path, config: Path) -> tuple[Path, Path]:
    """``folder`` (a diffusers SD folder) in the original (LDM) single-file layout: one
    ``checkpoint`` file plus ``config``, a weight-less copy of the folder for it."""
    from s2l_scan.reference.single_file import export_single_file

    export_single_file(folder, checkpoint)
    shutil.copytree(folder, config)
    for weights in config.rglob("*.safetensors"):
        weights.unlink()
    return checkpoint, config


def single_file(out: Path, seed: int = 0, vae_attention: bool = True) -> tuple[Path, Path]:
    """A tiny model in the original single-file layout: ``out/model.safetensors`` and
    ``out/config``. Returns (checkpoint, config folder)."""
    out.mkdir(parents=True)
    folder = _save(out / "folder", seed, vae_attention=vae_attention)
    single_file_of(folder, out / "model.safetensors", out / "config")
    shutil.rmtree(folder)
    return out / "model.safetensors", out / "config"


BASES: dict[str, Callable[[Path], Path]] = {
    "sd1": sd1_folder, "sd2-v": sd2_v_folder, "fp16": fp16_folder, "sharded": sharded_folder,
    "sharded-fp16-beside-plain": sharded_fp16_beside_plain, "full-repo-clone": full_repo_clone,
}
"""Folder layouts: name → builder(out)."""


# --- adapters ---

def _unet(model: Path) -> Any:
    from diffusers import UNet2DConditionModel

    if (model / "unet").is_dir():
        return UNet2DConditionModel.from_pretrained(model / "unet")
    raise ValueError(f"{model}: adapters are built on a diffusers folder")


def _randomise(module: Any, seed: int, names: tuple[str, ...]) -> None:
    """Non-zero adapter weights (peft initialises B, or w2, to zero: an identity adapter)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if any(part in name for part in names):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def peft_unet(model: Path, kind: str = "lora", seed: int = 0, rank: int = 2) -> Any:
    """The UNet of ``model`` with a random peft adapter (``lora`` or ``loha``) on attention."""
    from peft import LoHaConfig, LoraConfig, inject_adapter_in_model

    unet = _unet(model)
    config: Any = (LoraConfig(r=rank, lora_alpha=rank, target_modules=ATTENTION)
                   if kind == "lora" else
                   LoHaConfig(r=rank, alpha=rank, target_modules=ATTENTION))
    unet = inject_adapter_in_model(config, unet, adapter_name="default")
    _randomise(unet, seed, ("lora_", "hada_"))
    unet.peft_config = {"default": config}
    return unet


def _adapter_state(unet: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def diffusers_lora(model: Path, out: Path, seed: int = 0) -> Path:
    """A diffusers LoRA folder: ``out/pytorch_lora_weights.safetensors``."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline.save_lora_weights(
        out, unet_lora_layers=_adapter_state(peft_unet(model, seed=seed)),
        safe_serialization=True)
    return out


def diffusers_lora_file(model: Path, out: Path, seed: int = 0) -> Path:
    """The diffusers LoRA as one bare ``.safetensors`` file named ``out``."""
    folder = diffusers_lora(model, out.parent / f".{out.stem}-folder", seed)
    shutil.move(folder / "pytorch_lora_weights.safetensors", out)
    shutil.rmtree(folder)
    return out


def peft_adapter(model: Path, out: Path, kind: str = "lora", seed: int = 0) -> Path:
    """A peft adapter folder (``adapter_model.safetensors`` + ``adapter_config.json``), as
    ``PeftModel.save_pretrained`` writes it: keys ``base_model.model.<module>.lora_A.weight``."""
    unet = peft_unet(model, kind, seed)
    out.mkdir(parents=True)
    state = {f"base_model.model.{k}": v for k, v in _adapter_state(unet).items()}
    save_file(state, out / "adapter_model.safetensors")
    unet.peft_config["default"].save_pretrained(out)
    assert (out / "adapter_config.json").is_file()
    return out


def _kohya_name(module: str) -> str:
    return "lora_unet_" + module.replace(".", "_")


def kohya_lora_file(model: Path, out: Path, seed: int = 0, alpha: float = 2.0,
                    block_alphas: dict[str, float] | None = None) -> Path:
    """A kohya-ss (sd-scripts) LoRA as one bare file: ``lora_unet_<module>.lora_down.weight``,
    ``.lora_up.weight`` and ``.alpha`` (scale alpha / rank: 1 by default, like the others).
    ``block_alphas`` (block prefix → alpha) gives layers their own alphas, as sd-scripts'
    ``networks/lora.py`` ``block_alphas`` and ``resize_lora.py --dynamic_method`` write them."""
    state = _adapter_state(peft_unet(model, seed=seed))
    kohya: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, tail = key.rpartition(".lora_")
        part = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[tail]
        kohya[f"{_kohya_name(module)}.{part}"] = value
        own = next((a for block, a in (block_alphas or {}).items()
                    if module.startswith(block)), alpha)
        kohya[f"{_kohya_name(module)}.alpha"] = torch.tensor(float(own))
    save_file(kohya, out)
    return out


def lycoris_loha_file(model: Path, out: Path, seed: int = 0) -> Path:
    """A LyCORIS LoHa as one bare file in kohya naming: ``lora_unet_<module>.hada_w1_a`` ...
    (how LoHa files are shared; peft reads LoHa only as an adapter folder)."""
    state = _adapter_state(peft_unet(model, "loha", seed))
    loha: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, part = key.rpartition(".")
        loha[f"{_kohya_name(module)}.{part}"] = value
        loha[f"{_kohya_name(module)}.alpha"] = torch.tensor(2.0)
    save_file(loha, out)
    return out


ADAPTERS: dict[str, Callable[[Path, Path], Path]] = {
    "diffusers-folder": diffusers_lora,
    "diffusers-file": lambda model, out: diffusers_lora_file(model,
                                                             out.with_suffix(".safetensors")),
    "peft-lora": peft_adapter,
    "peft-loha": lambda model, out: peft_adapter(model, out, "loha"),
    "kohya-file": lambda model, out: kohya_lora_file(model, out.with_suffix(".safetensors")),
}
"""Adapter formats s2l-scan fuses: name → builder(base model folder, out) → path to pass."""


def edit_json(path: Path, **changes: Any) -> None:
    """Update keys of a JSON file in place."""
    body = json.loads(path.read_text())
    body.update(changes)
    path.write_text(json.dumps(body))


# --- layouts s2l-scan refuses by name (issue 28.6, 28.7) ---

def unet_variant(model: Path, **config: Any) -> Path:
    """``model`` with its UNet rebuilt from its own config changed by ``config`` and written by
    ``save_pretrained``: ``in_channels=9`` is an inpainting UNet (latents + mask + masked
    image), ``class_embed_type="projection"`` an unCLIP one (StableUnCLIPPipeline's UNet)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config({**dict(_unet(model).config), **config})
    shutil.rmtree(model / "unet")
    unet.save_pretrained(model / "unet", safe_serialization=True)
    return model


def hub_cache_repo(model: Path, cache: Path, repo_id: str = "org/tiny-sd") -> Path:
    """``model`` laid out as huggingface_hub's cache stores a download (``models--org--name``
    with ``blobs/<sha256>``, ``refs/main`` and ``snapshots/<commit>/…`` links into the blobs;
    the folder names from ``huggingface_hub.constants`` / ``repo_folder_name``); returns the
    repo folder."""
    import hashlib

    from huggingface_hub.file_download import _create_symlink, repo_folder_name

    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / commit / path.relative_to(model)
        link.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(link))
    return repo


def controlnet_folder(model: Path, out: Path) -> Path:
    """A ControlNet as ``ControlNetModel.from_unet(...).save_pretrained`` writes it
    (``config.json`` + weights, no ``model_index.json``)."""
    from diffusers import ControlNetModel

    ControlNetModel.from_unet(_unet(model)).save_pretrained(out, safe_serialization=True)
    return out


# --- textual-inversion releases (issue 28.8), each as its trainer saves it ---

def _learned(model: Path, count: int, seed: int, part: str = "text_encoder") -> torch.Tensor:
    from transformers import CLIPTextConfig

    width = CLIPTextConfig.from_pretrained(model / part).hidden_size
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


def diffusers_embedding(model: Path, out: Path, token: str = "<cat-toy>", seed: int = 0
                        ) -> Path:
    """diffusers ``examples/textual_inversion/textual_inversion.py`` ``save_progress``:
    ``{placeholder_token: embeds[min_id:max_id + 1]}`` in ``learned_embeds.safetensors``."""
    out.mkdir(parents=True, exist_ok=True)
    save_file({token: _learned(model, 1, seed)}, out / "learned_embeds.safetensors",
              metadata={"format": "pt"})
    return out / "learned_embeds.safetensors"


def kohya_embedding(model: Path, out: Path, count: int = 3, seed: int = 0) -> Path:
    """kohya-ss ``train_textual_inversion.py`` ``save_weights`` (A1111 reads the same file):
    ``{"emb_params": [count, dim]}``; the trigger token is the file's name."""
    save_file({"emb_params": _learned(model, count, seed)}, out)
    return out


def sdxl_embedding(model: Path, out: Path, count: int = 2, seed: int = 0) -> Path:
    """kohya-ss ``sdxl_train_textual_inversion.py`` ``save_weights``:
    ``{"clip_l": [count, 768-ish], "clip_g": [count, 1280-ish]}``."""
    save_file({"clip_l": _learned(model, count, seed),
               "clip_g": _learned(model, count, seed + 1, "text_encoder_2")}, out)
    return out
