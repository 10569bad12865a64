"""Stage 2: every attack on the released model, per domain and pooled → result rows.

Each (attack, sample set) is one unit of the store; only the missing units are scored, in
batches shared across domains (and across processes in a data-parallel scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from s2l_scan.attack import Attack, Target
from s2l_scan.conditioning import Conditioning, TextEncoders, as_conditioning
from s2l_scan.config import ScanConfig
from s2l_scan.io.model import LoadedModel
from s2l_scan.report.model import ResultRow
from s2l_scan.scoring import SampleSet, Scores, score_sets
from s2l_scan.stages.encode import Subject, image_size, null_conditioning, perturbed_conditionings
from s2l_scan.stages.rows import result_row
from s2l_scan.stages.runtime import Runtime
from s2l_scan.units import Arrays, digest, unit_key


def alphas(model: LoadedModel) -> torch.Tensor:
    """The scheduler's ᾱ_t, float64 on the UNet's device."""
    return model.pipeline.scheduler.alphas_cumprod.to(torch.float64).to(model.pipeline.unet.device)


@dataclass(frozen=True)
class Calibration:
    """The base model's scores of one scan (``--base-model``): the probes subtract them from
    their copies' scores for their ``NAME+base`` rows, as the baselines do from the released
    model's. ``scores[(attack, domain)]`` are the base's (members, nonmembers) candidates on
    that domain's samples; ``settings`` the ``calibration`` block every calibrated row
    carries."""

    scores: dict[tuple[str, str], tuple[Scores, Scores]]
    settings: dict[str, str]

    def subtract(self, attack: str, domain: str, members: Scores, nonmembers: Scores
                 ) -> tuple[Scores, Scores]:
        """``members`` and ``nonmembers`` (every candidate) minus the base's, sample by sample."""
        base_members, base_nonmembers = self.scores[(attack, domain)]
        return ({key: members[key] - base_members[key] for key in members},
                {key: nonmembers[key] - base_nonmembers[key] for key in nonmembers})


def run_baselines(subject: Subject, attacks: Sequence[Attack], config: ScanConfig,
                  runtime: Runtime | None = None, *,
                  base: LoadedModel | None = None) -> list[ResultRow]:
    """Baseline rows: every attack on every domain's members and non-members, and ``pooled``
    when there are several domains (rank 0 gets the rows; other ranks an empty list). Without
    ``runtime`` every score is computed, in this process alone.

    With a ``base`` model (the checkpoint the release was fine-tuned from) every attack also
    gets a calibrated row, ``NAME+base`` (reference-model calibration: Carlini et al. 2022,
    Watson et al. 2022): its score on the released model minus its score on the base, each
    candidate (variant) alike, from the same latents, conditioning, seeded noises and
    timesteps. Each model's scores are their own units (keyed on that model's hash and the
    samples), so the calibrated score rests on both models."""
    return run_calibrated_baselines(subject, attacks, config, runtime, base=base)[0]


def run_calibrated_baselines(subject: Subject, attacks: Sequence[Attack], config: ScanConfig,
                             runtime: Runtime | None = None, *,
                             base: LoadedModel | None = None
                             ) -> tuple[list[ResultRow], Calibration | None]:
    """:func:`run_baselines`' rows, and with a ``base`` the base's scores (:class:`Calibration`,
    on rank 0; None without a base and on other ranks), so that the probes calibrate their
    copies on the same base scores."""
    runtime = Runtime() if runtime is None else runtime
    model, encoded = subject.model, subject.encoded
    # the released model's own empty prompt (and perturbed captions), for both models: the
    # same inputs through both
    size = image_size(next(iter(encoded.values())).member_pixels)
    encoders = TextEncoders.of(model.pipeline)
    sets = [SampleSet(latents, cond, perturbed_conditionings(attacks, encoders, captions, size))
            for enc in encoded.values()
            for latents, cond, captions in (
                (enc.members, enc.member_cond, enc.member_captions),
                (enc.nonmembers, enc.nonmember_cond, enc.nonmember_captions))]
    uncond = (null_conditioning(encoders, size)
              if any(a.needs_uncond for a in attacks) else None)
    scored = _model_scores(model, attacks, sets, config, runtime, uncond)
    base_scored = None if base is None else _model_scores(base, attacks, sets, config, runtime,
                                                          uncond)
    if scored is None:
        return [], None
    rows = _rows(subject, attacks, scored, config)
    if base is None or base_scored is None:
        return rows, None
    calibration = Calibration(
        {(attack.name, name): (per_set[2 * i], per_set[2 * i + 1])
         for attack, per_set in zip(attacks, base_scored, strict=True)
         for i, name in enumerate(encoded)},
        {"base_model": base.source, "base_model_hash": base.model_hash,
         "score": "attack score on the model − the same score on the base model"})
    difference = [[calibration.subtract(attack.name, name, *per_set[2 * i:2 * i + 2])[half]
                   for i, name in enumerate(encoded) for half in (0, 1)]
                  for attack, per_set in zip(attacks, scored, strict=True)]
    rows += _rows(subject, attacks, difference, config, calibration=calibration.settings)
    return rows, calibration


