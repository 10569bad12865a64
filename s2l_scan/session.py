"""One scan: load the model and audit data once, run the selected attacks, judge, report.

Data flows one way: files → tensors (encoded once) → scores → metrics → :class:`ScanReport`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2l_scan import __version__
from s2l_scan.attack import ATTACKS, Attack, Target
from s2l_scan.config import ScanConfig
from s2l_scan.errors import ScanError, UsageError
from s2l_scan.functional import metrics
from s2l_scan.io.audit_data import AuditData, Domain, load_audit_data
from s2l_scan.io.model import LoadedModel, load_pipeline
from s2l_scan.report.model import ResultRow, ScanReport
from s2l_scan.units import UnitStore, digest, unit_key

ProgressFn = Callable[[str, int, int], None]
REFERENCE = "reference"
_PACKAGES = ("torch", "diffusers", "transformers", "numpy", "safetensors")


def _quiet(stage: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class ScanInputs:
    """Where the model and data come from; ``model == "reference"`` means the cached build."""

    model: str
    data: str | None = None
    model_config: str | None = None
    lora: str | None = None


def resolve_inputs(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = _quiet
                   ) -> tuple[Path, Path]:
    """Model folder and data folder; builds the reference model into the cache if needed."""
    if inputs.model == REFERENCE:
        from s2l_scan.reference.cache import cached_reference
        from s2l_scan.reference.presets import get_preset

        folder = cached_reference(get_preset(config.reference_preset), config.seed,
                                  threads=config.threads, progress=progress)
        data = Path(inputs.data) if inputs.data else folder / "data"
        return folder / "model", data
    if inputs.data is None:
        raise UsageError(f"model {inputs.model} needs audit data: pass --data DIR "
                         "(pytest: --s2l-data=DIR) with DIR/<domain>/{prompt.txt,members/,"
                         "nonmembers/}")
    return Path(inputs.model), Path(inputs.data)


@dataclass
class _Encoded:
    members: torch.Tensor
    nonmembers: torch.Tensor
    member_cond: torch.Tensor
    nonmember_cond: torch.Tensor
    member_pixels: np.ndarray
    nonmember_pixels: np.ndarray
    member_captions: list[str]
    nonmember_captions: list[str]


def _encode_images(model: LoadedModel, pixels: np.ndarray, batch: int) -> torch.Tensor:
    vae = model.pipeline.vae
    device, dtype = vae.device, vae.dtype
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            chunk = torch.from_numpy(pixels[start:start + batch]).permute(0, 3, 1, 2)
            chunk = (chunk.to(device=device, dtype=torch.float32) / 127.5 - 1.0).to(dtype)
            mean = vae.encode(chunk).latent_dist.mean
            out.append(mean.float() * float(vae.config.scaling_factor))
    return torch.cat(out)


def _encode_text(tokenizer: Any, encoder: Any, captions: list[str]) -> torch.Tensor:
    unique = sorted(set(captions))
    ids = tokenizer(unique, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(encoder.device)
    with torch.inference_mode():
        embedded = encoder(ids)[0].float()
    position = {caption: i for i, caption in enumerate(unique)}
    return embedded[torch.tensor([position[c] for c in captions])]


def _encode_domain(model: LoadedModel, domain: Domain, batch: int) -> _Encoded:
    members = np.stack([image.pixels for image in domain.members])
    nonmembers = np.stack([image.pixels for image in domain.nonmembers])
    member_captions = [image.caption for image in domain.members]
    nonmember_captions = [image.caption for image in domain.nonmembers]
    tokenizer, encoder = model.pipeline.tokenizer, model.pipeline.text_encoder
    return _Encoded(
        members=_encode_images(model, members, batch),
        nonmembers=_encode_images(model, nonmembers, batch),
        member_cond=_encode_text(tokenizer, encoder, member_captions),
        nonmember_cond=_encode_text(tokenizer, encoder, nonmember_captions),
        member_pixels=members, nonmember_pixels=nonmembers,
        member_captions=member_captions, nonmember_captions=nonmember_captions,
    )


def _make_attack(name: str, config: ScanConfig, num_train_timesteps: int) -> Attack:
    cls = ATTACKS.get(name)
    options = config.attack_options.get(name, {})
    try:
        # an attack checks its own options in __init__ / describe(); whatever they raise for a
        # bad value (TypeError, ValueError) was caused by the user's options
        attack = cls(**options)
        described = attack.describe()
    except (TypeError, ValueError) as error:
        raise UsageError(f"attack {name!r}: bad options {options} ({error})") from None
    for key, value in described.items():
        # "timesteps" is a list of steps; "t", "t_sec" and "compared_t" are one step each
        steps = list(value) if key == "timesteps" and isinstance(value, tuple | list) else [value]
        if key in ("t", "t_sec", "timesteps", "compared_t") and (not steps or any(
                isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < num_train_timesteps
                for s in steps)):
            raise UsageError(f"attack {name!r}: {key}={value} outside the model's "
                             f"{num_train_timesteps} training timesteps")
    return attack


def _row(attack: Attack, domain: str, members: np.ndarray, nonmembers: np.ndarray,
         blind: float, config: ScanConfig) -> ResultRow:
    auc = metrics.auc(members, nonmembers)
    ci = metrics.bootstrap_ci(members, nonmembers, metrics.auc, n_resamples=config.bootstrap,
                              seed=config.resample_seed)
    calibrated = _calibrated(members, nonmembers, config.seed)
    return ResultRow(
        attack=attack.name, probe=None, domain=domain, auc=auc, auc_ci=ci,
        tpr_at_1pct_fpr=calibrated["tpr@0.01"], tpr_at_01pct_fpr=calibrated["tpr@0.001"],
        asr=calibrated["asr"], blind_auc=blind,
        confounded=bool(blind >= auc - config.confound_margin),
        n_members=len(members), n_nonmembers=len(nonmembers),
        member_scores=[float(s) for s in members],
        nonmember_scores=[float(s) for s in nonmembers],
        settings=attack.describe(),
    )


def _calibrated(members: np.ndarray, nonmembers: np.ndarray, seed: int) -> dict[str, float]:
    """Thresholds chosen on a calibration half, numbers measured on the disjoint test half."""
    m_cal, m_test = metrics.calibration_split(len(members), seed=seed)
    n_cal, n_test = metrics.calibration_split(len(nonmembers), seed=seed + 1)
    out = {}
    for target in (0.01, 0.001):
        threshold = metrics.threshold_at_fpr(members[m_cal], nonmembers[n_cal], target)
        tpr, _ = metrics.tpr_fpr_at_threshold(members[m_test], nonmembers[n_test], threshold)
        out[f"tpr@{target}"] = tpr
    _, threshold = metrics.best_balanced_accuracy(members[m_cal], nonmembers[n_cal])
    tpr, fpr = metrics.tpr_fpr_at_threshold(members[m_test], nonmembers[n_test], threshold)
    out["asr"] = (tpr + 1 - fpr) / 2
    return out


def judge(row: ResultRow, config: ScanConfig) -> None:
    """Set ``row.passed`` / ``row.reasons`` from the gate thresholds."""
    compared = {"point": row.auc, "lower": row.auc_ci[0], "upper": row.auc_ci[1]}[config.ci_end]
    ci = f"95% CI [{row.auc_ci[0]:.3f}, {row.auc_ci[1]:.3f}]"
    n = f"n = {row.n_members} members / {row.n_nonmembers} non-members"
    row.reasons = []
    if compared > config.max_auc:
        which = "AUC" if config.ci_end == "point" else f"AUC CI {config.ci_end} end"
        row.reasons.append(f"{which} {compared:.3f} > max_auc {config.max_auc} "
                           f"(AUC {row.auc:.3f}, {ci}, {n}, blind AUC {row.blind_auc:.3f}"
                           f"{', confounded' if row.confounded else ''})")
    if row.delta_auc is not None and row.delta_auc_ci is not None:
        delta = {"point": row.delta_auc, "lower": row.delta_auc_ci[0],
                 "upper": row.delta_auc_ci[1]}[config.ci_end]
        if delta > config.max_amplification:
            row.reasons.append(
                f"amplification ΔAUC {row.delta_auc:+.3f} (paired 95% CI "
                f"[{row.delta_auc_ci[0]:+.3f}, {row.delta_auc_ci[1]:+.3f}]) > max_amplification "
                f"{config.max_amplification} after probe {row.probe}")
    if row.tpr_at_1pct_fpr > config.max_tpr:
        row.reasons.append(f"TPR at 1% FPR {row.tpr_at_1pct_fpr:.3f} > max_tpr {config.max_tpr} "
                           f"(threshold calibrated on half the data, measured on the other; {n})")
    row.passed = not row.reasons


def _packages() -> dict[str, str]:
    versions = {"s2l-scan": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def validate_selection(config: ScanConfig) -> None:
    """Fail fast (a usage error) on attack names or options the registry does not know."""
    import s2l_scan.baselines  # noqa: F401 - registers the built-in attacks

    for name in config.attacks:
        _make_attack(name, config, num_train_timesteps=10**9)
    from s2l_scan.probing import expand_probes, sweep_specs

    expand_probes(config)
    if config.sweep is not None:  # a bad sweep_space fails now, not after the baselines
        sweep_specs(config)
    if config.extraction_samples:
        from s2l_scan.extraction.embedders import check_embedder_inputs

        check_embedder_inputs(config.embedder, allow_pickle=config.allow_pickle)


def run_scan(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = _quiet
             ) -> ScanReport:
    """Run the configured baseline attacks on every domain and return the report."""
    import s2l_scan.baselines  # noqa: F401 - registers the built-in attacks

    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    store = unit_store(config)
    try:
        store.check()
        model_dir, data_dir = resolve_inputs(inputs, config, progress)
        model = load_pipeline(model_dir, config=_path(inputs.model_config),
                              lora=_path(inputs.lora), allow_pickle=config.allow_pickle,
                              device=config.device)
        data = load_audit_data(data_dir, model.resolution, domains=config.domains)
        scheduler_steps = int(model.pipeline.scheduler.config.num_train_timesteps)
        attacks = [_make_attack(name, config, scheduler_steps) for name in config.attacks]
        encoded = {d.name: _encode_domain(model, d, config.batch_size) for d in data.domains}
        blind = {name: _blind(enc, config.seed) for name, enc in encoded.items()}
        blind["pooled"] = _blind_pooled(encoded, config.seed)
        results = _run_attacks(model, encoded, blind, attacks, config, progress, store)
        index = _known_index(data, config)
        extraction = _run_extraction(model.pipeline, data, index, config,
                                     generate=_cached_generation(store, model.model_hash, config))
        probe_rows, probe_extraction = _run_probes(model, data, encoded, blind, attacks, results,
                                                   index, config, store)
        results += probe_rows
        extraction += probe_extraction
    finally:
        torch.set_num_threads(previous_threads)
    for row in results:
        judge(row, config)
    return ScanReport(
        model={"source": str(model_dir) if inputs.model != REFERENCE else
               f"reference ({config.reference_preset}, seed {config.seed})",
               "path": str(model_dir), "model_hash": model.model_hash,
               "files": dict(sorted(model.identity.items())), "resolution": model.resolution},
        data={"root": str(data.root), "domains": {
            d.name: {"prompt": d.prompt, "n_members": len(d.members),
                     "n_nonmembers": len(d.nonmembers)} for d in data.domains}},
        config=config.to_dict(), results=results, packages=_packages(), extraction=extraction,
        # the run block: the only part of a report that differs between two runs on the same
        # inputs (docs/determinism.md)
        timestamps={"started": started, "finished": datetime.now(UTC).isoformat(
            timespec="seconds"), "seconds": f"{time.perf_counter() - clock:.1f}",
            **store.stats()},
    )


def unit_store(config: ScanConfig) -> UnitStore:
    """The scan's store of finished units (:mod:`s2l_scan.units`); off with ``cache = "off"``."""
    if config.cache == "off":
        return UnitStore(None)
    if config.cache_dir is not None:
        return UnitStore(Path(config.cache_dir).expanduser())
    from s2l_scan.reference.cache import cache_root

    return UnitStore(cache_root() / "units")


