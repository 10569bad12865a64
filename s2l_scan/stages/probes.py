"""Stage 4: every S2L probe on every domain — shake a private copy, re-attack, Δ against the
released model's rows, and (when configured) extraction on the shaken copy.

Each (probe, domain) is one unit of the store, and of the work shared out across the
processes of a data-parallel scan; rank 0 turns them into rows. The sweep runs its probes
after the planned ones, one at a time, as long as the budget lasts by rank 0's clock, so that
every process takes the same decisions.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2l_scan.attack import Attack, Target
from s2l_scan.checks import calibrated
from s2l_scan.conditioning import TextEncoders
from s2l_scan.config import ScanConfig
from s2l_scan.io.audit_data import Domain
from s2l_scan.io.model import LoadedModel
from s2l_scan.probe import Probe, ProbeContext
from s2l_scan.probing import ProbeSelection, ProbeSpec
from s2l_scan.report.model import ExtractionRecord, ResultRow
from s2l_scan.scoring import SampleSet, score_sets
from s2l_scan.stages.baselines import Calibration, alphas
from s2l_scan.stages.encode import (
    Encoded,
    Subject,
    encode_caption_pair,
    encode_images,
    image_size,
    null_conditioning,
    perturbed_conditionings,
)
from s2l_scan.stages.extraction import (
    extraction_records,
    released_generations,
    sampler,
    shares_sp_sets,
    sp_sampler,
    stored,
)
from s2l_scan.stages.rows import Candidates, probe_row
from s2l_scan.stages.runtime import Runtime
from s2l_scan.units import Arrays, UnitStore, digest, unit_key

Outcome = tuple[Arrays, Any]  # a (probe, domain) unit: scores (and generations), details


class GeneratedSets:
    """SP / OOD / prior sets for a scan, generated once (cached in the unit store) and encoded
    once. A domain's SP set is the first ``sp_samples`` of the released model's extraction
    generations when the settings make them the same images
    (:func:`s2l_scan.stages.extraction.shares_sp_sets`); else its own unit."""

    def __init__(self, model: LoadedModel, config: ScanConfig,
                 encode: Callable[[np.ndarray], torch.Tensor], store: UnitStore | None,
                 runtime: Runtime | None = None,
                 domain: Callable[[str], Domain] | None = None) -> None:
        self._model, self._config, self._encode = model, config, encode
        self._store = store
        self._runtime = Runtime(store or UnitStore(None)) if runtime is None else runtime
        self._domain = domain  # a domain by its name (None: SP sets are never extraction's)
        self._latents: dict[str, torch.Tensor] = {}
        self._sp: dict[str, torch.Tensor] = {}

    def latents(self, prompt: str) -> torch.Tensor:
        """The latents of the set generated for ``prompt`` (an OOD or prior prompt, or a
        domain's prompt when its SP set is not extraction's)."""
        if prompt not in self._latents:
            from s2l_scan.probes.sp_set import sp_set

            settings = sp_sampler(self._config)
            images = sp_set(self._model.pipeline, self._model.model_hash, prompt,
                            self._config.sp_samples, seed=self._config.seed, settings=settings,
                            store=self._store, platform=self._model.platform)
            self._latents[prompt] = self._encode(images)
        return self._latents[prompt]

    def sp_latents(self, domain: str, prompt: str) -> torch.Tensor:
        """The latents of ``domain``'s SP set."""
        if self._domain is None or not shares_sp_sets(self._config):
            return self.latents(prompt)
        if domain not in self._sp:
            images = released_generations(self._model, self._domain(domain), self._config,
                                          self._runtime)
            self._sp[domain] = self._encode(images[:self._config.sp_samples])
        return self._sp[domain]

    def context(self, probe: Probe, domain: str, prompt: str, save_dir: str | None
                ) -> ProbeContext:
        config = self._config

        def needed(kind: str, which: str) -> torch.Tensor | None:
            return self.latents(which) if kind in probe.uses else None

        sp = self.sp_latents(domain, prompt) if "sp" in probe.uses else None
        return ProbeContext(
            domain=domain, prompt=prompt,
            sp_latents=sp if sp is not None else torch.empty(0),
            ood_latents=needed("ood", config.ood_prompt), ood_prompt=config.ood_prompt,
            prior_latents=needed("prior", config.prior_prompt),
            prior_prompt=config.prior_prompt, seed=config.seed,
            device=str(self._model.pipeline.unet.device),
            save_dir=save_dir)


