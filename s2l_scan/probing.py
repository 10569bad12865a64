"""Run the S2L probes of a scan: shake a copy per (probe, domain), re-attack, measure Δ.

Each probe works on private copies (:meth:`ModelCopy.of`), so the released model is never
modified. Attacks are re-run on the same audit samples with the same seeds as the baseline,
and the amplification Δ = AUC(probe) − AUC(baseline) gets a paired bootstrap CI.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from s2l_scan.config import ScanConfig
from s2l_scan.errors import UsageError
from s2l_scan.functional import metrics
from s2l_scan.generation import SamplerSettings
from s2l_scan.probe import PROBES, Probe, ProbeContext
from s2l_scan.report.model import ResultRow
from s2l_scan.units import UnitStore


@dataclass(frozen=True)
class ProbeSpec:
    """One probe with concrete options, and the label its report rows carry."""

    label: str
    probe: Probe


def expand_probes(config: ScanConfig) -> list[ProbeSpec]:
    """Instantiate the selected probes; list-valued options sweep (one spec per combination)."""
    import s2l_scan.probes  # noqa: F401 - registers the built-in probes

    specs = []
    for name in config.probes:
        cls = PROBES.get(name)
        options = config.probe_options.get(name, {})
        swept = {k: v if isinstance(v, list) else [v] for k, v in options.items()}
        for values in itertools.product(*swept.values()):
            chosen = dict(zip(swept, values, strict=True))
            try:
                probe = _build(cls, chosen)
            except (TypeError, ValueError) as error:
                raise UsageError(f"probe {name!r}: bad options {chosen} ({error})") from None
            shown = ",".join(f"{k}={v}" for k, v in chosen.items()
                             if isinstance(options.get(k), list))
            specs.append(ProbeSpec(f"{name}({shown})" if shown else name, probe))
    return specs


def _build(cls: type[Probe], options: dict[str, Any]) -> Probe:
    """A probe with these options. Probes check their options when built (and described): a
    TypeError or ValueError here is a bad name or value in the user's options."""
    probe = cls(**options)
    probe.describe()
    return probe


def sweep_specs(config: ScanConfig) -> list[tuple[str, ProbeSpec]]:
    """The sweep's candidate probes (see :mod:`s2l_scan.sweep`), labelled ``sweep:NAME(k=v)``.

    Each candidate starts from the probe's ``probe_options`` (when the scan sets any scalar
    ones) and changes one knob."""
    import s2l_scan.probes  # noqa: F401 - registers the built-in probes
    from s2l_scan.sweep import candidates

    specs = []
    for name, change in candidates(config.sweep_space):
        cls = PROBES.get(name)
        base = {k: v for k, v in config.probe_options.get(name, {}).items()
                if not isinstance(v, list)}
        try:
            probe = _build(cls, {**base, **change})
        except (TypeError, ValueError) as error:
            raise UsageError(f"sweep_space: probe {name!r} has no knob or value {change} "
                             f"({error}); its knobs: {sorted(probe_knobs(cls))}") from None
        label = "sweep:" + name + "(" + ",".join(f"{k}={v}" for k, v in change.items()) + ")"
        specs.append((label, ProbeSpec(label, probe)))
    return specs


def probe_knobs(cls: type[Probe]) -> list[str]:
    """The constructor options of a probe class (its dataclass fields)."""
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


class GeneratedSets:
    """SP / OOD / prior sets for a scan, generated once (cached on disk) and encoded once."""

    def __init__(self, model: Any, config: ScanConfig, encode: Callable[[np.ndarray], Any],
                 store: UnitStore | None) -> None:
        self._model, self._config, self._encode = model, config, encode
        self._store = store
        self._latents: dict[str, torch.Tensor] = {}

    def latents(self, prompt: str) -> torch.Tensor:
        if prompt not in self._latents:
            from s2l_scan.probes.sp_set import sp_set

            settings = SamplerSettings(steps=self._config.sp_steps,
                                       guidance=self._config.sp_guidance,
                                       negative_prompt=self._config.negative_prompt,
                                       batch_size=self._config.batch_size)
            images = sp_set(self._model.pipeline, self._model.model_hash, prompt,
                            self._config.sp_samples, seed=self._config.seed, settings=settings,
                            store=self._store, platform=self._model.platform)
            self._latents[prompt] = self._encode(images)
        return self._latents[prompt]

    def context(self, probe: Probe, domain: str, prompt: str, config: ScanConfig,
                save_dir: str | None) -> ProbeContext:
        def needed(kind: str, which: str) -> torch.Tensor | None:
            return self.latents(which) if kind in probe.uses else None

        sp = needed("sp", prompt)
        return ProbeContext(
            domain=domain, prompt=prompt,
            sp_latents=sp if sp is not None else torch.empty(0),
            ood_latents=needed("ood", config.ood_prompt), ood_prompt=config.ood_prompt,
            prior_latents=needed("prior", config.prior_prompt),
            prior_prompt=config.prior_prompt, seed=config.seed,
            device=str(self._model.pipeline.unet.device),
            save_dir=save_dir)


def probe_row(base: ResultRow, label: str, members: np.ndarray, nonmembers: np.ndarray,
              config: ScanConfig, make_row: Callable[..., ResultRow],
              details: dict[str, Any]) -> ResultRow:
    """A probe's result row, with Δ AUC against the baseline row on the same samples."""
    row = make_row(members, nonmembers)
    row.probe = label
    base_m, base_n = np.asarray(base.member_scores), np.asarray(base.nonmember_scores)
    row.delta_auc = row.auc - base.auc
    row.delta_auc_ci = metrics.paired_bootstrap_ci(
        base_m, base_n, members, nonmembers, metrics.auc, n_resamples=config.bootstrap,
        seed=config.resample_seed)
    row.settings = {**row.settings, "probe": details}
    return row