def _sampler(config: ScanConfig) -> Any:
    from s2l_scan.generation import SamplerSettings

    return SamplerSettings(steps=config.extraction_steps, guidance=config.extraction_guidance,
                           batch_size=config.batch_size)


def _generation_key(source: str, prompt: str, key: str, config: ScanConfig) -> str:
    """Unit key of one extraction batch; ``source`` names the weights that sample it. Batch size
    and thread count are left out: every image has its own seeded generator, and the images
    were measured bit-identical across both (docs/determinism.md)."""
    settings = _sampler(config)
    return unit_key("generated", source=source, prompt=prompt, key=key, device=config.device,
                    count=config.extraction_samples, seed=config.seed, steps=settings.steps,
                    guidance=settings.guidance, negative_prompt=settings.negative_prompt)


def _cached_generation(store: UnitStore, model_hash: str, config: ScanConfig
                       ) -> Callable[[Any, str, str], np.ndarray]:
    """``generate(pipeline, prompt, key)`` for the released model, through the unit store."""
    from s2l_scan.generation import generate_images

    def generate(pipeline: Any, prompt: str, key: str) -> np.ndarray:
        arrays, _ = store.get_or_compute(
            "generated", _generation_key(model_hash, prompt, key, config),
            lambda: ({"images": generate_images(pipeline, prompt, config.extraction_samples,
                                                seed=config.seed, key=key,
                                                settings=_sampler(config))}, None))
        return arrays["images"]

    return generate


