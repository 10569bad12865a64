"""The scan plan: built once from the configuration and the registries, validated before any
model work, and read by everything after it.

It holds the attacks (each with its options checked), the probes with the sweep's candidates,
the extraction sources, the report outputs and the previous report to compare with, and it
names every check the scan will make (:class:`~s2l_scan.checks.CheckId`). The CLI and the
pytest plugin build it; the pytest plugin collects its checks; the session runs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.attack import Attack, make_attack
from s2l_scan.checks import CheckId, calibrated
from s2l_scan.config import ScanConfig
from s2l_scan.detectors import enabled_detectors
from s2l_scan.errors import UsageError
from s2l_scan.probing import ProbeSelection, select_probes
from s2l_scan.report.compare import Allowance, parse_allowances
from s2l_scan.report.files import check_outputs, read_report_dict
from s2l_scan.report.model import ScanReport
from s2l_scan.report.outputs import RENDERERS, configured_paths, write_reports

REFERENCE = "reference"
"""The model name that means the cached reference build (and its audit data)."""


@dataclass(frozen=True)
class ScanInputs:
    """Where the model and data come from; ``model == "reference"`` means the cached build."""

    model: str
    data: str | None = None
    model_config: str | None = None
    lora: str | tuple[str, ...] | None = None  # adapter(s), each PATH or PATH:WEIGHT
    base_model: str | None = None  # the fine-tune's base: calibrates every attack

    def __post_init__(self) -> None:
        # a repeated option arrives as a list from either door; kept as a tuple (hashable)
        if isinstance(self.lora, list):
            object.__setattr__(self, "lora", tuple(self.lora))

    @property
    def adapters(self) -> tuple[str, ...]:
        """The adapters to fuse, in order (``lora`` as a tuple)."""
        return () if self.lora is None else (self.lora,) if isinstance(self.lora, str) \
            else tuple(self.lora)

    @property
    def paths(self) -> list[Path]:
        """Every file and folder the scan reads that the user gave (the model, its config,
        each adapter, the base model, the audit data; not the cached reference build): no
        output may be written over or inside one."""
        from s2l_scan.io.adapters import AdapterSpec

        given = [self.model, self.base_model] if self.model != REFERENCE else []
        given += [self.data, self.model_config]
        paths = [Path(path) for path in given if path is not None]
        return paths + [AdapterSpec.parse(adapter).path for adapter in self.adapters]

    def check(self) -> None:
        """A usage error when a model other than the reference comes without audit data, an
        adapter's weight is not a number, or a base model ('reference' is the reference
        build's own base) cannot serve as the scanned model's base
        (:func:`~s2l_scan.io.model.check_base_model`, configs only)."""
        from s2l_scan.io.adapters import AdapterSpec  # no torch at import

        for adapter in self.adapters:
            AdapterSpec.parse(adapter)
        if self.model != REFERENCE and self.data is None:
            raise UsageError(f"model {self.model} needs audit data: pass --data DIR "
                             "(pytest: --s2l-data=DIR) with DIR/<domain>/{prompt.txt,members/,"
                             "nonmembers/}")
        if self.base_model is None:
            return
        if (self.base_model == REFERENCE) != (self.model == REFERENCE):
            raise UsageError(f"base model {self.base_model!r}: 'reference' is the base of the "
                             "reference build only, and the reference build's base is "
                             "'reference'; give a base that matches the scanned model")
        if self.model != REFERENCE:
            from s2l_scan.io.model import check_base_model

            if not self.adapters and os.path.realpath(self.model) == os.path.realpath(
                    self.base_model):
                raise UsageError(f"base model {self.base_model} is the scanned model itself; "
                                 "its calibrated (+base) checks would all score zero. Give the "
                                 "checkpoint the release was fine-tuned from.")

            check_base_model(Path(self.model), Path(self.base_model),
                             None if self.model_config is None else Path(self.model_config))


@dataclass(frozen=True)
class Outputs:
    """The report files to write and the previous report to compare with."""

    files: dict[str, Path] = field(default_factory=dict)  # renderer kind → path
    compare_path: Path | None = None
    previous: dict[str, Any] | None = None  # the previous report's JSON body
    allowances: tuple[Allowance, ...] = ()

    def write(self, report: ScanReport) -> list[tuple[str, Path]]:
        """Write every requested report file (atomically); returns (kind, path) written."""
        return write_reports(report, self.files)


@dataclass(frozen=True)
class ScanPlan:
    """Everything a scan will do, decided before it starts."""

    inputs: ScanInputs
    config: ScanConfig
    attacks: tuple[Attack, ...]
    probes: ProbeSelection
    outputs: Outputs

    @property
    def extraction_sources(self) -> tuple[str | None, ...]:
        """What extraction generates from: the released model (None), then each planned
        probe's copy when ``extraction_on_probes``; none when extraction is off."""
        if not self.config.extraction_samples:
            return ()
        probes = self.probes.planned if self.config.extraction_on_probes else ()
        return (None, *(spec.label for spec in probes))

    def checks(self, domains: Sequence[str]) -> list[CheckId]:
        """Every check known before the scan, in report order: each attack per domain (and
        ``pooled`` with several domains), then each base-calibrated attack (with a base model),
        the same per planned probe (its ``NAME+base`` checks too), then extraction per source
        and domain, then prompt-level memorization per detector and domain. Sweep checks are
        named at run time."""
        checked = [*domains, *(["pooled"] if len(domains) > 1 else [])]
        names = [attack.name for attack in self.attacks]
        if self.inputs.base_model is not None:  # each attack calibrated on the base model
            names += [calibrated(attack.name) for attack in self.attacks]
        ids = [CheckId.baseline(name, domain) for name in names for domain in checked]
        ids += [CheckId.probe(spec.label, name, domain) for spec in self.probes.planned
                for name in names for domain in checked]
        ids += [CheckId.extraction(source, domain)
                for source in self.extraction_sources for domain in domains]
        ids += [CheckId.memorization(detector.name, domain)
                for detector in enabled_detectors(self.config) for domain in domains]
        return ids

    def check_model(self, num_train_timesteps: int) -> None:
        """Each attack checks its timestep options against the loaded model's schedule."""
        for attack in self.attacks:
            attack.check_timesteps(num_train_timesteps)


