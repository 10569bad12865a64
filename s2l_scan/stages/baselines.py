"""Stage 2: every attack on the released model, per domain and pooled → result rows.

Each (attack, sample set) is one unit of the store; only the missing units are scored, in
batches shared across domains (and across processes in a data-parallel scan).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from s2l_scan.attack import Attack, Target
from s2l_scan.conditioning import as_conditioning
from s2l_scan.config import ScanConfig
from s2l_scan.io.model import LoadedModel
from s2l_scan.report.model import ResultRow
from s2l_scan.scoring import SampleSet, Scores, score_sets
from s2l_scan.stages.encode import Subject
from s2l_scan.stages.rows import result_row
from s2l_scan.stages.runtime import Runtime
from s2l_scan.units import Arrays, digest, unit_key


def alphas(model: LoadedModel) -> torch.Tensor:
    """The scheduler's ᾱ_t, float64 on the UNet's device."""
    return model.pipeline.scheduler.alphas_cumprod.to(torch.float64).to(model.pipeline.unet.device)


def run_baselines(subject: Subject, attacks: Sequence[Attack], config: ScanConfig,
                  runtime: Runtime | None = None) -> list[ResultRow]:
    """Baseline rows: every attack on every domain's members and non-members, and ``pooled``
    when there are several domains (rank 0 gets the rows; other ranks an empty list). Without
    ``runtime`` every score is computed, in this process alone."""
    runtime = Runtime() if runtime is None else runtime
    model, encoded = subject.model, subject.encoded
    target = Target(model.pipeline.unet, alphas(model), config.batch_size,
                    prediction_type=model.prediction_type)
    sets = [SampleSet(latents, cond) for enc in encoded.values()
            for latents, cond in ((enc.members, enc.member_cond),
                                  (enc.nonmembers, enc.nonmember_cond))]
    scored = _stored_scores(model, list(attacks), target, sets, config, runtime)
    if scored is None:
        return []
    rows: list[ResultRow] = []
    for attack, per_set in zip(attacks, scored, strict=True):
        # score sets by key: "" is the attack's score, other keys its diagnostic variants
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for i, name in enumerate(encoded):
            members, nonmembers = per_set[2 * i], per_set[2 * i + 1]
            rows.append(result_row(attack, name, members, nonmembers, subject.blind[name],
                                   config))
            for key in members:
                pooled.setdefault(key, ([], []))
                pooled[key][0].append(members[key])
                pooled[key][1].append(nonmembers[key])
        if len(encoded) > 1:
            rows.append(result_row(attack, "pooled",
                                   {k: np.concatenate(v[0]) for k, v in pooled.items()},
                                   {k: np.concatenate(v[1]) for k, v in pooled.items()},
                                   subject.blind["pooled"], config))
    return rows


def _scores_key(model: LoadedModel, attack: Attack, samples: str, config: ScanConfig) -> str:
    """Unit key of an attack's scores (and variants) on one sample set, whatever other sets or
    processes shared its batches. Batch size, thread count, device kind and dtype are in the
    key: they move scores in the last digits."""
    return unit_key("scores", model=model.model_hash, attack=attack.name,
                    settings=attack.describe(), samples=samples, batch_size=config.batch_size,
                    threads=config.threads, **model.platform)


def _stored_scores(model: LoadedModel, attacks: list[Attack], target: Target,
                   sets: list[SampleSet], config: ScanConfig, runtime: Runtime
                   ) -> list[list[Scores]] | None:
    """:func:`~s2l_scan.scoring.score_sets` through the unit store: each (attack, sample set)
    is one unit, and only the units missing from the store are scored, in shared batches."""
    # SD: the digest of the hidden states alone, as before conditioning had a type
    samples = [digest(s.latents, *as_conditioning(s.cond).tensors()) for s in sets]
    keys = [_scores_key(model, attack, sample, config) for attack in attacks for sample in samples]
    units = runtime.shared_units("scores", keys, lambda missing: _score_missing(
        attacks, target, sets, missing, runtime))
    if units is None:
        return None
    # "v_" + variant key: "" (the attack's score) is no name for an array in a .npz file
    return [[{k.removeprefix("v_"): v for k, v in units[a * len(sets) + s].items()}
             for s in range(len(sets))] for a in range(len(attacks))]


def _score_missing(attacks: list[Attack], target: Target, sets: list[SampleSet],
                   missing: list[int], runtime: Runtime) -> list[Arrays] | None:
    """The units at positions ``attack · len(sets) + set`` in ``missing``: sets that miss the
    same attacks are scored together, in one pass of shared batches per such group."""
    wanted: dict[int, list[int]] = {}  # set → the attacks it misses
    for position in missing:
        a, s = divmod(position, len(sets))
        wanted.setdefault(s, []).append(a)
    groups: dict[tuple[int, ...], list[int]] = {}
    for s, missed in wanted.items():
        groups.setdefault(tuple(missed), []).append(s)
    out: dict[int, Arrays] = {}
    for chosen, members in groups.items():
        scored = score_sets([attacks[a] for a in chosen], target, [sets[s] for s in members],
                            runtime.world, stage="scoring the released model")
        if scored is None:  # another process: rank 0 gathers the scores
            continue
        for a, per_set in zip(chosen, scored, strict=True):
            for s, scores in zip(members, per_set, strict=True):
                out[a * len(sets) + s] = {f"v_{k}": v for k, v in scores.items()}
    return [out[p] for p in missing] if runtime.is_main else None