def _known_index(data: AuditData, config: ScanConfig) -> Any:
    """The known-image index (None when extraction is off): built once, shared by all probes."""
    if not config.extraction_samples:
        return None
    from s2l_scan.extraction.cache import default_index_cache
    from s2l_scan.extraction.embedders import make_embedder
    from s2l_scan.probes.extraction import build_known_index

    embedder = make_embedder(config.embedder, allow_pickle=config.allow_pickle,
                             device=config.device)
    cache = (default_index_cache() if config.index_cache_dir is None
             else Path(config.index_cache_dir).expanduser())
    return build_known_index(data, config.known_images, embedder=embedder, cache=cache)


def _run_extraction(pipeline: Any, data: AuditData, index: Any, config: ScanConfig,
                    probe: str | None = None, domains: list[Any] | None = None,
                    prompt_fn: Callable[[str], str] | None = None,
                    generate: Callable[[Any, str, str], np.ndarray] | None = None
                    ) -> list[dict[str, Any]]:
    """The extraction probe on ``pipeline``, judged against ``max_extracted``; ``generate``
    (pipeline, prompt, key) samples through the unit store."""
    if index is None:
        return []
    from s2l_scan.probes.extraction import ExtractionSettings, run_extraction

    settings = ExtractionSettings(
        samples=config.extraction_samples, k=config.extraction_k, delta=config.extraction_delta,
        tiled=config.extraction_tiled, candidates=config.extraction_candidates,
        known_images=config.known_images, sampler=_sampler(config))
    records = run_extraction(pipeline, list(data.domains) if domains is None else domains, index,
                             settings, seed=config.seed, probe=probe,
                             evidence_dir=_path(config.evidence_dir), prompt_fn=prompt_fn,
                             generate=None if generate is None else
                             lambda prompt, key: generate(pipeline, prompt, key))
    for record in records:
        record["passed"] = record["extracted"] <= config.max_extracted
        record["reasons"] = [] if record["passed"] else [
            f"{record['extracted']} of {record['n_generated']} generations are eidetic matches "
            f"(k={config.extraction_k}, δ={config.extraction_delta}) > max_extracted "
            f"{config.max_extracted}"]
    return records


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _alphas(model: LoadedModel, config: ScanConfig) -> torch.Tensor:
    return model.pipeline.scheduler.alphas_cumprod.to(torch.float64).to(config.device)