class _ProbeRun:
    """What every (probe, domain) unit of one scan shares."""

    def __init__(self, subject: Subject, attacks: Sequence[Attack], config: ScanConfig,
                 index: Any, runtime: Runtime, calibration: Calibration | None = None) -> None:
        self.subject, self.attacks, self.config = subject, list(attacks), config
        self.index, self.runtime, self.calibration = index, runtime, calibration
        model = subject.model
        self.sets = GeneratedSets(model, config, lambda images: encode_images(
            model, images, config.batch_size), runtime.store, runtime, subject.data.domain)
        self.extract = config.extraction_on_probes and index is not None

    def unit(self, spec: ProbeSpec, domain: str) -> Outcome:
        """One (probe, domain), from the store when it is there. With ``probe_save_dir`` set
        every probe runs, since its trained files are wanted."""
        config = self.config
        save_dir = (str(Path(config.probe_save_dir) / spec.label / domain)
                    if config.probe_save_dir else None)
        shake = functools.partial(self._shake_and_score, spec, domain, save_dir)
        if save_dir is not None:
            return shake()
        return self.runtime.get_or_compute("probe", self._key(spec, domain), shake)

    def _key(self, spec: ProbeSpec, domain: str) -> str:
        """Unit key of one (probe, domain): everything its training, scores and samples
        depend on."""
        model, config = self.subject.model, self.config
        enc = self.subject.encoded[domain]
        from s2l_scan.samplers import sampler_identity

        settings = sampler(config)
        return unit_key(
            "probe", layout=2,  # 2: every candidate's scores (was: the attack's own only)
            model=model.model_hash, probe=type(spec.probe).__name__, label=spec.label,
            options=spec.probe.describe(), domain=domain,
            prompt=self.subject.data.domain(domain).prompt, seed=config.seed,
            sp=[config.sp_samples, config.sp_steps, config.sp_guidance, config.ood_prompt,
                config.prior_prompt, config.negative_prompt,
                # the domain's SP set is extraction's images (another noise stream)
                "extraction" if shares_sp_sets(config) else "own"],
            sampler=sampler_identity(config.sampler, model.pipeline.scheduler),
            attacks=[[a.name, a.describe()] for a in self.attacks],
            samples=digest(enc.members, enc.nonmembers, enc.member_captions,
                           enc.nonmember_captions),
            batch_size=config.batch_size, threads=config.threads, **model.platform,
            extraction=[config.extraction_samples, settings.steps, settings.guidance,
                        settings.negative_prompt] if self.extract else None)

    def _shake_and_score(self, spec: ProbeSpec, domain: str, save_dir: str | None) -> Outcome:
        """Apply one probe to a private copy for one domain; its scores (and samples) as
        arrays, and its details for the report. Progress lines name the probe and domain."""
        from s2l_scan.progress import at

        with at(f"{spec.label} probe, domain {domain}"):
            return self._shake_and_score_here(spec, domain, save_dir)

    def _shake_and_score_here(self, spec: ProbeSpec, domain: str, save_dir: str | None
                              ) -> Outcome:
        from s2l_scan.generation import generate_images
        from s2l_scan.probe import ModelCopy

        model, config = self.subject.model, self.config
        enc: Encoded = self.subject.encoded[domain]
        prompt = self.subject.data.domain(domain).prompt
        spec.probe.check_family(model.family)  # the plan refused it already, when it knew
        context = self.sets.context(spec.probe, domain, prompt, save_dir)
        shaken = spec.probe.apply(ModelCopy.of(model.pipeline), context)
        details = {"label": spec.label, **spec.probe.describe(),
                   "trainable_parameters": shaken.trainable_parameters, **shaken.details}
        # the copy's text encoder (and caption_fn) may differ from the released model's:
        # encode the captions once per copy, for every attack
        encoders, size = TextEncoders.of(shaken), image_size(enc.member_pixels)
        member_captions = [shaken.caption_fn(c) for c in enc.member_captions]
        nonmember_captions = [shaken.caption_fn(c) for c in enc.nonmember_captions]
        member_cond, nonmember_cond = encode_caption_pair(
            encoders, member_captions, nonmember_captions, size)
        uncond = (null_conditioning(encoders, size)
                  if any(a.needs_uncond for a in self.attacks) else None)
        target = Target(shaken.unet, alphas(model), config.batch_size,
                        prediction_type=model.prediction_type, uncond=uncond)
        scored = score_sets(self.attacks, target, [
            SampleSet(enc.members, member_cond, perturbed_conditionings(
                self.attacks, encoders, member_captions, size)),
            SampleSet(enc.nonmembers, nonmember_cond, perturbed_conditionings(
                self.attacks, encoders, nonmember_captions, size))],
            stage="scoring the shaken copy")
        assert scored is not None  # a local (single-process) scoring always returns
        arrays: dict[str, np.ndarray] = {}
        for attack, (members, nonmembers) in zip(self.attacks, scored, strict=True):
            for key in members:  # the attack's score ("") and its variants, as candidates
                arrays[f"{attack.name}/members/{key}"] = members[key]
                arrays[f"{attack.name}/nonmembers/{key}"] = nonmembers[key]
        if self.extract:
            arrays["generated"] = generate_images(
                _pipeline_of(model.pipeline, shaken), shaken.caption_fn(prompt),
                config.extraction_samples, seed=config.seed, key=domain,
                settings=sampler(config), stage="generating with the shaken copy")
        return arrays, details

    def results(self, spec: ProbeSpec, outcomes: dict[str, Outcome],
                base: dict[tuple[str, str], ResultRow]
                ) -> tuple[list[ResultRow], list[ExtractionRecord]]:
        """One probe's rows (per domain, and pooled; then, with a base model, the same as
        ``NAME+base``) and extraction records from its units."""
        rows = self._rows(spec, outcomes, base, None)
        if self.calibration is not None:
            rows += self._rows(spec, outcomes, base, self.calibration)
        records: list[ExtractionRecord] = []
        for name, (arrays, _) in outcomes.items():
            if "generated" in arrays:
                records += extraction_records(None, [self.subject.data.domain(name)], self.index,
                                              self.config, probe=spec.label,
                                              generate=stored({name: arrays["generated"]}),
                                              model_scheduler=self.subject.model.pipeline
                                              .scheduler)
        return rows, records

    def _rows(self, spec: ProbeSpec, outcomes: dict[str, Outcome],
              base: dict[tuple[str, str], ResultRow], calibration: Calibration | None
              ) -> list[ResultRow]:
        """One probe's rows per domain, and pooled. With ``calibration`` they are its
        ``NAME+base`` rows: the copy's scores minus the base model's (the baselines' own base
        scores: no model work), Δ against the released model's ``NAME+base`` rows, as an
        attacker who holds the base would measure it."""
        blind = self.subject.blind
        settings = None if calibration is None else calibration.settings
        rows: list[ResultRow] = []
        pooled: dict[str, tuple[list[Candidates], list[Candidates]]] = {}
        for name, (arrays, details) in outcomes.items():
            for attack in self.attacks:
                members = _candidates(arrays, f"{attack.name}/members/")
                nonmembers = _candidates(arrays, f"{attack.name}/nonmembers/")
                if calibration is not None:
                    members, nonmembers = calibration.subtract(attack.name, name, members,
                                                               nonmembers)
                released = base[(_row_name(attack, calibration), name)]
                rows.append(probe_row(attack, released, spec.label, members, nonmembers,
                                      blind[name], self.config, details, calibration=settings))
                pooled.setdefault(attack.name, ([], []))
                pooled[attack.name][0].append(members)
                pooled[attack.name][1].append(nonmembers)
        if len(outcomes) > 1:
            for attack in self.attacks:
                members, nonmembers = (_concatenated(part) for part in pooled[attack.name])
                rows.append(probe_row(attack, base[(_row_name(attack, calibration), "pooled")],
                                      spec.label, members, nonmembers, blind["pooled"],
                                      self.config, {"label": spec.label,
                                                    **spec.probe.describe()},
                                      calibration=settings))
        return rows


