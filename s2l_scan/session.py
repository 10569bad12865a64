"""One scan: load the model and audit data once, run the selected attacks, judge, report.

Data flows one way: files → tensors (encoded once) → scores → metrics → :class:`ScanReport`.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
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
from s2l_scan.parallel import World, world
from s2l_scan.report.model import ResultRow, ScanReport
from s2l_scan.scoring import SampleSet, batches, score_sets

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


# Encoded audit samples per (model hash, device, dtype, domain content): a process that scans
# the same model again (pytest sessions, benchmarks, sweeps) encodes each image once.
_ENCODED: dict[tuple[str, ...], _Encoded] = {}
_ENCODED_LIMIT = 64


def _encode_domain_cached(model: LoadedModel, domain: Domain, batch: int) -> _Encoded:
    import hashlib

    digest = hashlib.sha256(domain.prompt.encode())
    for image in (*domain.members, None, *domain.nonmembers):  # None separates the splits
        digest.update(b"|" if image is None else image.caption.encode() + b"\0")
        if image is not None:
            digest.update(np.ascontiguousarray(image.pixels).tobytes())
    vae = model.pipeline.vae
    key = (model.model_hash, str(vae.device), str(vae.dtype), digest.hexdigest())
    if key not in _ENCODED:
        if len(_ENCODED) >= _ENCODED_LIMIT:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[key] = _encode_domain(model, domain, batch)
    return _ENCODED[key]


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA GPU is visible (this process's local one under a
    launcher), else ``"mps"`` when available, else ``"cpu"``; any other value unchanged."""
    import os

    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per launched process
        return f"cuda:{int(os.environ['LOCAL_RANK']) % max(1, torch.cuda.device_count())}"
    if device != "auto":
        return device
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{local % torch.cuda.device_count()}"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _make_attack(name: str, config: ScanConfig, num_train_timesteps: int) -> Attack:
    cls = ATTACKS.get(name)
    options = config.attack_options.get(name, {})
    try:
        attack = cls(**options)
    except TypeError as error:
        raise UsageError(f"attack {name!r}: bad options {options} ({error})") from None
    for key, value in attack.describe().items():
        steps = value if isinstance(value, tuple | list) else [value]
        if key in ("t", "t_sec", "timesteps", "compared_t") and any(
                not isinstance(s, int) or not 0 <= s < num_train_timesteps for s in steps):
            raise UsageError(f"attack {name!r}: {key}={value} outside the model's "
                             f"{num_train_timesteps} training timesteps")
    return attack


def _row(attack: Attack, domain: str, members: np.ndarray, nonmembers: np.ndarray,
         blind: float, config: ScanConfig) -> ResultRow:
    auc = metrics.auc(members, nonmembers)
    ci = metrics.bootstrap_ci(members, nonmembers, metrics.auc, n_resamples=config.bootstrap,
                              seed=config.seed)
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
    from s2l_scan.probing import expand_probes

    expand_probes(config)


def run_scan(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = _quiet
             ) -> ScanReport:
    """Run the configured baseline attacks on every domain and return the report."""
    import s2l_scan.baselines  # noqa: F401 - registers the built-in attacks

    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    here = world()
    try:
        model_dir, data_dir = resolve_inputs(inputs, config, progress)
        model = load_pipeline(model_dir, config=_path(inputs.model_config),
                              lora=_path(inputs.lora), allow_pickle=config.allow_pickle,
                              device=resolve_device(config.device), dtype=_dtype(config.dtype))
        data = load_audit_data(data_dir, model.resolution, domains=config.domains)
        scheduler_steps = int(model.pipeline.scheduler.config.num_train_timesteps)
        attacks = [_make_attack(name, config, scheduler_steps) for name in config.attacks]
        encoded = {d.name: _encode_domain_cached(model, d, config.batch_size)
                   for d in data.domains}
        blind = _blinds(encoded, config.seed) if here.is_main else {}
        results = _run_attacks(model, encoded, blind, attacks, config, progress, here)
        index = _known_index(data, config)
        extraction = _run_extraction(model.pipeline, data, index, config, world_=here)
        probe_rows, probe_extraction = _run_probes(model, data, encoded, blind, attacks, results,
                                                   index, config, here)
        results += probe_rows
        extraction += probe_extraction
    finally:
        torch.set_num_threads(previous_threads)
    report: ScanReport | None = None
    if here.is_main:
        report = _report(inputs, config, model_dir, model, data, results, extraction, started,
                         clock)
    return here.broadcast(report)


def _report(inputs: ScanInputs, config: ScanConfig, model_dir: Path, model: LoadedModel,
            data: AuditData, results: list[ResultRow], extraction: list[dict[str, Any]],
            started: str, clock: float) -> ScanReport:
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
        timestamps={"started": started, "finished": datetime.now(UTC).isoformat(
            timespec="seconds"), "seconds": f"{time.perf_counter() - clock:.1f}"},
    )