def _model_scores(model: LoadedModel, attacks: Sequence[Attack], sets: list[SampleSet],
                  config: ScanConfig, runtime: Runtime, uncond: Conditioning | None
                  ) -> list[list[Scores]] | None:
    target = Target(model.pipeline.unet, alphas(model), config.batch_size,
                    prediction_type=model.prediction_type, uncond=uncond)
    return _stored_scores(model, list(attacks), target, sets, config, runtime)


def _rows(subject: Subject, attacks: Sequence[Attack], scored: list[list[Scores]],
          config: ScanConfig, calibration: dict[str, str] | None = None) -> list[ResultRow]:
    encoded = subject.encoded
    rows: list[ResultRow] = []
    for attack, per_set in zip(attacks, scored, strict=True):
        # score sets by key: "" is the attack's score, other keys its diagnostic variants
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for i, name in enumerate(encoded):
            members, nonmembers = per_set[2 * i], per_set[2 * i + 1]
            rows.append(result_row(attack, name, members, nonmembers, subject.blind[name],
                                   config, calibration=calibration))
            for key in members:
                pooled.setdefault(key, ([], []))
                pooled[key][0].append(members[key])
                pooled[key][1].append(nonmembers[key])
        if len(encoded) > 1:
            rows.append(result_row(attack, "pooled",
                                   {k: np.concatenate(v[0]) for k, v in pooled.items()},
                                   {k: np.concatenate(v[1]) for k, v in pooled.items()},
                                   subject.blind["pooled"], config, calibration=calibration))
    return rows


def _scores_key(model: LoadedModel, attack: Attack, samples: str, config: ScanConfig,
                uncond: str | None = None) -> str:
    """Unit key of an attack's scores (and variants) on one sample set, whatever other sets or
    processes shared its batches. Batch size, thread count, device kind and dtype are in the
    key: they move scores in the last digits. An attack that reads the empty prompt's
    conditioning keys on it too (``uncond``, its digest)."""
    extra = {"uncond": uncond} if attack.needs_uncond else {}
    return unit_key("scores", model=model.model_hash, attack=attack.name,
                    settings=attack.describe(), samples=samples, batch_size=config.batch_size,
                    threads=config.threads, **model.platform, **extra)


def _stored_scores(model: LoadedModel, attacks: list[Attack], target: Target,
                   sets: list[SampleSet], config: ScanConfig, runtime: Runtime
                   ) -> list[list[Scores]] | None:
    """:func:`~s2l_scan.scoring.score_sets` through the unit store: each (attack, sample set)
    is one unit, and only the units missing from the store are scored, in shared batches."""
    # SD: the digest of the hidden states alone, as before conditioning had a type
    samples = [digest(s.latents, *as_conditioning(s.cond).tensors()) for s in sets]
    uncond = (None if target.uncond is None
              else digest(*as_conditioning(target.uncond).tensors()))
    keys = [_scores_key(model, attack, _with_perturbed(sample, s, attack.name), config, uncond)
            for attack in attacks for sample, s in zip(samples, sets, strict=True)]
    units = runtime.shared_units("scores", keys, lambda missing: _score_missing(
        attacks, target, sets, missing, runtime))
    if units is None:
        return None
    # "v_" + variant key: "" (the attack's score) is no name for an array in a .npz file
    return [[{k.removeprefix("v_"): v for k, v in units[a * len(sets) + s].items()}
             for s in range(len(sets))] for a in range(len(attacks))]


def _with_perturbed(sample: str, samples: SampleSet, attack: str) -> str:
    """``sample`` (a sample set's digest), extended by ``attack``'s perturbed conditionings
    when it perturbs captions; the keys of other attacks stay as they were."""
    if attack not in samples.perturbed:
        return sample
    return digest(sample, *(tensor for c in samples.perturbed[attack] for tensor in c.tensors()))


def _score_missing(attacks: list[Attack], target: Target, sets: list[SampleSet],
                   missing: list[int], runtime: Runtime) -> list[Arrays] | None:
    """The units at positions ``attack · len(sets) + set`` in ``missing``.

    Each attack that misses any set is scored on every set, in the batches of a scan that
    misses them all: a set scored alone (or with fewer others) lands in batches of other
    sizes, and a UNet forward over another batch size sums in another order (its scores
    moved in the 7th digit when one damaged unit was recomputed, docs/determinism.md). The
    units not missing are recomputed bit-identically and discarded."""
    chosen = sorted({position // len(sets) for position in missing})
    scored = score_sets([attacks[a] for a in chosen], target, sets, runtime.world,
                        stage="scoring the released model")
    if scored is None:  # another process: rank 0 gathers the scores
        return None
    out = {a * len(sets) + s: {f"v_{k}": v for k, v in scores.items()}
           for a, per_set in zip(chosen, scored, strict=True)
           for s, scores in enumerate(per_set)}
    return [out[p] for p in missing] if runtime.is_main else None
