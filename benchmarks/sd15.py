"""SD-1.5-sized benchmark (issue 18): s2l-scan's forwards against a bare diffusers loop, peak
memory, and the projected time of the default scan at that size.

    python -m benchmarks.sd15 forwards [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                       [--steps 2] [--json FILE]
    python -m benchmarks.sd15 count [--json FILE]
    python -m benchmarks.sd15 flops [--json FILE]

``forwards`` builds an SD-1.5-sized pipeline with random weights from the real configurations
(860M-parameter UNet on 64×64 latents, CLIP-L text encoder, the SD VAE at 512 px; the tokenizer
is the reference model's CLIP BPE tokenizer) and generates one image twice with the same
sampler (DPM-Solver++, ``--steps`` steps, guidance 7, so 2 samples per UNet forward): once as a
bare diffusers loop (text encoder, UNet + scheduler step, VAE decode, written out by hand) and
once through :func:`s2l_scan.generation.generate_images`. Hooks time each module's forwards in
both, so each stage's ratio (s2l-scan / bare) is measured in one process under the same load.
On CPU this is the reduced form (``--steps 2``, batch 1); on a GPU give ``--device cuda --dtype
float16`` and more steps.

``count`` runs the default scan of the default reference model (cache off, one thread) with a
hook that counts sample-forwards through the UNet, split into generation, training (grad on)
and the rest (attack scoring), and times it: the scan's work in forwards, which ``forwards``
turns into a projection at SD-1.5 size (a training forward counted as 3: forward + backward).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TRAINING_WEIGHT = 3  # forward + backward ≈ 3 forwards


def _sd15_modules() -> tuple[Any, Any, Any]:
    """SD-1.5's UNet, CLIP-L text encoder and VAE with random weights, from the real configs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # SD-1.5's unet/config.json
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    text_encoder = CLIPTextModel(CLIPTextConfig(  # CLIP ViT-L/14's text tower
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=768))
    vae = AutoencoderKL(  # SD's vae/config.json
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    return unet, text_encoder, vae


def _sd15_pipeline(device: str, dtype: torch.dtype) -> Any:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from s2l_scan.reference.cache import cache_key, cache_root
    from s2l_scan.reference.presets import get_preset

    unet, text_encoder, vae = _sd15_modules()
    reference = cache_root() / "reference" / cache_key(get_preset("default"), 0) / "model"
    tokenizer = CLIPTokenizer.from_pretrained(reference / "tokenizer")
    scheduler = DPMSolverMultistepScheduler(  # SD's noise schedule
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


class _Timer:
    """Seconds inside each hooked module's forwards (outermost calls)."""

    def __init__(self, modules: dict[str, torch.nn.Module], device: str) -> None:
        self.seconds = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        self._sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for name, module in modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self._sync()
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self._sync()
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def take(self) -> dict[str, float]:
        taken, self.seconds = self.seconds, dict.fromkeys(self.seconds, 0.0)
        return taken


def _bare(pipe: Any, prompt: str, steps: int, guidance: float, seed: int) -> None:
    """One image, written out as a bare diffusers loop: the forwards generate_images makes."""
    device, dtype = pipe.unet.device, pipe.unet.dtype
    with torch.inference_mode():
        ids = pipe.tokenizer([prompt, ""], padding="max_length", max_length=77,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        cond, uncond = pipe.text_encoder(ids)[0].chunk(2)
        text = torch.cat([uncond, cond])
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        generator = torch.Generator(device=device).manual_seed(seed)
        latents = torch.randn((1, 4, 64, 64), generator=generator, device=device, dtype=dtype)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            noise = pipe.unet(x, t, encoder_hidden_states=text).sample
            uncond_noise, cond_noise = noise.chunk(2)
            noise = uncond_noise + guidance * (cond_noise - uncond_noise)
            latents = scheduler.step(noise, t, latents).prev_sample
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.float().cpu()


def _peak_memory(device: str) -> dict[str, float]:
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    peak = {"peak_rss_gib": round(rss_gib, 2)}
    if device.startswith("cuda"):
        peak["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return peak


def forwards(args: argparse.Namespace) -> dict[str, Any]:
    from s2l_scan.generation import SamplerSettings, generate_images

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    pipe = _sd15_pipeline(args.device, dtype)
    build_s = time.perf_counter() - start
    sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
             for name in ("unet", "text_encoder", "vae")}
    # the pipeline calls vae.decode, not vae.forward: time its decoder module
    timer = _Timer({"unet": pipe.unet, "text_encoder": pipe.text_encoder,
                    "vae": pipe.vae.decoder}, args.device)
    prompt = "a photo of an astronaut riding a horse"
    settings = SamplerSettings(sampler="dpmsolver++", steps=args.steps, guidance=7.0,
                               batch_size=1)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "s2l": []}
    for _ in range(args.repeats):  # interleaved: both see the same load
        for kind in ("bare", "s2l"):
            clock = time.perf_counter()
            if kind == "bare":
                _bare(pipe, prompt, args.steps, 7.0, seed=0)
            else:
                generate_images(pipe, prompt, 1, seed=0, key="bench", settings=settings)
            wall = time.perf_counter() - clock
            runs[kind].append({**timer.take(), "wall": wall})
            print(kind, json.dumps(runs[kind][-1]), flush=True)

    def best(kind: str, part: str) -> float:
        return min(run[part] for run in runs[kind])

    parts = ("text_encoder", "unet", "vae", "wall")
    per_sample_forward = best("bare", "unet") / (2 * args.steps)
    return {"device": args.device, "dtype": args.dtype, "threads": args.threads,
            "steps": args.steps, "repeats": args.repeats, "parameters": sizes,
            "build_seconds": round(build_s, 1),
            "bare_seconds": {p: round(best("bare", p), 3) for p in parts},
            "s2l_seconds": {p: round(best("s2l", p), 3) for p in parts},
            "ratio_s2l_to_bare": {p: round(best("s2l", p) / best("bare", p), 3)
                                  if best("bare", p) > 0 else None for p in parts},
            "seconds_per_sample_forward": round(per_sample_forward, 4),
            **_peak_memory(args.device), "load": os.getloadavg()[0]}


def count(args: argparse.Namespace) -> dict[str, Any]:
    import diffusers

    import s2l_scan.generation as generation
    from s2l_scan.config import make_config
    from s2l_scan.session import ScanInputs, run_scan

    counts = {"generation": 0, "training": 0, "other": 0}
    state = {"generating": False}
    unet_forward = diffusers.UNet2DConditionModel.forward

    def counted(self: Any, sample: torch.Tensor, *a: Any, **k: Any) -> Any:
        kind = ("generation" if state["generating"] else
                "training" if torch.is_grad_enabled() else "other")
        counts[kind] += int(sample.shape[0])
        return unet_forward(self, sample, *a, **k)

    real_generate = generation._generate

    def generating(*a: Any, **k: Any) -> Any:
        state["generating"] = True
        try:
            return real_generate(*a, **k)
        finally:
            state["generating"] = False

    diffusers.UNet2DConditionModel.forward = counted  # type: ignore[method-assign]
    generation._generate = generating  # type: ignore[assignment]
    start = time.perf_counter()
    report = run_scan(ScanInputs(model="reference"), make_config(cache="off", threads=1))
    seconds = time.perf_counter() - start
    return {"scan_seconds": round(seconds, 1), "sample_forwards": counts,
            "weighted_forwards": counts["generation"] + counts["other"]
            + TRAINING_WEIGHT * counts["training"],
            "sampling": report.model["sampling"], "load": os.getloadavg()[0]}


def flops(args: argparse.Namespace) -> dict[str, Any]:
    """FLOPs of one UNet sample-forward (64×64 latents, 77 text tokens) and of one 512-px VAE
    decode at SD-1.5 size, counted by torch's FlopCounterMode (matmuls and convolutions, a
    multiply-add as 2), on the CPU: the work a GPU projection divides by a card's throughput."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(args.threads)
    unet, _, vae = _sd15_modules()
    latents = torch.randn(1, 4, 64, 64)
    text = torch.randn(1, 77, 768)
    counted: dict[str, int] = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as unet_mode:
            unet(latents, 500, encoder_hidden_states=text)
        counted["unet_sample_forward"] = int(unet_mode.get_total_flops())
        with FlopCounterMode(display=False) as vae_mode:
            vae.decode(latents)
        counted["vae_decode_512px"] = int(vae_mode.get_total_flops())
    return {"flops": counted, "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fwd = sub.add_parser("forwards")
    fwd.add_argument("--device", default="cpu")
    fwd.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    fwd.add_argument("--steps", type=int, default=2)
    fwd.add_argument("--repeats", type=int, default=1)
    fwd.add_argument("--threads", type=int, default=1)
    fwd.add_argument("--json", type=Path)
    cnt = sub.add_parser("count")
    cnt.add_argument("--json", type=Path)
    flp = sub.add_parser("flops")
    flp.add_argument("--threads", type=int, default=1)
    flp.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    commands = {"forwards": forwards, "count": count, "flops": flops}
    result = commands[args.command](args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
