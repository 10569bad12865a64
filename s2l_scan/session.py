"""One scan: run a :class:`~s2l_scan.plan.ScanPlan` stage by stage, judge, report.

Data flows one way: files → tensors (encoded once) → scores → metrics → gate →
:class:`ScanReport`. The stages (:mod:`s2l_scan.stages`) measure; :mod:`s2l_scan.gate` judges.
"""

from __future__ import annotations

import importlib.metadata
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from s2l_scan import __version__
from s2l_scan.config import ScanConfig
from s2l_scan.devices import resolve_device, torch_dtype
from s2l_scan.errors import UsageError
from s2l_scan.gate import decide
from s2l_scan.io.audit_data import AuditData, load_audit_data
from s2l_scan.io.model import LoadedModel, load_pipeline, usable_timesteps
from s2l_scan.plan import REFERENCE, ScanInputs, ScanPlan, build_plan
from s2l_scan.progress import ProgressFn, quiet, reporting
from s2l_scan.report.model import ExtractionRecord, MemorizationRecord, ResultRow, ScanReport
from s2l_scan.stages.baselines import run_calibrated_baselines
from s2l_scan.stages.budgeting import budgeted_config
from s2l_scan.stages.encode import encode_subject
from s2l_scan.stages.extraction import (
    check_evidence_dir,
    check_known_index,
    known_index,
    run_released_extraction,
    sampling_record,
)
from s2l_scan.stages.probes import run_probes
from s2l_scan.stages.runtime import Runtime

__all__ = ["REFERENCE", "ScanInputs", "resolve_inputs", "run", "run_scan"]

_PACKAGES = ("torch", "diffusers", "transformers", "numpy", "safetensors")


def resolve_inputs(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = quiet
                   ) -> tuple[Path, Path]:
    """Model folder and data folder; builds the reference model into the cache if needed."""
    if inputs.model == REFERENCE:
        from s2l_scan.reference.cache import cached_reference
        from s2l_scan.reference.presets import get_preset

        def building(stage: str, done: int, total: int) -> None:
            progress(f"building the reference model: {stage}", done, total)

        folder = cached_reference(get_preset(config.reference_preset), config.reference_seed,
                                  threads=config.threads, progress=building)
        data = Path(inputs.data) if inputs.data else folder / "data"
        return folder / "model", data
    inputs.check()
    assert inputs.data is not None  # check() refused a model without data
    return Path(inputs.model), Path(inputs.data)


def resolve_base(inputs: ScanInputs, model_dir: Path) -> Path | None:
    """The base model's folder (None without one): ``'reference'`` is the reference build's
    ``base/``, which only a preset with ``base_steps`` builds. Checked against the model
    (configs only) before any weight is read."""
    if inputs.base_model is None:
        return None
    from s2l_scan.io.model import check_base_model

    if inputs.base_model == REFERENCE:
        base = model_dir.parent / "base"
        if not (base / "model_index.json").is_file():
            raise UsageError("base model 'reference': this reference build has no base model; "
                             "build one whose preset sets base_steps and base_per_identity "
                             "(a base, then a fine-tune of it on the members)")
    else:
        base = Path(inputs.base_model)
    check_base_model(model_dir, base, _path(inputs.model_config))
    return base


def run_scan(inputs: ScanInputs, config: ScanConfig, progress: ProgressFn = quiet
             ) -> ScanReport:
    """Plan (validating everything first) and run a scan: :func:`run` of :func:`build_plan`."""
    return run(build_plan(inputs, config), progress)


