"""What every attack is: a named scorer of (latents, conditioning) under one model.

Attacks live in ``baselines/`` and register themselves in :data:`ATTACKS`. The session hands
each one a :class:`Target` (the UNet bound to its noise schedule) and the encoded audit samples;
the attack returns one score per sample, higher = more likely member.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, ClassVar

import torch

from s2l_scan.conditioning import Conditioning, as_conditioning
from s2l_scan.errors import UsageError
from s2l_scan.functional.diffusion import Cond, EpsFn, eps_from_output
from s2l_scan.registry import Registry


@dataclass
class Target:
    """The model under attack, reduced to what the scores need.

    ``prediction_type`` is the scheduler's (``LoadedModel.prediction_type``): what the UNet's
    output means. It has no default, so that no caller can scan a v-prediction model as if it
    predicted ε by forgetting it.
    """

    unet: Any  # diffusers.UNet2DConditionModel
    alphas: torch.Tensor  # the scheduler's alphas_cumprod, float64 on the UNet's device
    batch_size: int = 32
    prediction_type: str = field(kw_only=True)
    # the empty prompt's conditioning (one row), for attacks that compare ε(x_t, c) with
    # ε(x_t, ∅) (Attack.needs_uncond); None where the caller has none
    uncond: Cond | None = field(default=None, kw_only=True)

    def eps_fn(self) -> EpsFn:
        """ε_θ(x, t, c) as a plain function: the UNet's output converted to ε (every attack,
        PIA's ε_θ(x₀, 0, c) and SecMI's DDIM steps included, calls the model through it).

        ``c`` is a :class:`~s2l_scan.conditioning.Conditioning` (a bare tensor is taken as SD
        hidden states); SDXL's pooled embeddings and time ids go in ``added_cond_kwargs``.
        """
        dtype = next(self.unet.parameters()).dtype
        alphas, kind = self.alphas, self.prediction_type
        config = getattr(self.unet, "config", None)  # None: a stand-in module in a test
        wants_added = config is not None and config.get("addition_embed_type") is not None

        def eps(x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
            conditioning = as_conditioning(cond)
            if wants_added and conditioning.pooled is None:
                raise ValueError("this UNet (SDXL) needs pooled text embeddings and time ids; "
                                 "encode captions with s2l_scan.conditioning.TextEncoders")
            out = self.unet(x.to(dtype), t, **conditioning.unet_kwargs(dtype)).sample
            return eps_from_output(out.float(), x.float(), alphas[t.to(alphas.device)], kind)

        return eps


class Attack(ABC):
    """A membership attack. Subclasses set ``name`` and implement :meth:`score_batch`."""

    name: ClassVar[str]
    needs_uncond: ClassVar[bool] = False
    """True: :meth:`score_batch_variants` is also given ``uncond``, the empty prompt's
    conditioning (:attr:`Target.uncond`)."""

    def perturbed_captions(self, captions: Sequence[str],
                           encode: Callable[[Sequence[str]], Conditioning]) -> list[list[str]]:
        """Perturbed copies of each sample's caption, one list per perturbation (CLiD's c*),
        or [] (most attacks). The stage encodes each list with the model's text encoders and
        hands the conditionings to :meth:`score_batch_variants` as ``perturbed``, in the same
        order; ``encode`` is those encoders (for perturbations that read the model)."""
        return []

    def describe(self) -> dict[str, Any]:
        """The attack's settings for the report (dataclass attacks return their fields)."""
        return asdict(self) if is_dataclass(self) else {}

    def check_timesteps(self, num_train_timesteps: int) -> None:
        """A usage error when a timestep setting lies outside the model's training timesteps.

        Settings named ``t``, ``t_sec`` and ``compared_t`` are one step each, ``timesteps`` a
        list of steps; an attack with other timestep settings overrides this."""
        for key, value in self.describe().items():
            if key not in ("t", "t_sec", "timesteps", "compared_t"):
                continue
            steps = list(value) if key == "timesteps" and isinstance(value, tuple | list) \
                else [value]
            if not steps or any(isinstance(s, bool) or not isinstance(s, int)
                                or not 0 <= s < num_train_timesteps for s in steps):
                raise UsageError(f"attack {self.name!r}: {key}={value} outside the model's "
                                 f"{num_train_timesteps} training timesteps")

    @abstractmethod
    def score_batch(self, eps_fn: EpsFn, x0: torch.Tensor, cond: Cond,
                    alphas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scores of one batch; ``index`` are the samples' positions in the full set."""

    def score_batch_variants(self, eps_fn: EpsFn, x0: torch.Tensor, cond: Cond,
                             alphas: torch.Tensor, index: torch.Tensor, *,
                             uncond: Cond | None = None) -> dict[str, torch.Tensor]:
        """The scores under key ``""``, plus diagnostic variants computed alongside (``uncond``
        is given to attacks with :attr:`needs_uncond` only). An attack whose
        :meth:`perturbed_captions` returns lists also takes ``perturbed``: the batch's rows of
        each list, encoded, in order.

        SecMI, for one, adds its neighbouring timesteps so the report can say when the
        attack is unstable across t.
        """
        return {"": self.score_batch(eps_fn, x0, cond, alphas, index)}

    def score(self, target: Target, x0: torch.Tensor, cond: Cond,
              perturbed: Sequence[Cond] = ()) -> dict[str, torch.Tensor]:
        """Scores of every sample (key ``""``) and variants, in batches of ``batch_size``
        (``perturbed``: every sample's perturbed conditionings, for attacks that perturb
        captions)."""
        eps_fn = target.eps_fn()
        alphas = target.alphas.float()
        out: dict[str, list[torch.Tensor]] = {}
        with torch.inference_mode():
            for start in range(0, len(x0), target.batch_size):
                stop = min(start + target.batch_size, len(x0))
                batch = self.score_batch_variants(eps_fn, x0[start:stop], cond[start:stop],
                                                  alphas, torch.arange(start, stop),
                                                  **uncond_of(self, target),
                                                  **perturbed_slice(perturbed, start, stop))
                for key, scores in batch.items():
                    out.setdefault(key, []).append(scores)
        return {key: torch.cat(parts) for key, parts in out.items()}


def perturbed_slice(perturbed: Sequence[Cond], start: int, stop: int
                    ) -> dict[str, list[Cond]]:
    """``{"perturbed": ...}``, each perturbed conditioning's rows ``start:stop``, for a batch of
    an attack that perturbs captions; {} when there are none."""
    return {"perturbed": [c[start:stop] for c in perturbed]} if perturbed else {}


def uncond_of(attack: Attack, target: Target) -> dict[str, Cond]:
    """``{"uncond": ...}`` for an attack that needs the empty prompt's conditioning, else {};
    a usage error when the target has none to give."""
    if not attack.needs_uncond:
        return {}
    if target.uncond is None:
        raise UsageError(f"attack {attack.name!r} compares conditional with unconditional "
                         "predictions, and this model has no empty-prompt conditioning")
    return {"uncond": target.uncond}


ATTACKS: Registry[type[Attack]] = Registry("attack", entry_point_group="s2l_scan.attacks")


def make_attack(name: str, options: dict[str, Any], *, seed: int) -> Attack:
    """The registered attack ``name`` built with the user's ``options``.

    An attack with a ``seed`` setting gets the scan's ``seed`` unless ``options`` set one (a
    ``seed`` of None also means "the scan's"), so ``--seed`` drives its noises too and
    :meth:`Attack.describe` reports the seed actually used. Whatever the attack raises for a
    bad option (TypeError, ValueError) is a usage error naming the attack.
    """
    cls = ATTACKS.get(name)
    settings = dict(options)
    if "seed" in inspect.signature(cls).parameters and settings.get("seed") is None:
        settings["seed"] = seed
    try:
        # an attack checks its own options in __init__ / describe(); whatever they raise for a
        # bad value (TypeError, ValueError) was caused by the user's options
        attack = cls(**settings)
        attack.describe()
    except (TypeError, ValueError) as error:
        raise UsageError(f"attack {name!r}: bad options {options} ({error})") from None
    return attack