def build_plan(inputs: ScanInputs, config: ScanConfig, protected: Sequence[Path] = ()
               ) -> ScanPlan:
    """The plan of a scan, or the first usage error it would meet, before any model work.

    ``protected`` are files that must never be overwritten (the config file; the previous
    report always is one)."""
    import s2l_scan.baselines  # noqa: F401 - registers the built-in attacks
    from s2l_scan.devices import resolve_device

    inputs.check()
    _check_reference_options(inputs, config)
    attacks = tuple(make_attack(name, config.attack_options.get(name, {}), seed=config.seed)
                    for name in config.attacks)
    for attack in attacks:  # types and signs now; the model's own range once it is loaded
        attack.check_timesteps(10**9)
    probes = select_probes(config).for_family(_family(inputs))
    if config.extraction_samples:
        from s2l_scan.extraction.embedders import check_embedder_inputs

        check_embedder_inputs(config.embedder, allow_pickle=config.allow_pickle)
        if config.known_index is not None:
            from s2l_scan.extraction.sharded import read_meta

            read_meta(Path(config.known_index).expanduser())
    resolve_device(config.device)
    protected = [*protected, *inputs.paths]
    _check_evidence_dir(config, protected)
    return ScanPlan(inputs, config, attacks, probes, _outputs(config, protected))


def _check_evidence_dir(config: ScanConfig, inputs: Sequence[Path]) -> None:
    """A usage error when ``evidence_dir`` is, or lies inside, an input folder (its PNGs would
    join the audit data or the model) or is an input file."""
    if not isinstance(config.evidence_dir, str | os.PathLike):
        return  # unset, or a value of the wrong type: the session names it
    from s2l_scan.report.files import inside_input

    folder = Path(config.evidence_dir).expanduser()
    given = inside_input(Path(os.path.realpath(folder)), inputs)
    if given is not None:
        raise UsageError(f"evidence_dir {folder} is inside the input {given[0]}; its PNGs would "
                         "become part of it. Choose a folder outside the model, the adapters, "
                         "the base model and the audit data.")


REFERENCE_OPTIONS = ("reference_preset", "reference_seed")
"""Options that choose which reference build is scanned: meaningless for any other model."""


def _check_reference_options(inputs: ScanInputs, config: ScanConfig) -> None:
    """A usage error when an option of the reference build was set (to a value other than its
    default) for another model: it would be silently ignored."""
    from s2l_scan.config import FIELDS

    if inputs.model == REFERENCE:
        return
    for name in REFERENCE_OPTIONS:
        value = getattr(config, name)
        if value != FIELDS[name].default:
            option = name.replace("_", "-")
            raise UsageError(
                f"--{option} {value!r} chooses the reference build, but the scanned model is "
                f"{inputs.model}, not 'reference'; drop --{option} (pytest: --s2l-{option}; "
                f"config: {name}), or scan 'reference'")


def _family(inputs: ScanInputs) -> str:
    """The model family, read from ``model_index.json`` without loading any weight (the
    reference model is SD); an unreadable folder is judged when the model loads."""
    if inputs.model == REFERENCE:
        return "sd"
    from s2l_scan.io.model import model_family

    config = Path(inputs.model_config) if inputs.model_config else None
    return model_family(Path(inputs.model), config) or "sd"


def _outputs(config: ScanConfig, protected: Sequence[Path]) -> Outputs:
    """Report outputs and the comparison, checked: an output over an input, an unwritable
    folder, an unreadable previous report or a bad allowance is a usage error now."""
    values = config.to_dict()
    files = configured_paths(values)
    compare_path = Path(values["compare"]) if values.get("compare") else None
    inputs = [*protected, *([compare_path] if compare_path else [])]
    check_outputs({RENDERERS[kind].config_key: path for kind, path in files.items()}, inputs)
    if compare_path is None:
        return Outputs(files)
    previous = read_report_dict(compare_path, what="previous report (compare)")
    allowances = parse_allowances(values["compare_fail"]) if values.get("compare_fail") else ()
    return Outputs(files, compare_path, previous, allowances)
