"""Presets of the reference model: how big it is and how strongly it memorizes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from s2l_scan.errors import UsageError

LR_SCHEDULES = ("constant", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # = functional.diffusion's (no torch)


def _help(text: str) -> Any:
    return field(metadata={"help": text})


@dataclass(frozen=True)
class ReferencePreset:
    """One recipe for the reference model. Every field is a knob a study may sweep."""

    name: str = _help("preset name, recorded in the manifest")
    n_identities: int = _help("privacy domains (identity-0 … identity-N-1)")
    members_per_identity: int = _help("training images per identity (the member set)")
    nonmembers_per_identity: int = _help("held-out images per identity (never trained on)")
    duplicated_per_identity: int = _help("members per identity planted several times in training")
    duplication_factor: int = _help("copies of each planted member in the training set")
    n_public: int = _help("images of the disjoint public set the VAE is trained on")
    vae_channels: tuple[int, ...] = _help("VAE block_out_channels; n blocks → n-1 downsamplings")
    vae_steps: int = _help("VAE training steps")
    latent_channels: int = _help("VAE latent channels (SD 1.x: 4); more reconstruct pixels closer")
    vae_crop: int = _help("side of the random crops the (fully convolutional) VAE trains on")
    unet_channels: tuple[int, int] = _help("UNet block_out_channels (attention at the lower one)")
    unet_steps: int = _help("UNet training steps (memorization grows with steps)")
    text_hidden: int = _help("CLIP text encoder width (random, frozen)")
    norm_groups: int = _help("GroupNorm groups in VAE and UNet; must divide every width")
    batch_size: int = _help("training batch size")
    lr: float = _help("UNet AdamW learning rate (the peak, under a schedule)")
    lr_schedule: str = _help("UNet learning-rate schedule: 'constant', or 'cosine' (linear "
                             "warm-up over the first 5 % of steps, then cosine decay to 0)")
    vae_lr: float = _help("VAE AdamW learning rate")
    caption_dropout: float = _help("probability of training on the empty prompt (enables CFG)")
    image_size: int = _help("square image side in pixels")
    prediction_type: str = field(default="epsilon", metadata={"help": (
        "what the UNet learns to output: 'epsilon' (SD 1.x), 'v_prediction' (SD 2 at 768 px) "
        "or 'sample'; saved as the scheduler's prediction_type")})
    base_steps: int = field(default=0, metadata={"help": (
        "UNet steps of a base model trained first on base_per_identity public images of each "
        "identity (never members nor non-members); the released UNet is then this base "
        "fine-tuned on the members for unet_steps, and the base is saved beside it (base/), "
        "the reference model of a fine-tune release. 0: no base, the UNet trains from scratch")})
    base_per_identity: int = field(default=0, metadata={"help": (
        "public images per identity the base model trains on (with base_steps > 0)")})

    def __post_init__(self) -> None:
        positive = ("n_identities", "members_per_identity", "nonmembers_per_identity",
                    "duplication_factor", "n_public", "vae_steps", "unet_steps", "text_hidden",
                    "norm_groups", "batch_size", "image_size", "vae_crop", "latent_channels")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"reference preset {self.name!r}: {name} must be ≥ 1, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.duplicated_per_identity <= self.members_per_identity:
            raise UsageError(f"reference preset {self.name!r}: duplicated_per_identity must be in "
                             f"0…{self.members_per_identity}, got {self.duplicated_per_identity}")
        if self.vae_crop > self.image_size:
            raise UsageError(f"vae_crop {self.vae_crop} exceeds image_size {self.image_size}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"reference preset {self.name!r}: lr_schedule must be one of "
                             f"{', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise UsageError(f"reference preset {self.name!r}: prediction_type must be one of "
                             f"{', '.join(PREDICTION_TYPES)}, got {self.prediction_type!r}")
        if self.base_steps < 0 or self.base_per_identity < 0:
            raise UsageError(f"reference preset {self.name!r}: base_steps and base_per_identity "
                             f"must be ≥ 0, got {self.base_steps}, {self.base_per_identity}")
        if (self.base_steps > 0) != (self.base_per_identity > 0):
            raise UsageError(f"reference preset {self.name!r}: a base model needs both "
                             f"base_steps and base_per_identity > 0 (or both 0 for none), got "
                             f"{self.base_steps}, {self.base_per_identity}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise UsageError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        for width in (*self.vae_channels, *self.unet_channels, self.text_hidden):
            if width % self.norm_groups:
                raise UsageError(f"reference preset {self.name!r}: width {width} is not divisible "
                                 f"by norm_groups={self.norm_groups}")
        downsample = 2 ** (len(self.vae_channels) - 1) * 2 ** (len(self.unet_channels) - 1)
        if self.image_size % downsample:
            raise UsageError(f"image_size {self.image_size} must be divisible by {downsample}")

    def fingerprint(self) -> str:
        """Short hash of every field: the cache key's guarantee that knobs are honoured.

        A knob added after the first release (:data:`LATER_KNOBS`) enters the hash only away
        from its default, so the builds cached before it existed keep their keys.
        """
        fields = {name: value for name, value in dataclasses.asdict(self).items()
                  if name not in LATER_KNOBS or value != LATER_KNOBS[name]}
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def with_overrides(self, **overrides: Any) -> ReferencePreset:
        """Return a copy with some knobs changed, e.g. ``members_per_identity=8``."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown reference knob(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