def _known_index(data: AuditData, config: ScanConfig) -> Any:
    """The known-image index (None when extraction is off): built once, shared by all probes."""
    if not config.extraction_samples:
        return None
    from s2l_scan.probes.extraction import build_known_index

    return build_known_index(data)


def _run_extraction(pipeline: Any, data: AuditData, index: Any, config: ScanConfig,
                    probe: str | None = None, domains: list[Any] | None = None,
                    prompt_fn: Callable[[str], str] | None = None,
                    world_: World | None = None) -> list[dict[str, Any]]:
    """The extraction probe on ``pipeline``, judged against ``max_extracted``.

    Generation is shared out across processes by (domain, batch) slices; rank 0 matches the
    gathered images and returns the records (other ranks return an empty list).
    """
    if index is None:
        return []
    from s2l_scan.generation import generate_images
    from s2l_scan.probes.extraction import extraction_record

    settings = _extraction_settings(config)
    here = World() if world_ is None else world_
    chosen = list(data.domains) if domains is None else domains
    slices = [(domain, start, stop - start) for domain in chosen
              for start, stop in batches(settings.samples, settings.sampler.batch_size)]

    def generate(unit: tuple[Any, int, int]) -> np.ndarray:
        domain, first, count = unit
        prompt = domain.prompt if prompt_fn is None else prompt_fn(domain.prompt)
        return generate_images(pipeline, prompt, count, seed=config.seed, key=domain.name,
                               settings=settings.sampler, first=first)

    images = here.map(generate, slices)
    if images is None:
        return []
    records = []
    for domain in chosen:
        generated = np.concatenate([image for (d, _, _), image in zip(slices, images, strict=True)
                                    if d is domain])
        records.append(extraction_record(domain.name, generated, index, settings, probe=probe,
                                         evidence_dir=_path(config.evidence_dir)))
    for record in records:
        record["passed"] = record["extracted"] <= config.max_extracted
        record["reasons"] = [] if record["passed"] else [
            f"{record['extracted']} of {record['n_generated']} generations are eidetic matches "
            f"(k={config.extraction_k}, δ={config.extraction_delta}) > max_extracted "
            f"{config.max_extracted}"]
    return records


def _extraction_settings(config: ScanConfig) -> Any:
    from s2l_scan.generation import SamplerSettings
    from s2l_scan.probes.extraction import ExtractionSettings

    return ExtractionSettings(
        samples=config.extraction_samples, k=config.extraction_k, delta=config.extraction_delta,
        tiled=config.extraction_tiled,
        sampler=SamplerSettings(steps=config.extraction_steps,
                                guidance=config.extraction_guidance,
                                batch_size=config.batch_size))


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _alphas(model: LoadedModel, config: ScanConfig) -> torch.Tensor:
    return model.pipeline.scheduler.alphas_cumprod.to(torch.float64).to(model.pipeline.unet.device)


def _run_attacks(model: LoadedModel, encoded: dict[str, _Encoded], blind: dict[str, float],
                 attacks: list[Attack], config: ScanConfig,
                 progress: ProgressFn, world_: World | None = None) -> list[ResultRow]:
    """Baseline rows: every attack on every domain's members and non-members, scored in
    batches shared across domains (rank 0 gets the rows; other ranks an empty list)."""
    target = Target(model.pipeline.unet, _alphas(model, config), config.batch_size)
    sets = [SampleSet(latents, cond) for enc in encoded.values()
            for latents, cond in ((enc.members, enc.member_cond),
                                  (enc.nonmembers, enc.nonmember_cond))]
    scored = score_sets(attacks, target, sets, world_)
    progress("attacks", len(attacks) * len(encoded), len(attacks) * len(encoded))
    if scored is None:
        return []
    rows: list[ResultRow] = []
    for attack, per_set in zip(attacks, scored, strict=True):
        # score sets by key: "" is the attack's score, other keys its diagnostic variants
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for i, name in enumerate(encoded):
            members, nonmembers = per_set[2 * i], per_set[2 * i + 1]
            rows.append(_scored_row(attack, name, members, nonmembers, blind[name], config))
            for key in members:
                pooled.setdefault(key, ([], []))
                pooled[key][0].append(members[key])
                pooled[key][1].append(nonmembers[key])
        if len(encoded) > 1:
            rows.append(_scored_row(attack, "pooled",
                                    {k: np.concatenate(v[0]) for k, v in pooled.items()},
                                    {k: np.concatenate(v[1]) for k, v in pooled.items()},
                                    blind["pooled"], config))
    return rows