def _row_name(attack: Attack, calibration: Calibration | None) -> str:
    """The name of ``attack``'s rows: ``NAME``, or ``NAME+base`` when base-calibrated."""
    return attack.name if calibration is None else calibrated(attack.name)


def run_probes(subject: Subject, attacks: Sequence[Attack], selection: ProbeSelection,
               config: ScanConfig, *, baseline: list[ResultRow], index: Any = None,
               runtime: Runtime | None = None, calibration: Calibration | None = None
               ) -> tuple[list[ResultRow], list[ExtractionRecord]]:
    """The probe rows and extraction records of every selected probe (and the budgeted sweep
    after them) on every domain of ``subject``; rank 0 gets them, other ranks empty lists.

    ``baseline`` are the released model's rows (Δ is measured against them); ``index`` the
    known-image index (None: no extraction on the copies); ``calibration`` the base model's
    scores (``--base-model``): each probe then also gets ``NAME+base`` rows, Δ against the
    released model's ``NAME+base`` rows."""
    from s2l_scan.sweep import SweepLog, budgeted

    if not selection.planned and selection.sweep_budget_s is None:
        return [], []
    runtime = Runtime() if runtime is None else runtime
    run = _ProbeRun(subject, attacks, config, index, runtime, calibration)
    groups: Iterable[list[ProbeSpec]] = [list(selection.planned)]
    sweep = None
    if selection.sweep_budget_s is not None:  # after the planned probes, while budget lasts
        sweep = SweepLog(selection.sweep_budget_s)
        groups = itertools.chain(groups, ([spec] for spec in budgeted(
            [(spec.label, spec) for spec in selection.sweep], sweep.budget_s, sweep,
            cost_key=lambda spec: spec.probe.name,
            clock=lambda: runtime.broadcast(time.perf_counter()))))
    base = {(row.attack, row.domain): row for row in baseline}
    names = list(subject.encoded)
    rows: list[ResultRow] = []
    records: list[ExtractionRecord] = []
    for specs in groups:
        units = [(spec, name) for spec in specs for name in names]
        done = runtime.map_counted("probes (probe × domain)", lambda unit: run.unit(*unit),
                                   units)
        if done is None:  # another process: rank 0 makes the rows
            continue
        for i, spec in enumerate(specs):
            outcomes = dict(zip(names, done[i * len(names):(i + 1) * len(names)], strict=True))
            spec_rows, spec_records = run.results(spec, outcomes, base)
            rows += spec_rows
            records += spec_records
    if sweep is not None:
        summary: dict[str, Any] = {"budget_s": sweep.budget_s, "tried": len(sweep.tried),
                                   "skipped": sweep.skipped}
        if selection.unsupported:
            summary[f"not_for_{subject.model.family}"] = list(selection.unsupported)
        for row in rows:
            if row.probe and row.probe.startswith("sweep:"):
                row.settings["probe"]["sweep"] = summary
    return rows, records