LATER_KNOBS: dict[str, object] = {"prediction_type": "epsilon", "base_steps": 0,
                                  "base_per_identity": 0}
"""Knobs added after presets were first fingerprinted, with the value every older build had."""


PRESETS: dict[str, ReferencePreset] = {
    # A clear but unsaturated membership signal, and planted duplicates regenerated in pixel
    # space: 8 latent channels put the VAE's floor (RMS ≈ 0.05) under δ; each planted member is
    # half of its identity's training set (48 copies beside 47 other members), so it is drawn
    # ~50× as often as an ordinary member; and the UNet trains long enough on few enough
    # identities, its learning rate decayed to 0, that samples come out clean
    # (docs/findings.md, "Clean samples"). Builds in ~15 min on 1 busy core.
    "default": ReferencePreset(
        name="default", n_identities=4, members_per_identity=48, nonmembers_per_identity=48,
        duplicated_per_identity=1, duplication_factor=48, n_public=512,
        vae_channels=(16, 32), vae_steps=2000, latent_channels=8, vae_crop=16,
        unet_channels=(32, 64), unet_steps=1600,
        text_hidden=64, norm_groups=16, batch_size=32, lr=1e-3, lr_schedule="cosine",
        vae_lr=2e-3, caption_dropout=0.1, image_size=32,
    ),
    # Seconds: the same architecture family, shrunk, for tests.
    "tiny": ReferencePreset(
        name="tiny", n_identities=2, members_per_identity=6, nonmembers_per_identity=6,
        duplicated_per_identity=1, duplication_factor=3, n_public=16,
        vae_channels=(16, 32), vae_steps=15, latent_channels=4, vae_crop=16,
        unet_channels=(16, 32), unet_steps=15,
        text_hidden=32, norm_groups=8, batch_size=8, lr=1e-3, lr_schedule="constant",
        vae_lr=1e-3, caption_dropout=0.1, image_size=32,
    ),
    # A fine-tune release and its base, small enough for a busy CPU (minutes): a base UNet
    # trained on 32 public images per identity, then fine-tuned on the 32 members of each;
    # base/ is saved beside model/ (studies/calibration.py, --base-model reference).
    "finetune": ReferencePreset(
        name="finetune", n_identities=2, members_per_identity=32, nonmembers_per_identity=32,
        duplicated_per_identity=0, duplication_factor=1, n_public=64,
        vae_channels=(16, 32), vae_steps=150, latent_channels=4, vae_crop=16,
        unet_channels=(16, 32), unet_steps=250,
        text_hidden=32, norm_groups=8, batch_size=16, lr=1e-3, lr_schedule="cosine",
        vae_lr=1e-3, caption_dropout=0.1, image_size=32, base_steps=250, base_per_identity=32,
    ),
}


def coerce_knobs(knobs: list[tuple[str, str]]) -> dict[str, object]:
    """``[("unet_steps", "1000"), ("vae_channels", "32,64")]`` → typed preset overrides, the
    syntax of ``s2l-scan reference build --set KNOB=VALUE``."""
    types = {name: type(value) for name, value in vars(PRESETS["default"]).items()}
    coerced: dict[str, object] = {}
    for name, text in knobs:
        if name not in types:
            raise UsageError(f"--set {name}: unknown knob; known: {sorted(types)}")
        try:
            if types[name] is tuple:
                coerced[name] = tuple(int(part) for part in text.split(","))
            else:
                coerced[name] = types[name](text)
        except ValueError:
            raise UsageError(f"--set {name}={text}: expected {types[name].__name__}") from None
    return coerced


def get_preset(name: str) -> ReferencePreset:
    """Look a preset up by name, listing the known ones when it is not there."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown reference preset {name!r}; known: {sorted(PRESETS)}") from None