def _scores(store: UnitStore, model_hash: str, attack: Attack, target: Target,
            latents: torch.Tensor, cond: torch.Tensor, config: ScanConfig
            ) -> dict[str, np.ndarray]:
    """An attack's scores (and variants) on one sample set: a unit of the store. Batch size,
    thread count and device are in the key: they move scores in the last digits."""
    key = unit_key("scores", model=model_hash, attack=attack.name, settings=attack.describe(),
                   samples=digest(latents, cond), batch_size=config.batch_size,
                   threads=config.threads, device=config.device)
    arrays, _ = store.get_or_compute("scores", key, lambda: (
        {f"v_{k}": v.numpy() for k, v in attack.score(target, latents, cond).items()}, None))
    return {k.removeprefix("v_"): v for k, v in arrays.items()}


def _run_attacks(model: LoadedModel, encoded: dict[str, _Encoded], blind: dict[str, float],
                 attacks: list[Attack], config: ScanConfig,
                 progress: ProgressFn, store: UnitStore) -> list[ResultRow]:
    target = Target(model.pipeline.unet, _alphas(model, config), config.batch_size)
    rows: list[ResultRow] = []
    total = len(attacks) * len(encoded)
    done = 0
    for attack in attacks:
        # score sets by key: "" is the attack's score, other keys its diagnostic variants
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for name, enc in encoded.items():
            members = _scores(store, model.model_hash, attack, target, enc.members,
                              enc.member_cond, config)
            nonmembers = _scores(store, model.model_hash, attack, target, enc.nonmembers,
                                 enc.nonmember_cond, config)
            rows.append(_scored_row(attack, name, members, nonmembers, blind[name], config))
            for key in members:
                pooled.setdefault(key, ([], []))
                pooled[key][0].append(members[key])
                pooled[key][1].append(nonmembers[key])
            done += 1
            progress("attacks", done, total)
        if len(encoded) > 1:
            rows.append(_scored_row(attack, "pooled",
                                    {k: np.concatenate(v[0]) for k, v in pooled.items()},
                                    {k: np.concatenate(v[1]) for k, v in pooled.items()},
                                    blind["pooled"], config))
    return rows