def _run_probes(model: LoadedModel, data: AuditData, encoded: dict[str, _Encoded],
                blind: dict[str, float], attacks: list[Attack], baseline: list[ResultRow],
                index: Any, config: ScanConfig, world_: World | None = None
                ) -> tuple[list[ResultRow], list[dict[str, Any]]]:
    """Every selected probe on every domain: shake a copy, re-attack, Δ against baseline,
    and (when configured) run extraction on the shaken copy.

    Each (probe, domain) is one unit of work, shared out across processes; rank 0 turns the
    gathered scores into rows (other ranks return empty lists).
    """
    from s2l_scan.probing import GeneratedSets, expand_probes, probe_row
    from s2l_scan.reference.cache import cache_root

    specs = expand_probes(config)
    if not specs:
        return [], []
    here = World() if world_ is None else world_
    sets = GeneratedSets(model, config, lambda images: _encode_images(
        model, images, config.batch_size), cache_root() / "sp-sets")
    units = [(spec, name) for spec in specs for name in encoded]
    done = here.map(lambda unit: _probe_unit(model, data, encoded[unit[1]], sets, attacks,
                                             index, config, *unit), units)
    if done is None:
        return [], []
    base = {(row.attack, row.domain): row for row in baseline}
    extraction: list[dict[str, Any]] = []
    rows: list[ResultRow] = []
    for spec in specs:
        pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for (unit_spec, name), unit in zip(units, done, strict=True):
            if unit_spec is not spec:
                continue
            for attack in attacks:
                members, nonmembers = unit["scores"][attack.name]
                rows.append(probe_row(
                    base[(attack.name, name)], spec.label, members, nonmembers, config,
                    lambda m, n, a=attack, d=name: _row(a, d, m, n, blind[d], config),
                    unit["details"]))
                pooled.setdefault(attack.name, ([], []))
                pooled[attack.name][0].append(members)
                pooled[attack.name][1].append(nonmembers)
            extraction += unit["extraction"]
        if len(encoded) > 1:
            for attack in attacks:
                members, nonmembers = (np.concatenate(part) for part in pooled[attack.name])
                rows.append(probe_row(
                    base[(attack.name, "pooled")], spec.label, members, nonmembers, config,
                    lambda m, n, a=attack: _row(a, "pooled", m, n, blind["pooled"], config),
                    {"label": spec.label, **spec.probe.describe()}))
    return rows, extraction


def _probe_unit(model: LoadedModel, data: AuditData, enc: _Encoded, sets: Any,
                attacks: list[Attack], index: Any, config: ScanConfig, spec: Any, name: str
                ) -> dict[str, Any]:
    """One (probe, domain): shake a private copy, score every attack, extract from the copy."""
    from s2l_scan.probe import ModelCopy

    save_dir = (str(Path(config.probe_save_dir) / spec.label / name)
                if config.probe_save_dir else None)
    context = sets.context(spec.probe, name, data.domain(name).prompt, config, save_dir)
    shaken = spec.probe.apply(ModelCopy.of(model.pipeline), context)
    details = {"label": spec.label, **spec.probe.describe(),
               "trainable_parameters": shaken.trainable_parameters, **shaken.details}
    # the copy's text encoder (and caption_fn) may differ from the released model's: encode
    # the captions once per copy, for every attack
    member_cond, nonmember_cond = _encode_text_pair(
        shaken.tokenizer, shaken.text_encoder, [shaken.caption_fn(c) for c in enc.member_captions],
        [shaken.caption_fn(c) for c in enc.nonmember_captions])
    target = Target(shaken.unet, _alphas(model, config), config.batch_size)
    scored = score_sets(attacks, target, [SampleSet(enc.members, member_cond),
                                          SampleSet(enc.nonmembers, nonmember_cond)])
    assert scored is not None  # a local (single-process) scoring always returns
    scores = {}
    for attack, (members, nonmembers) in zip(attacks, scored, strict=True):
        label = f"{attack.name} after {spec.label}"
        _check_finite(label, name, members[""], nonmembers[""])
        scores[attack.name] = (members[""], nonmembers[""])
    extraction = []
    if config.extraction_on_probes:
        extraction = _run_extraction(_pipeline_of(model.pipeline, shaken), data, index, config,
                                     probe=spec.label, domains=[data.domain(name)],
                                     prompt_fn=shaken.caption_fn)
    return {"details": details, "scores": scores, "extraction": extraction}


def _encode_text_pair(tokenizer: Any, encoder: Any, first: list[str], second: list[str]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two caption lists through one text-encoder pass over their distinct captions."""
    both = _encode_text(tokenizer, encoder, first + second)
    return both[:len(first)], both[len(first):]


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


def _blinds(encoded: dict[str, _Encoded], seed: int) -> dict[str, float]:
    blind = {name: _blind(enc, seed) for name, enc in encoded.items()}
    blind["pooled"] = _blind_pooled(encoded, seed)
    return blind


def _blind(enc: _Encoded, seed: int) -> float:
    from s2l_scan.baselines.blind import blind_auc

    return blind_auc(enc.member_pixels, enc.nonmember_pixels, seed=seed)


def _blind_pooled(encoded: dict[str, _Encoded], seed: int) -> float:
    from s2l_scan.baselines.blind import blind_auc

    members = np.concatenate([e.member_pixels for e in encoded.values()])
    nonmembers = np.concatenate([e.nonmember_pixels for e in encoded.values()])
    return blind_auc(members, nonmembers, seed=seed)
