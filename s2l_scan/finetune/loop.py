"""The one training loop every fine-tuning probe calls (README, probes).

DDPM MSE on ε, v or x₀ with t uniform over the scheduler's ``num_train_timesteps`` (the noise
schedule is the scheduler's own ``alphas_cumprod``), AdamW, gradient norm clipped to 1.0. One
seeded :class:`torch.Generator` draws every batch index, noise and timestep, so the same seed
gives the same weights. A method decides *what* trains (``params``); the loop decides *how*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from s2l_scan.conditioning import Conditioning, TextEncoders
from s2l_scan.errors import ScanError, UsageError
from s2l_scan.functional.diffusion import add_noise, training_target
from s2l_scan.probe import ModelCopy
from s2l_scan.progress import report

WEIGHT_DECAY = 1e-2
"""AdamW's decay, as in the reference model's own training (s2l_scan/reference/build.py)."""

GRAD_CLIP = 1.0
"""Maximum global gradient norm of the trained parameters."""

ParamGroups = Sequence[torch.Tensor] | Sequence[dict[str, Any]]
"""What ``torch.optim.AdamW`` accepts: tensors, or groups ``{"params": [...], "lr": ...}``."""


@dataclass(frozen=True)
class TrainConfig:
    """How the loop trains: budget, seed, prior-preservation weight and device."""

    steps: int
    """optimizer steps"""
    lr: float
    """AdamW learning rate (of the parameter groups that set none)"""
    batch_size: int
    """training images per step (and as many prior images when there is a prior set)"""
    seed: int = 0
    """seeds the one generator that draws every batch index, noise and timestep"""
    prior_weight: float = 1.0
    """weight of the prior-preservation term (DreamBooth's λ); unused without a prior set"""
    device: str = "cpu"
    """where the model copy lives and the loop runs (its trained tensors must be there)"""

    def __post_init__(self) -> None:
        check_budget("fine-tuning", self.steps, self.lr, self.batch_size)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UsageError(f"fine-tuning: seed must be an integer, got {self.seed!r}.")
        if isinstance(self.prior_weight, bool) or not isinstance(self.prior_weight, int | float) \
                or not self.prior_weight >= 0:
            raise UsageError(f"prior_weight must be ≥ 0, got {self.prior_weight!r}.")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise UsageError(f"fine-tuning: device {self.device!r} is not a torch device "
                             "(e.g. 'cpu', 'cuda', 'cuda:1', 'mps').") from error


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare to one bool
class TrainingData:
    """What the loop trains on: clean latents, one caption each, and an optional prior set."""

    latents: torch.Tensor
    """(N, C, h, w) clean latents: VAE mean × scaling factor"""
    captions: Sequence[str]
    """one caption per latent"""
    prior: tuple[torch.Tensor, str] | None = None
    """(prior latents, their class prompt): adds DreamBooth's prior-preservation term"""

    def __post_init__(self) -> None:
        latents, captions, prior = self.latents, self.captions, self.prior
        if latents.ndim != 4 or len(latents) == 0:
            raise UsageError(f"fine-tuning needs a non-empty SP set of (N, C, h, w) latents, got "
                             f"shape {tuple(latents.shape)}; generate the SP set first "
                             "(sp_samples ≥ 1).")
        if isinstance(captions, str) or len(captions) != len(latents):
            raise UsageError(f"fine-tuning needs one caption per latent: {len(latents)} latents, "
                             f"got {1 if isinstance(captions, str) else len(captions)} captions.")
        if prior is not None and (prior[0].ndim != 4 or len(prior[0]) == 0
                                  or prior[0].shape[1:] != latents.shape[1:]):
            raise UsageError(f"the prior-preservation set must be non-empty latents shaped like "
                             f"the SP set {tuple(latents.shape[1:])}, got {tuple(prior[0].shape)}.")
        object.__setattr__(self, "captions", tuple(captions))  # frozen: no list to mutate later

    @classmethod
    def captioned(cls, latents: torch.Tensor, caption: str,
                  prior: tuple[torch.Tensor, str] | None = None) -> TrainingData:
        """``latents`` all captioned ``caption`` (the SP set and its domain prompt)."""
        return cls(latents, [caption] * len(latents), prior)


def train(model: ModelCopy, data: TrainingData, params: ParamGroups, config: TrainConfig, *,
          after_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``params`` (tensors of ``model.unet`` and its text encoders); return the losses.

    The UNet is conditioned as its family's pipeline conditions it (SDXL: both text encoders,
    pooled embeddings, and the time ids of the latents' image size).

    ``data.prior`` adds DreamBooth's prior-preservation term, weighted by
    ``config.prior_weight``. ``after_step`` runs after every optimizer step (textual inversion
    restores its frozen embedding rows there). Only ``params`` require grad while training;
    afterwards both modules are back in ``eval()`` with ``requires_grad_(False)``. Each step
    is told to the scan's progress (:func:`s2l_scan.progress.report`).

    Returns ``{"losses": [...], "first_loss": ..., "final_loss": ...}`` where ``final_loss`` is
    the mean of the last tenth of the steps (one step's loss is too noisy to report).

    Example (full UNet fine-tuning on an SP set)::

        copy = ModelCopy.of(pipe)
        report = train(copy, TrainingData.captioned(latents, "a photo"),
                       list(copy.unet.parameters()),
                       TrainConfig(steps=100, lr=1e-4, batch_size=8, seed=0))
    """
    unet, encoders = model.unet, TextEncoders.of(model)
    latents, captions, prior = data.latents, data.captions, data.prior
    steps, lr, batch_size = config.steps, config.lr, config.batch_size
    tensors = _check(params)
    device = torch.device(config.device)
    _check_device(tensors, device)
    trains = [_owns(encoder, tensors) for encoder in encoders.encoders]
    text_trains = any(trains)
    all_captions = [*captions, *([prior[1]] if prior is not None else [])]
    ids, caption_row = _tokenize(encoders, all_captions, device)
    scale = 2 ** (len(model.vae.config.block_out_channels) - 1)
    size = (int(latents.shape[-2]) * scale, int(latents.shape[-1]) * scale)
    prior_row = caption_row[len(latents):].expand(len(prior[0]) if prior is not None else 0)
    alphas = model.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    timesteps = int(model.scheduler.config.num_train_timesteps)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    dtype = next(unet.parameters()).dtype

    unet.requires_grad_(False)
    for encoder in encoders.encoders:
        encoder.requires_grad_(False)
    for tensor in tensors:
        tensor.requires_grad_(True)
    unet.train(_owns(unet, tensors))
    for encoder, mode in zip(encoders.encoders, trains, strict=True):
        encoder.train(mode)
    losses: list[float] = []
    report("fine-tuning (steps)", 0, steps)
    try:
        table = None if text_trains else encoders.encode_ids(ids, size, grad=False)
        for step in range(steps):
            rows, x0 = _batch(latents, caption_row[:len(latents)], batch_size, generator)
            if prior is not None:
                prior_rows, prior_x0 = _batch(prior[0], prior_row, batch_size, generator)
                rows, x0 = torch.cat([rows, prior_rows]), torch.cat([x0, prior_x0])
            x0 = x0.to(device=device, dtype=torch.float32)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.randint(0, timesteps, (len(x0),), generator=generator).to(device)
            cond = _conditioning(encoders, ids, rows, table, size)
            pred = unet(add_noise(x0, noise, alphas[t]).to(dtype), t,
                        **cond.unet_kwargs(dtype)).sample.float()
            error = ((pred - training_target(model.scheduler.config.prediction_type, x0, noise,
                                             alphas[t])) ** 2).flatten(1).mean(1)
            loss = error[:batch_size].mean()
            if prior is not None:
                loss = loss + config.prior_weight * error[batch_size:].mean()
            if not bool(torch.isfinite(loss)):
                raise ScanError(f"fine-tuning diverged: loss is {loss.item()} at step {step + 1}"
                                f" of {steps} (lr={lr}); lower the probe's lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tensors, GRAD_CLIP)
            optimizer.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step()
            losses.append(float(loss.item()))
            report("fine-tuning (steps)", step + 1, steps)
    finally:
        unet.eval().requires_grad_(False)
        for encoder in encoders.encoders:
            encoder.eval().requires_grad_(False)
    tail = losses[-max(1, steps // 10):]
    return {"losses": losses, "first_loss": losses[0], "final_loss": sum(tail) / len(tail)}


def count_parameters(params: ParamGroups) -> int:
    """Number of scalars in ``params`` (tensors or AdamW groups), each tensor counted once."""
    return sum(tensor.numel() for tensor in _tensors(params))


def check_budget(who: str, steps: object, lr: object, batch_size: object) -> None:
    """UsageError unless steps and batch_size are integers ≥ 1 and lr is a number > 0.

    Probes call it in ``__post_init__`` so a bad option fails before any model is loaded.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{who}: {name} must be an integer ≥ 1, got {value!r}.")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise UsageError(f"{who}: lr must be a number > 0, got {lr!r}.")


def _tensors(params: ParamGroups) -> list[torch.Tensor]:
    found: dict[int, torch.Tensor] = {}
    for item in params:
        group = item["params"] if isinstance(item, dict) else [item]
        for tensor in group:
            found.setdefault(id(tensor), tensor)
    return list(found.values())


def _check(params: ParamGroups) -> list[torch.Tensor]:
    tensors = _tensors(params)
    if sum(t.numel() for t in tensors) == 0:
        raise UsageError("fine-tuning was given no trainable parameters; the method must pass "
                         "the tensors it trains.")
    for tensor in tensors:
        if tensor.dtype == torch.float16:
            raise UsageError("fine-tuning float16 weights with AdamW is unstable; load the "
                             "model in float32 (or bfloat16) to run fine-tuning probes.")
    return tensors


def _check_device(tensors: list[torch.Tensor], device: torch.device) -> None:
    for tensor in tensors:
        if tensor.device.type != device.type:
            raise UsageError(f"fine-tuning on {device} but a trained tensor lives on "
                             f"{tensor.device}; load the model on the scan's device.")


def _owns(module: Any, tensors: list[torch.Tensor]) -> bool:
    mine = {id(p) for p in module.parameters()}
    return any(id(t) in mine for t in tensors)


def _tokenize(encoders: TextEncoders, captions: list[str], device: torch.device
              ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Unique token ids per tokenizer (padded to model_max_length) and each caption's row
    among them."""
    unique = sorted(set(captions))
    position = {caption: row for row, caption in enumerate(unique)}
    return encoders.tokenize(unique, device), torch.tensor([position[c] for c in captions])


def _conditioning(encoders: TextEncoders, ids: tuple[torch.Tensor, ...], rows: torch.Tensor,
                  table: Conditioning | None, size: tuple[int, int]) -> Conditioning:
    if table is not None:  # frozen text encoders: encoded once, before the first step
        return table[rows]
    # A text encoder trains: encode this step's distinct captions only, with gradients.
    needed, inverse = torch.unique(rows, return_inverse=True)
    step_ids = [tokens[needed.to(tokens.device)] for tokens in ids]
    return encoders.encode_ids(step_ids, size, grad=True)[inverse]


def _batch(latents: torch.Tensor, caption_row: torch.Tensor, batch_size: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.randint(len(latents), (batch_size,), generator=generator)
    return caption_row[index], latents[index.to(latents.device)]