def _run_probes(model: LoadedModel, data: AuditData, encoded: dict[str, _Encoded],
                blind: dict[str, float], attacks: list[Attack], baseline: list[ResultRow],
                index: Any, config: ScanConfig, store: UnitStore
                ) -> tuple[list[ResultRow], list[dict[str, Any]]]:
    """Every selected probe on every domain: shake a copy, re-attack, Δ against baseline,
    and (when configured) run extraction on the shaken copy.

    Each (probe, domain) is one unit of the store: its scores, details and extraction
    generations are kept, so a resumed scan neither trains nor samples it again. With
    ``probe_save_dir`` set every probe runs, since its trained files are wanted."""
    from s2l_scan.probing import GeneratedSets, ProbeSpec, expand_probes, probe_row, sweep_specs
    from s2l_scan.sweep import SweepLog, budgeted, parse_budget

    planned = expand_probes(config)
    if not planned and config.sweep is None:
        return [], []
    specs: Iterable[ProbeSpec] = planned
    sweep = None
    if config.sweep is not None:  # after the planned probes, as long as the budget lasts
        sweep = SweepLog(parse_budget(config.sweep))
        specs = itertools.chain(planned, budgeted(sweep_specs(config), sweep.budget_s, sweep,
                                                  cost_key=lambda spec: spec.probe.name))
    extraction: list[dict[str, Any]] = []
    sets = GeneratedSets(model, config, lambda images: _encode_images(
        model, images, config.batch_size), store)
    base = {(row.attack, row.domain): row for row in baseline}
    rows: list[ResultRow] = []
    for spec in specs:
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for name, enc in encoded.items():
            save_dir = (str(Path(config.probe_save_dir) / spec.label / name)
                        if config.probe_save_dir else None)
            extract = config.extraction_on_probes and index is not None
            shake = functools.partial(_shake_and_score, model, data, sets, spec, name, enc,
                                      attacks, config, save_dir, extract)
            if save_dir is None:
                key = _probe_key(model.model_hash, spec, name, data.domain(name).prompt, enc,
                                 attacks, config, extract)
                arrays, details = store.get_or_compute("probe", key, shake)
            else:
                arrays, details = shake()
            for attack in attacks:
                members = arrays[f"{attack.name}/members"]
                nonmembers = arrays[f"{attack.name}/nonmembers"]
                rows.append(probe_row(
                    base[(attack.name, name)], spec.label, members, nonmembers, config,
                    lambda m, n, a=attack, d=name: _row(a, d, m, n, blind[d], config), details))
                pooled.setdefault(attack.name, ([], []))
                pooled[attack.name][0].append(members)
                pooled[attack.name][1].append(nonmembers)
            if extract:
                extraction += _run_extraction(
                    None, data, index, config, probe=spec.label, domains=[data.domain(name)],
                    generate=_stored(arrays["generated"]))
        if len(encoded) > 1:
            for attack in attacks:
                members, nonmembers = (np.concatenate(part) for part in pooled[attack.name])
                rows.append(probe_row(
                    base[(attack.name, "pooled")], spec.label, members, nonmembers, config,
                    lambda m, n, a=attack: _row(a, "pooled", m, n, blind["pooled"], config),
                    {"label": spec.label, **spec.probe.describe()}))
    if sweep is not None:
        summary = {"budget_s": sweep.budget_s, "tried": len(sweep.tried),
                   "skipped": sweep.skipped}
        for row in rows:
            if row.probe and row.probe.startswith("sweep:"):
                row.settings["probe"]["sweep"] = summary
    return rows, extraction


def _stored(images: np.ndarray) -> Callable[[Any, str, str], np.ndarray]:
    """``generate`` for a probe's copy: its samples were made with the unit (or read back)."""
    def generate(pipeline: Any, prompt: str, key: str) -> np.ndarray:
        return images

    return generate