def _candidates(arrays: Arrays, prefix: str) -> Candidates:
    """The candidate score arrays stored under ``prefix`` + key."""
    return {key.removeprefix(prefix): value for key, value in arrays.items()
            if key.startswith(prefix)}


def _concatenated(parts: list[Candidates]) -> Candidates:
    """Each candidate's scores over several domains, in domain order."""
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _pipeline_of(released: Any, shaken: Any) -> Any:
    """A pipeline that samples from a probe's shaken copy (the VAE and scheduler are shared)."""
    if getattr(shaken, "text_encoder_2", None) is not None:  # SDXL, as io.model loads it
        pipeline = type(released)(vae=released.vae, text_encoder=shaken.text_encoder,
                                  text_encoder_2=shaken.text_encoder_2,
                                  tokenizer=shaken.tokenizer, tokenizer_2=shaken.tokenizer_2,
                                  unet=shaken.unet, scheduler=released.scheduler,
                                  force_zeros_for_empty_prompt=released.config.get(
                                      "force_zeros_for_empty_prompt", True),
                                  add_watermarker=False)
    else:
        pipeline = type(released)(vae=released.vae, text_encoder=shaken.text_encoder,
                                  tokenizer=shaken.tokenizer, unet=shaken.unet,
                                  scheduler=released.scheduler, safety_checker=None,
                                  feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