def run(plan: ScanPlan, progress: ProgressFn = quiet) -> ScanReport:
    """Run every stage of ``plan`` and return the judged report.

    Under a data-parallel launch (:mod:`s2l_scan.parallel`) every process calls this: the units
    of work are shared out, rank 0 builds the report, and every process gets it.
    """
    config = plan.config
    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    # numpy's BLAS too (the verdict maths' matrix products): by default it starts a thread per
    # core, which on a busy machine wait on each other (measured 30× slower for the
    # permutation test's products on the 2 shared cores of docs/performance.md)
    from threadpoolctl import threadpool_limits

    blas = threadpool_limits(limits=config.threads, user_api="blas")
    runtime = Runtime.for_config(config, progress)
    try:
        with reporting(progress):
            runtime.store.check()
            model_dir, data_dir = resolve_inputs(plan.inputs, config, progress)
            check_evidence_dir(config, [model_dir, data_dir])
            base_dir = resolve_base(plan.inputs, model_dir)
            model = load_pipeline(model_dir, config=_path(plan.inputs.model_config),
                                  lora=list(plan.inputs.adapters),
                                  allow_pickle=config.allow_pickle,
                                  device=resolve_device(config.device),
                                  dtype=torch_dtype(config.dtype))
            data = load_audit_data(data_dir, model.resolution, domains=config.domains)
            check_known_index(data, config)
            plan.check_model(usable_timesteps(model.pipeline.scheduler))
            subject = encode_subject(model, data, config.batch_size, config.seed,
                                     with_blind=runtime.is_main)
            base = None if base_dir is None else load_pipeline(
                base_dir, allow_pickle=config.allow_pickle,
                device=resolve_device(config.device), dtype=torch_dtype(config.dtype))
            _check_base_differs(base, model)
            baselines_start = time.perf_counter()
            results, calibration = run_calibrated_baselines(subject, plan.attacks, config,
                                                            runtime, base=base)
            del base  # its scores (calibration) calibrate the probes too; free its weights
            config, budget = budgeted_config(
                config, plan.probes, model, len(data.domains),
                elapsed_s=time.perf_counter() - clock,
                baselines_s=time.perf_counter() - baselines_start, runtime=runtime)
            index = known_index(data, config)
            extraction = run_released_extraction(subject, index, config, runtime)
            probe_rows, probe_extraction = run_probes(subject, plan.attacks, plan.probes,
                                                      config, baseline=results, index=index,
                                                      runtime=runtime, calibration=calibration)
            results += probe_rows
            extraction += probe_extraction
            memorization = (_memorization(model, data, config, runtime)
                            if runtime.is_main else [])
            runtime.count_other_ranks()
    finally:
        torch.set_num_threads(previous_threads)
        blas.restore_original_limits()
    report: ScanReport | None = None
    if runtime.is_main:
        report = _report(plan, config, budget, model_dir, model, data, results, extraction,
                         memorization,
                         {"started": started, "finished": datetime.now(UTC).isoformat(
                             timespec="seconds"), "seconds": f"{time.perf_counter() - clock:.1f}",
                          **runtime.stats()})
        outputs = plan.outputs
        decide(report, config, outputs.previous, outputs.allowances, str(outputs.compare_path))
    shared = runtime.broadcast(report)
    assert shared is not None  # rank 0 built it, and every process gets it
    return shared


def _check_base_differs(base: LoadedModel | None, model: LoadedModel) -> None:
    """A usage error when the base model holds the very weights scanned (a copy of the model
    folder): every calibrated score would be zero and the ``+base`` checks say nothing."""
    if base is not None and base.model_hash == model.model_hash:
        raise UsageError(f"base model {base.source} has the same weights as the scanned model "
                         f"(model hash {model.model_hash[:12]}); its calibrated (+base) checks "
                         "would all score zero. Give the checkpoint the release was fine-tuned "
                         "from.")


def _report(plan: ScanPlan, config: ScanConfig, budget: dict[str, Any] | None, model_dir: Path,
            model: LoadedModel, data: AuditData, results: list[ResultRow],
            extraction: list[ExtractionRecord], memorization: list[MemorizationRecord],
            run_block: dict[str, str]) -> ScanReport:
    return ScanReport(
        model={"source": str(model_dir) if plan.inputs.model != REFERENCE else
               f"reference ({config.reference_preset}, seed {config.reference_seed})",
               "path": str(model_dir), "model_hash": model.model_hash,
               "files": dict(sorted(model.identity.items())), "resolution": model.resolution,
               "prediction_type": model.prediction_type, "family": model.family,
               **({"adapters": model.adapters} if model.adapters else {}),
               "sampling": {**sampling_record(config, model.pipeline.scheduler),
                            **({} if budget is None else {"budget": budget})}},
        data={"root": str(data.root), "domains": {
            d.name: {"prompt": d.prompt, "n_members": len(d.members),
                     "n_nonmembers": len(d.nonmembers)} for d in data.domains}},
        config=config.to_dict(), results=results, packages=_packages(), extraction=extraction,
        memorization=memorization,
        # the run block: the only part of a report that differs between two runs on the same
        # inputs (docs/determinism.md)
        timestamps=run_block,
    )


def _memorization(model: LoadedModel, data: AuditData, config: ScanConfig, runtime: Runtime
                  ) -> list[MemorizationRecord]:
    """Prompt-level memorization records, when turned on (rank 0 alone: prompts are few),
    their model work through the unit store."""
    from s2l_scan.detectors import enabled_detectors

    if not enabled_detectors(config):
        return []
    from s2l_scan.stages.memorization import memorization_records

    evidence = None if config.evidence_dir is None else Path(config.evidence_dir) / "memorized"
    return memorization_records(model, data, config, evidence, runtime.store)


def _packages() -> dict[str, str]:
    versions = {"s2l-scan": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)