def _probe_key(model_hash: str, spec: Any, domain: str, prompt: str, enc: _Encoded,
               attacks: list[Attack], config: ScanConfig, extract: bool) -> str:
    """Unit key of one (probe, domain): everything its training, scores and samples depend on."""
    settings = _sampler(config)
    return unit_key(
        "probe", model=model_hash, probe=type(spec.probe).__name__, label=spec.label,
        options=spec.probe.describe(), domain=domain, prompt=prompt, seed=config.seed,
        sp=[config.sp_samples, config.sp_steps, config.sp_guidance, config.ood_prompt,
            config.prior_prompt],
        attacks=[[a.name, a.describe()] for a in attacks],
        samples=digest(enc.members, enc.nonmembers, enc.member_captions, enc.nonmember_captions),
        batch_size=config.batch_size, threads=config.threads, device=config.device,
        extraction=[config.extraction_samples, settings.steps, settings.guidance,
                    settings.negative_prompt] if extract else None)


def _shake_and_score(model: LoadedModel, data: AuditData, sets: Any, spec: Any, domain: str,
                     enc: _Encoded, attacks: list[Attack], config: ScanConfig,
                     save_dir: str | None, extract: bool) -> tuple[dict[str, np.ndarray], Any]:
    """Apply one probe to a private copy for one domain; its scores (and samples) as arrays,
    and its details for the report."""
    from s2l_scan.generation import generate_images
    from s2l_scan.probe import ModelCopy
    from s2l_scan.probing import shaken_scores

    prompt = data.domain(domain).prompt
    context = sets.context(spec.probe, domain, prompt, config, save_dir)
    shaken = spec.probe.apply(ModelCopy.of(model.pipeline), context)
    details = {"label": spec.label, **spec.probe.describe(),
               "trainable_parameters": shaken.trainable_parameters, **shaken.details}
    alphas = _alphas(model, config)
    arrays: dict[str, np.ndarray] = {}
    for attack in attacks:
        members = shaken_scores(shaken, attack, alphas, config.batch_size, enc.members,
                                enc.member_captions, _encode_text)
        nonmembers = shaken_scores(shaken, attack, alphas, config.batch_size, enc.nonmembers,
                                   enc.nonmember_captions, _encode_text)
        _check_finite(f"{attack.name} after {spec.label}", domain, members, nonmembers)
        arrays[f"{attack.name}/members"], arrays[f"{attack.name}/nonmembers"] = members, nonmembers
    if extract:
        arrays["generated"] = generate_images(
            _pipeline_of(model.pipeline, shaken), shaken.caption_fn(prompt),
            config.extraction_samples, seed=config.seed, key=domain, settings=_sampler(config))
    return arrays, details


def _pipeline_of(released: Any, shaken: Any) -> Any:
    """A pipeline that samples from a probe's shaken copy (the VAE and scheduler are shared)."""
    pipeline = type(released)(vae=released.vae, text_encoder=shaken.text_encoder,
                              tokenizer=shaken.tokenizer, unet=shaken.unet,
                              scheduler=released.scheduler, safety_checker=None,
                              feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _scored_row(attack: Attack, domain: str, members: dict[str, np.ndarray],
                nonmembers: dict[str, np.ndarray], blind: float,
                config: ScanConfig) -> ResultRow:
    """The row of the attack's scores (key ``""``), with the AUC of each diagnostic variant;
    flagged unstable when a variant disagrees by more than the margin."""
    _check_finite(attack.name, domain, members[""], nonmembers[""])
    row = _row(attack, domain, members[""], nonmembers[""], blind, config)
    for key in sorted(k for k in members if k):
        _check_finite(f"{attack.name} ({key})", domain, members[key], nonmembers[key])
        row.variant_auc[key] = metrics.auc(members[key], nonmembers[key])
    row.unstable = any(abs(value - row.auc) > config.unstable_margin
                       for value in row.variant_auc.values())
    return row


def _check_finite(attack: str, domain: str, *scores: np.ndarray) -> None:
    if not all(np.isfinite(s).all() for s in scores):
        raise ScanError(f"attack {attack} on {domain}: the model produced non-finite scores "
                        "(overflow in the UNet?); nothing can be judged from them.")


def _blind(enc: _Encoded, seed: int) -> float:
    from s2l_scan.baselines.blind import blind_auc

    return blind_auc(enc.member_pixels, enc.nonmember_pixels, seed=seed)


def _blind_pooled(encoded: dict[str, _Encoded], seed: int) -> float:
    from s2l_scan.baselines.blind import blind_auc

    members = np.concatenate([e.member_pixels for e in encoded.values()])
    nonmembers = np.concatenate([e.nonmember_pixels for e in encoded.values()])
    return blind_auc(members, nonmembers, seed=seed)
