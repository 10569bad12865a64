"""One scan: load the model and audit data once, run the selected attacks, judge, report.

Data flows one way: files → tensors (encoded once) → scores → metrics → :class:`ScanReport`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import os
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
from s2l_scan.parallel import World, world
from s2l_scan.report.model import ResultRow, ScanReport
from s2l_scan.scoring import SampleSet, Scores, batches, score_sets
from s2l_scan.units import Arrays, UnitStore, digest, unit_key, writable_folder

ProgressFn = Callable[[str, int, int], None]
REFERENCE = "reference"
DEVICE_KINDS = ("cpu", "cuda", "mps")
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

        folder = cached_reference(get_preset(config.reference_preset), config.reference_seed,
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
    content = digest(domain.prompt, [image.caption for image in domain.members],
                     [image.caption for image in domain.nonmembers],
                     *(image.pixels for image in (*domain.members, *domain.nonmembers)))
    vae = model.pipeline.vae
    key = (model.model_hash, str(vae.device), str(vae.dtype), content)
    if key not in _ENCODED:
        if len(_ENCODED) >= _ENCODED_LIMIT:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[key] = _encode_domain(model, domain, batch)
    return _ENCODED[key]


def _dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``dtype`` option (one of :data:`s2l_scan.config.DTYPES`)."""
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def resolve_device(device: str) -> str:
    """The torch device a ``device`` option names, checked to be usable here.

    ``"auto"`` is a CUDA GPU when one is visible, else ``"mps"`` when available, else ``"cpu"``.
    ``cuda`` without an index is this process's local GPU under a data-parallel launcher
    (``LOCAL_RANK``), else GPU 0. A device that is unknown or absent is a usage error.
    """
    import os

    if device == "auto":
        device = ("cuda" if torch.cuda.is_available() else
                  "mps" if torch.backends.mps.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_KINDS:
        raise UsageError(f"device {device!r} is not one of {', '.join(DEVICE_KINDS)}, cuda:N "
                         "or auto; pass e.g. --device cpu (pytest: --s2l-device=cpu)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device 'mps' is not available on this machine; pass --device cpu "
                         "or --device auto")
    if parsed.type != "cuda":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(os.environ.get("LOCAL_RANK", "0")) % max(1, count) if parsed.index is None \
        else parsed.index
    if index >= count:
        raise UsageError(f"device {device!r}: this machine has {count} CUDA GPU(s) visible to "
                         "torch; pass --device cpu, --device auto or an index below the count")
    return f"cuda:{index}"


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
    """Fail fast (a usage error) on attack names or options the registry does not know, and on
    a device this machine lacks."""
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
        if config.known_index is not None:
            from s2l_scan.extraction.sharded import read_meta

            read_meta(Path(config.known_index).expanduser())
    resolve_device(config.device)


def run_scan(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = _quiet
             ) -> ScanReport:
    """Run the configured baseline attacks on every domain and return the report.

    Under a data-parallel launch (:mod:`s2l_scan.parallel`) every process calls this: the units
    of work are shared out, rank 0 builds the report, and every process gets it.
    """
    import s2l_scan.baselines  # noqa: F401 - registers the built-in attacks

    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    here = world()
    store = unit_store(config)
    try:
        store.check()
        model_dir, data_dir = resolve_inputs(inputs, config, progress)
        _check_evidence_dir(config, [model_dir, data_dir])
        model = load_pipeline(model_dir, config=_path(inputs.model_config),
                              lora=_path(inputs.lora), allow_pickle=config.allow_pickle,
                              device=resolve_device(config.device), dtype=_dtype(config.dtype))
        data = load_audit_data(data_dir, model.resolution, domains=config.domains)
        _check_known_index(data, config)
        scheduler_steps = int(model.pipeline.scheduler.config.num_train_timesteps)
        attacks = [_make_attack(name, config, scheduler_steps) for name in config.attacks]
        encoded = {d.name: _encode_domain_cached(model, d, config.batch_size)
                   for d in data.domains}
        blind = _blinds(encoded, config.seed) if here.is_main else {}
        results = _run_attacks(model, encoded, blind, attacks, config, progress, store, here)
        index = _known_index(data, config)
        extraction = _released_extraction(model, data, index, config, store, here)
        probe_rows, probe_extraction = _run_probes(model, data, encoded, blind, attacks, results,
                                                   index, config, store, here)
        results += probe_rows
        extraction += probe_extraction
        _count_other_ranks(store, here)
    finally:
        torch.set_num_threads(previous_threads)
    report: ScanReport | None = None
    if here.is_main:
        report = _report(inputs, config, model_dir, model, data, results, extraction,
                         {"started": started, "finished": datetime.now(UTC).isoformat(
                             timespec="seconds"), "seconds": f"{time.perf_counter() - clock:.1f}",
                          **store.stats()})
    return here.broadcast(report)


def _report(inputs: ScanInputs, config: ScanConfig, model_dir: Path, model: LoadedModel,
            data: AuditData, results: list[ResultRow], extraction: list[dict[str, Any]],
            run: dict[str, str]) -> ScanReport:
    for row in results:
        judge(row, config)
    return ScanReport(
        model={"source": str(model_dir) if inputs.model != REFERENCE else
               f"reference ({config.reference_preset}, seed {config.reference_seed})",
               "path": str(model_dir), "model_hash": model.model_hash,
               "files": dict(sorted(model.identity.items())), "resolution": model.resolution},
        data={"root": str(data.root), "domains": {
            d.name: {"prompt": d.prompt, "n_members": len(d.members),
                     "n_nonmembers": len(d.nonmembers)} for d in data.domains}},
        config=config.to_dict(), results=results, packages=_packages(), extraction=extraction,
        # the run block: the only part of a report that differs between two runs on the same
        # inputs (docs/determinism.md)
        timestamps=run,
    )


def unit_store(config: ScanConfig) -> UnitStore:
    """The scan's store of finished units (:mod:`s2l_scan.units`); off with ``cache = "off"``."""
    if config.cache == "off":
        return UnitStore(None)
    if config.cache_dir is not None:
        return UnitStore(Path(config.cache_dir).expanduser())
    from s2l_scan.reference.cache import cache_root

    return UnitStore(cache_root() / "units")


def _count_other_ranks(store: UnitStore, here: World) -> None:
    """Add the units the other processes of a data-parallel scan reused and computed to rank
    0's counts, so the run block counts the whole scan."""
    counts = here.gather((store.reused, store.computed))
    for reused, computed in (counts or [])[1:]:
        store.record(reused=reused, computed=computed)


def _shared_units(store: UnitStore, here: World, kind: str, keys: list[str],
                  compute: Callable[[list[int]], list[Arrays] | None]) -> list[Arrays] | None:
    """The arrays of the units ``keys`` of ``kind`` on rank 0 (None on other ranks): stored
    units are read, the missing ones computed by ``compute(positions)`` and stored.

    ``compute`` may share its work out across processes (a collective call, returning the
    arrays in order on rank 0 only): rank 0 alone reads the store and tells every process which
    units are missing, so all of them make the same calls even while another process writes
    to the store.
    """
    found = [store.load(kind, key) for key in keys] if here.is_main else []
    missing = here.broadcast([i for i, unit in enumerate(found) if unit is None])
    computed = compute(missing) if missing else []
    if computed is None or not here.is_main:
        return None
    for i, arrays in zip(missing, computed, strict=True):
        store.save(kind, keys[i], arrays)
        found[i] = (arrays, None)
    store.record(reused=len(keys) - len(missing), computed=len(missing))
    return [unit[0] for unit in found if unit is not None]


def _sampler(config: ScanConfig) -> Any:
    from s2l_scan.generation import SamplerSettings

    return SamplerSettings(steps=config.extraction_steps, guidance=config.extraction_guidance,
                           batch_size=config.batch_size)


def _generation_key(model: LoadedModel, domain: Domain, config: ScanConfig) -> str:
    """Unit key of one domain's extraction generations on the released model. Batch size,
    thread count and process count are left out: every image has its own seeded generator,
    and the images were measured bit-identical across them (docs/determinism.md)."""
    settings = _sampler(config)
    return unit_key("generated", source=model.model_hash, prompt=domain.prompt, key=domain.name,
                    count=config.extraction_samples, seed=config.seed, steps=settings.steps,
                    guidance=settings.guidance, negative_prompt=settings.negative_prompt,
                    **model.platform)


def _released_generations(model: LoadedModel, domains: list[Domain], config: ScanConfig,
                          store: UnitStore, here: World) -> dict[str, np.ndarray] | None:
    """Each domain's extraction generations from the released model, one unit per domain, on
    rank 0 (None on other ranks)."""
    keys = [_generation_key(model, domain, config) for domain in domains]
    units = _shared_units(store, here, "generated", keys, lambda missing: _sample_sliced(
        model.pipeline, [domains[i] for i in missing], config, here))
    if units is None:
        return None
    return {domain.name: unit["images"] for domain, unit in zip(domains, units, strict=True)}


def _sample_sliced(pipeline: Any, domains: list[Domain], config: ScanConfig, here: World
                   ) -> list[Arrays] | None:
    """Each domain's generations, sampled in (domain, batch) slices shared out across the
    processes; ``{"images": ...}`` per domain on rank 0, None on other ranks."""
    from s2l_scan.generation import generate_images

    settings = _sampler(config)
    slices = [(domain, start, stop - start) for domain in domains
              for start, stop in batches(config.extraction_samples, settings.batch_size)]

    def generate(piece: tuple[Domain, int, int]) -> np.ndarray:
        domain, first, count = piece
        return generate_images(pipeline, domain.prompt, count, seed=config.seed, key=domain.name,
                               settings=settings, first=first)

    images = here.map(generate, slices)
    if images is None:
        return None
    return [{"images": np.concatenate([part for (d, _, _), part in
                                       zip(slices, images, strict=True) if d is domain])}
            for domain in domains]


def _released_extraction(model: LoadedModel, data: AuditData, index: Any, config: ScanConfig,
                         store: UnitStore, here: World) -> list[dict[str, Any]]:
    """The extraction probe on the released model (records on rank 0; [] elsewhere)."""
    if index is None:
        return []
    images = _released_generations(model, list(data.domains), config, store, here)
    if images is None:
        return []
    return _run_extraction(None, data, index, config, generate=_stored(images))


def _check_evidence_dir(config: ScanConfig, inputs: list[Path]) -> None:
    """A usage error, before any work, when match pictures could not be written to
    ``evidence_dir`` or would land among the inputs (PNGs in an audit folder become audit
    images of the next scan)."""
    if config.evidence_dir is None or not config.extraction_samples:
        return
    folder = Path(config.evidence_dir).expanduser()
    real = Path(os.path.realpath(folder))
    for given in inputs:
        if real.is_relative_to(os.path.realpath(given)):
            raise UsageError(f"evidence_dir {folder} is inside the input {given}; its PNGs "
                             "would become part of it. Choose a folder outside the model and "
                             "the audit data.")
    writable_folder(folder, "evidence_dir")


def _check_known_index(data: AuditData, config: ScanConfig) -> None:
    """A usage error, before any scoring, unless ``known_index`` (when set and used) holds
    images at the resolution the audit data was loaded at (the model's)."""
    if not config.extraction_samples or config.known_index is None:
        return
    from s2l_scan.extraction.sharded import read_meta

    height, width, channels = read_meta(Path(config.known_index).expanduser())["resolution"]
    size = data.resolution
    if (height, width, channels) != (size, size, 3):
        raise UsageError(f"known_index {config.known_index} holds {height}×{width}×{channels} "
                         f"images, but the model and its audit data are {size}×{size}×3; "
                         f"rebuild the index with `s2l-scan index build --resolution {size}`")


def _known_index(data: AuditData, config: ScanConfig) -> Any:
    """The known-image index (None when extraction is off): built once, shared by all probes;
    with ``known_index``, the prebuilt sharded folder, opened (shards stay on disk)."""
    if not config.extraction_samples:
        return None
    if config.known_index is not None:
        from s2l_scan.extraction.sharded import open_sharded

        return open_sharded(Path(config.known_index).expanduser())
    from s2l_scan.extraction.cache import default_index_cache
    from s2l_scan.extraction.embedders import make_embedder
    from s2l_scan.probes.extraction import build_known_index

    embedder = make_embedder(config.embedder, allow_pickle=config.allow_pickle,
                             device=resolve_device(config.device))
    cache = (default_index_cache() if config.index_cache_dir is None
             else Path(config.index_cache_dir).expanduser())
    return build_known_index(data, config.known_images, embedder=embedder, cache=cache)


def _run_extraction(pipeline: Any, data: AuditData, index: Any, config: ScanConfig,
                    probe: str | None = None, domains: list[Any] | None = None,
                    generate: Callable[[Any, str, str], np.ndarray] | None = None
                    ) -> list[dict[str, Any]]:
    """The extraction probe on ``pipeline``, judged against ``max_extracted``; ``generate``
    (pipeline, prompt, key) replaces sampling (with images already made)."""
    if index is None:
        return []
    from s2l_scan.probes.extraction import ExtractionSettings, run_extraction

    settings = ExtractionSettings(
        samples=config.extraction_samples, k=config.extraction_k, delta=config.extraction_delta,
        tiled=config.extraction_tiled, candidates=config.extraction_candidates,
        known_images=config.known_images, known_index=config.known_index,
        sampler=_sampler(config))
    records = run_extraction(pipeline, list(data.domains) if domains is None else domains, index,
                             settings, seed=config.seed, probe=probe,
                             evidence_dir=_path(config.evidence_dir),
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


def _alphas(model: LoadedModel) -> torch.Tensor:
    return model.pipeline.scheduler.alphas_cumprod.to(torch.float64).to(model.pipeline.unet.device)


def _scores_key(model: LoadedModel, attack: Attack, samples: str, config: ScanConfig) -> str:
    """Unit key of an attack's scores (and variants) on one sample set, whatever other sets or
    processes shared its batches. Batch size, thread count, device kind and dtype are in the
    key: they move scores in the last digits."""
    return unit_key("scores", model=model.model_hash, attack=attack.name,
                    settings=attack.describe(), samples=samples, batch_size=config.batch_size,
                    threads=config.threads, **model.platform)


def _stored_scores(model: LoadedModel, attacks: list[Attack], target: Target,
                   sets: list[SampleSet], config: ScanConfig, store: UnitStore, here: World
                   ) -> list[list[Scores]] | None:
    """:func:`~s2l_scan.scoring.score_sets` through the unit store: each (attack, sample set)
    is one unit, and only the units missing from the store are scored, in shared batches."""
    samples = [digest(s.latents, s.cond) for s in sets]
    keys = [_scores_key(model, attack, sample, config) for attack in attacks for sample in samples]
    units = _shared_units(store, here, "scores", keys, lambda missing: _score_missing(
        attacks, target, sets, missing, here))
    if units is None:
        return None
    # "v_" + variant key: "" (the attack's score) is no name for an array in a .npz file
    return [[{k.removeprefix("v_"): v for k, v in units[a * len(sets) + s].items()}
             for s in range(len(sets))] for a in range(len(attacks))]


def _score_missing(attacks: list[Attack], target: Target, sets: list[SampleSet],
                   missing: list[int], here: World) -> list[Arrays] | None:
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
                            here)
        if scored is None:  # another process: rank 0 gathers the scores
            continue
        for a, per_set in zip(chosen, scored, strict=True):
            for s, scores in zip(members, per_set, strict=True):
                out[a * len(sets) + s] = {f"v_{k}": v for k, v in scores.items()}
    return [out[p] for p in missing] if here.is_main else None


def _run_attacks(model: LoadedModel, encoded: dict[str, _Encoded], blind: dict[str, float],
                 attacks: list[Attack], config: ScanConfig, progress: ProgressFn = _quiet,
                 store: UnitStore | None = None, here: World | None = None) -> list[ResultRow]:
    """Baseline rows: every attack on every domain's members and non-members, scored in
    batches shared across domains (rank 0 gets the rows; other ranks an empty list). Without
    ``store`` every score is computed; without ``here``, in this process alone."""
    target = Target(model.pipeline.unet, _alphas(model), config.batch_size,
                    prediction_type=model.prediction_type)
    sets = [SampleSet(latents, cond) for enc in encoded.values()
            for latents, cond in ((enc.members, enc.member_cond),
                                  (enc.nonmembers, enc.nonmember_cond))]
    scored = _stored_scores(model, attacks, target, sets, config,
                            UnitStore(None) if store is None else store,
                            World() if here is None else here)
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


Outcome = tuple[Arrays, Any]  # a (probe, domain) unit: scores (and generations), details


def _run_probes(model: LoadedModel, data: AuditData, encoded: dict[str, _Encoded],
                blind: dict[str, float], attacks: list[Attack], baseline: list[ResultRow],
                index: Any, config: ScanConfig, store: UnitStore, here: World
                ) -> tuple[list[ResultRow], list[dict[str, Any]]]:
    """Every selected probe on every domain: shake a copy, re-attack, Δ against baseline,
    and (when configured) run extraction on the shaken copy.

    Each (probe, domain) is one unit of the store, and of the work shared out across the
    processes of a data-parallel scan; rank 0 turns them into rows (other ranks return empty
    lists). The sweep runs its probes one after another, each as long as the budget lasts
    by rank 0's clock, so that every process takes the same decisions."""
    from s2l_scan.probing import GeneratedSets, ProbeSpec, expand_probes, sweep_specs
    from s2l_scan.sweep import SweepLog, budgeted, parse_budget

    planned = expand_probes(config)
    if not planned and config.sweep is None:
        return [], []
    groups: Iterable[list[ProbeSpec]] = [planned]
    sweep = None
    if config.sweep is not None:  # after the planned probes, as long as the budget lasts
        sweep = SweepLog(parse_budget(config.sweep))
        groups = itertools.chain(groups, ([spec] for spec in budgeted(
            sweep_specs(config), sweep.budget_s, sweep, cost_key=lambda spec: spec.probe.name,
            clock=lambda: here.broadcast(time.perf_counter()))))
    sets = GeneratedSets(model, config, lambda images: _encode_images(
        model, images, config.batch_size), store)
    base = {(row.attack, row.domain): row for row in baseline}
    rows: list[ResultRow] = []
    extraction: list[dict[str, Any]] = []
    for specs in groups:
        units = [(spec, name) for spec in specs for name in encoded]
        done = here.map(lambda unit: _probe_unit(model, data, sets, encoded, attacks, index,
                                                 config, store, *unit), units)
        if done is None:  # another process: rank 0 makes the rows
            continue
        for i, spec in enumerate(specs):
            outcomes = dict(zip(encoded, done[i * len(encoded):(i + 1) * len(encoded)],
                                strict=True))
            spec_rows, spec_extraction = _probe_rows(spec, outcomes, data, blind, attacks, base,
                                                     index, config)
            rows += spec_rows
            extraction += spec_extraction
    if sweep is not None:
        summary = {"budget_s": sweep.budget_s, "tried": len(sweep.tried),
                   "skipped": sweep.skipped}
        for row in rows:
            if row.probe and row.probe.startswith("sweep:"):
                row.settings["probe"]["sweep"] = summary
    return rows, extraction


def _probe_unit(model: LoadedModel, data: AuditData, sets: Any, encoded: dict[str, _Encoded],
                attacks: list[Attack], index: Any, config: ScanConfig, store: UnitStore,
                spec: Any, name: str) -> Outcome:
    """One (probe, domain), from the store when it is there. With ``probe_save_dir`` set every
    probe runs, since its trained files are wanted."""
    enc = encoded[name]
    save_dir = (str(Path(config.probe_save_dir) / spec.label / name)
                if config.probe_save_dir else None)
    extract = config.extraction_on_probes and index is not None
    shake = functools.partial(_shake_and_score, model, data, sets, spec, name, enc, attacks,
                              config, save_dir, extract)
    if save_dir is not None:
        return shake()
    key = _probe_key(model, spec, name, data.domain(name).prompt, enc, attacks, config, extract)
    return store.get_or_compute("probe", key, shake)


def _probe_rows(spec: Any, outcomes: dict[str, Outcome], data: AuditData,
                blind: dict[str, float], attacks: list[Attack],
                base: dict[tuple[str, str], ResultRow], index: Any, config: ScanConfig
                ) -> tuple[list[ResultRow], list[dict[str, Any]]]:
    """One probe's rows (per domain, and pooled) and extraction records from its units."""
    from s2l_scan.probing import probe_row

    rows: list[ResultRow] = []
    extraction: list[dict[str, Any]] = []
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for name, (arrays, details) in outcomes.items():
        for attack in attacks:
            members = arrays[f"{attack.name}/members"]
            nonmembers = arrays[f"{attack.name}/nonmembers"]
            rows.append(probe_row(
                base[(attack.name, name)], spec.label, members, nonmembers, config,
                lambda m, n, a=attack, d=name: _row(a, d, m, n, blind[d], config), details))
            pooled.setdefault(attack.name, ([], []))
            pooled[attack.name][0].append(members)
            pooled[attack.name][1].append(nonmembers)
        if "generated" in arrays:
            extraction += _run_extraction(
                None, data, index, config, probe=spec.label, domains=[data.domain(name)],
                generate=_stored({name: arrays["generated"]}))
    if len(outcomes) > 1:
        for attack in attacks:
            members, nonmembers = (np.concatenate(part) for part in pooled[attack.name])
            rows.append(probe_row(
                base[(attack.name, "pooled")], spec.label, members, nonmembers, config,
                lambda m, n, a=attack: _row(a, "pooled", m, n, blind["pooled"], config),
                {"label": spec.label, **spec.probe.describe()}))
    return rows, extraction


def _stored(images: dict[str, np.ndarray]) -> Callable[[Any, str, str], np.ndarray]:
    """``generate`` that returns the images made earlier for a domain (or read back from the
    unit store), by its key: the domain's name."""
    def generate(pipeline: Any, prompt: str, key: str) -> np.ndarray:
        return images[key]

    return generate


def _probe_key(model: LoadedModel, spec: Any, domain: str, prompt: str, enc: _Encoded,
               attacks: list[Attack], config: ScanConfig, extract: bool) -> str:
    """Unit key of one (probe, domain): everything its training, scores and samples depend on."""
    settings = _sampler(config)
    return unit_key(
        "probe", model=model.model_hash, probe=type(spec.probe).__name__, label=spec.label,
        options=spec.probe.describe(), domain=domain, prompt=prompt, seed=config.seed,
        sp=[config.sp_samples, config.sp_steps, config.sp_guidance, config.ood_prompt,
            config.prior_prompt],
        attacks=[[a.name, a.describe()] for a in attacks],
        samples=digest(enc.members, enc.nonmembers, enc.member_captions, enc.nonmember_captions),
        batch_size=config.batch_size, threads=config.threads, **model.platform,
        extraction=[config.extraction_samples, settings.steps, settings.guidance,
                    settings.negative_prompt] if extract else None)


def _shake_and_score(model: LoadedModel, data: AuditData, sets: Any, spec: Any, domain: str,
                     enc: _Encoded, attacks: list[Attack], config: ScanConfig,
                     save_dir: str | None, extract: bool) -> Outcome:
    """Apply one probe to a private copy for one domain; its scores (and samples) as arrays,
    and its details for the report."""
    from s2l_scan.generation import generate_images
    from s2l_scan.probe import ModelCopy

    prompt = data.domain(domain).prompt
    context = sets.context(spec.probe, domain, prompt, config, save_dir)
    shaken = spec.probe.apply(ModelCopy.of(model.pipeline), context)
    details = {"label": spec.label, **spec.probe.describe(),
               "trainable_parameters": shaken.trainable_parameters, **shaken.details}
    # the copy's text encoder (and caption_fn) may differ from the released model's: encode
    # the captions once per copy, for every attack
    member_cond, nonmember_cond = _encode_text_pair(
        shaken.tokenizer, shaken.text_encoder, [shaken.caption_fn(c) for c in enc.member_captions],
        [shaken.caption_fn(c) for c in enc.nonmember_captions])
    target = Target(shaken.unet, _alphas(model), config.batch_size,
                    prediction_type=model.prediction_type)
    scored = score_sets(attacks, target, [SampleSet(enc.members, member_cond),
                                          SampleSet(enc.nonmembers, nonmember_cond)])
    assert scored is not None  # a local (single-process) scoring always returns
    arrays: dict[str, np.ndarray] = {}
    for attack, (members, nonmembers) in zip(attacks, scored, strict=True):
        _check_finite(f"{attack.name} after {spec.label}", domain, members[""], nonmembers[""])
        arrays[f"{attack.name}/members"] = members[""]
        arrays[f"{attack.name}/nonmembers"] = nonmembers[""]
    if extract:
        arrays["generated"] = generate_images(
            _pipeline_of(model.pipeline, shaken), shaken.caption_fn(prompt),
            config.extraction_samples, seed=config.seed, key=domain, settings=_sampler(config))
    return arrays, details


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
