"""The null audit: the gate's false-fail rate, measured on audits where nothing can be found.

A *null audit* is an audit whose "members" and "non-members" were both unseen in training.
Draw ``i`` splits each domain's held-out non-members at random (seed ``seed + i``) into two
halves, calls one half "members", and scans that folder with the user's options: every check
that fails is a false fail (AUC, TPR and amplification checks of look-alike sets;
extraction matches to pseudo-members, which are really non-members). Over ``draws`` draws,
the fraction of draws whose verdict failed is the gate's **false-fail rate per scan**, given
with an exact Clopper–Pearson 95% CI; the same per check kind and per check.

The scanned folder is temporary, outside the user's data, holding copies of the non-members
(made once) and per draw a fresh split of symlinks to them; the user's folder is only read.
Built on the public API: :func:`s2l_scan.plan.build_plan`, :func:`s2l_scan.session.run`; it
reads of each report only the verdict (``outcome``, ``failed_items``) and the ``outcome`` of
every check with the ``kind`` of its :class:`~s2l_scan.checks.Reason` data (never their text),
so it follows the gate whatever its maths. A false fail is a FAILED verdict; an inconclusive
one is no fail (it shows nothing either way), and is counted apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from s2l_scan.checks import Check, Outcome
from s2l_scan.config import KNOWN_IMAGE_SETS, ScanConfig
from s2l_scan.errors import UsageError
from s2l_scan.functional.metrics import clopper_pearson
from s2l_scan.io.audit_data import DomainFiles, list_domain_files
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.report.model import ScanReport

MIN_NONMEMBERS = 8
"""Non-members a domain needs: two halves of ≥ 4, so that each half still splits into
cross-fitted calibration / test halves of ≥ 2 per class."""

KINDS = ("auc", "tpr", "amplification", "extraction", "memorization")
"""The check kinds a null audit counts (a failing Reason's ``kind``); a failed check with no
such reason counts as ``other``."""

ProgressFn = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    return None


# ---- the split ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class NullSplit:
    """One domain of one draw: which of its non-members play members, which non-members."""

    domain: str
    members: tuple[str, ...]  # file names in the user's nonmembers/ folder
    nonmembers: tuple[str, ...]


def split_nonmembers(files: Sequence[DomainFiles], seed: int) -> list[NullSplit]:
    """Each domain's non-members in two random halves (⌊n/2⌋ pseudo-members, the rest
    pseudo-non-members), domains in order from one generator seeded ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the null audit's seed must be an integer ≥ 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    splits = []
    for domain in files:
        names = [path.name for path in domain.nonmembers]
        order = rng.permutation(len(names))
        half = len(names) // 2
        splits.append(NullSplit(domain.name, tuple(sorted(names[i] for i in order[:half])),
                                tuple(sorted(names[i] for i in order[half:]))))
    return splits


def check_null_domains(files: Sequence[DomainFiles]) -> None:
    """A usage error naming every domain with fewer than :data:`MIN_NONMEMBERS` non-members."""
    short = [f"{d.name} ({len(d.nonmembers)})" for d in files
             if len(d.nonmembers) < MIN_NONMEMBERS]
    if short:
        raise UsageError(
            f"the null audit needs ≥ {MIN_NONMEMBERS} non-members per domain (two halves of "
            f"≥ 4, each cross-fitted into halves of ≥ 2 per class); too few in: "
            f"{', '.join(short)}. Add held-out images to those nonmembers/ folders, or leave "
            f"the domains out with --domains.")


class NullAuditFolder:
    """A temporary audit folder holding only the user's non-members, split anew by
    :meth:`draw`. Use as a context manager; the folder is removed on exit.

    Layout: ``ROOT/.pool/<domain>/<file>`` copies of the non-members (made once; hidden, so
    not a domain), and per draw ``ROOT/<domain>/{prompt.txt, members/, nonmembers/,
    captions.jsonl}`` whose images are relative symlinks into the pool (copies where the
    file system has no symlinks). The pool lies inside ``ROOT``, so the loader follows them.
    """

    def __init__(self, files: Sequence[DomainFiles], data_root: Path,
                 parent: Path | None = None) -> None:
        self._files = {domain.name: domain for domain in files}
        self._data_root = Path(data_root).resolve()
        self._parent = parent
        self._temp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def root(self) -> Path:
        """The audit folder to scan."""
        if self._temp is None:
            raise RuntimeError("NullAuditFolder is used outside its with-block")
        return Path(self._temp.name) / "audit"

    def __enter__(self) -> NullAuditFolder:
        self._temp = tempfile.TemporaryDirectory(prefix="s2l-null-audit-", dir=self._parent)
        if Path(self._temp.name).resolve().is_relative_to(self._data_root):
            self._temp.cleanup()
            raise UsageError(f"the temporary folder {self._temp.name} lies inside the data "
                             f"folder {self._data_root}; the null audit never writes there. "
                             "Point TMPDIR elsewhere.")
        for domain in self._files.values():
            pool = self.root / ".pool" / domain.name
            pool.mkdir(parents=True)
            for path in domain.nonmembers:
                shutil.copyfile(path, pool / path.name)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def draw(self, seed: int) -> list[NullSplit]:
        """Lay out the split of ``seed`` (replacing the previous draw's) and return it."""
        splits = split_nonmembers(list(self._files.values()), seed)
        for split in splits:
            self._write_domain(self._files[split.domain], split)
        return splits

    def _write_domain(self, files: DomainFiles, split: NullSplit) -> None:
        folder = self.root / files.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        (folder / "prompt.txt").write_text(files.prompt + "\n", encoding="utf-8")
        originals = {path.name: path for path in files.nonmembers}
        lines = []
        for role, names in (("members", split.members), ("nonmembers", split.nonmembers)):
            (folder / role).mkdir()
            for name in names:
                _link(Path("..", "..", ".pool", files.name, name), folder / role / name)
                caption = files.captions.get(originals[name])
                if caption is not None:
                    lines.append(json.dumps({"file": f"{role}/{name}", "caption": caption}))
        if lines:
            (folder / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _link(target: Path, link: Path) -> None:
    """A relative symlink, or a copy where the file system (or Windows) refuses links."""
    try:
        os.symlink(target, link)
    except OSError:
        shutil.copyfile(link.parent / target, link)


# ---- one draw ----------------------------------------------------------------------------------

def failed_kinds(check: Check) -> set[str]:
    """The kinds of a failed check's reasons (``auc``, ``tpr``, ``amplification``,
    ``extraction``, ``memorization``, ``regression``, ...): read from the gate's Reason data,
    never its text; ``other`` when it gave none."""
    return {reason.kind for reason in check.reasons if reason.kind != "undecided"} or {"other"}


@dataclass(frozen=True)
class DrawResult:
    """One null-audit draw: its split, its verdict, and the failed checks by kind."""

    draw: int
    seed: int
    passed: bool  # the verdict did not fail (passed, or inconclusive: see ``outcome``)
    failed_items: tuple[str, ...]
    failed_by_kind: dict[str, tuple[str, ...]]  # kind → failed check ids of that kind
    checks_by_kind: dict[str, int]  # kind → how many checks of that kind the scan made
    checks: tuple[str, ...]  # every check id of the scan (rows, then extraction records)
    splits: tuple[NullSplit, ...] = ()
    outcome: str = "passed"  # the verdict: passed | failed | inconclusive

    def to_dict(self) -> dict[str, Any]:
        return {"draw": self.draw, "seed": self.seed, "passed": self.passed,
                "outcome": self.outcome,
                "failed_items": list(self.failed_items),
                "failed_by_kind": {k: list(v) for k, v in self.failed_by_kind.items()},
                "checks_by_kind": dict(self.checks_by_kind),
                "split": {s.domain: {"members": list(s.members),
                                     "nonmembers": list(s.nonmembers)} for s in self.splits}}


def draw_result(draw: int, seed: int, report: ScanReport,
                splits: Sequence[NullSplit] = ()) -> DrawResult:
    """What a null audit keeps of one scan: its verdict and which checks failed, by kind.

    Reads only outcomes, Reason kinds and ids (:meth:`ScanReport.checks`), so it holds
    whatever the gate's maths, memorization and regression checks included."""
    failed: dict[str, set[str]] = {}
    counts = dict.fromkeys(KINDS, 0)
    for row in report.results:
        counts["auc"] += 1
        counts["tpr"] += 1
        counts["amplification"] += row.probe is not None
    counts["extraction"] = len(report.extraction)
    counts["memorization"] = sum(record.gating for record in report.memorization)
    for check in report.checks():
        if check.outcome is Outcome.FAILED:
            for kind in failed_kinds(check):
                failed.setdefault(kind, set()).add(str(check.check_id))
    items = tuple(report.failed_items)
    checks = tuple([row.item_id for row in report.results]
                   + [record.item_id for record in report.extraction]
                   + [record.item_id for record in report.memorization if record.gating])
    outcome = report.outcome
    return DrawResult(draw, seed, outcome is not Outcome.FAILED, items,
                      {k: tuple(sorted(v)) for k, v in sorted(failed.items())}, counts, checks,
                      tuple(splits), str(outcome))


# ---- the rates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """``failed`` of ``draws`` draws, with the exact (Clopper–Pearson) 95% CI of the rate."""

    failed: int
    draws: int
    ci: tuple[float, float]

    @classmethod
    def of(cls, failed: int, draws: int) -> Rate:
        return cls(failed, draws, clopper_pearson(failed, draws, 0.95))

    @property
    def rate(self) -> float:
        return self.failed / self.draws

    def to_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "draws": self.draws, "rate": self.rate,
                "ci95": list(self.ci)}


def per_scan_rate(draws: Sequence[DrawResult]) -> Rate:
    """The false-fail rate per scan: draws whose verdict failed, of all draws."""
    return Rate.of(sum(not d.passed for d in draws), len(draws))


def per_kind_rates(draws: Sequence[DrawResult]) -> dict[str, Rate | None]:
    """Per check kind, the draws in which some check of that kind failed (None: the scans
    made no check of that kind); kinds outside :data:`KINDS` appear when one failed."""
    seen = sorted({k for d in draws for k in d.failed_by_kind} - set(KINDS))
    out: dict[str, Rate | None] = {}
    for kind in (*KINDS, *seen):
        checked = any(d.checks_by_kind.get(kind, 0) for d in draws) or kind in seen
        out[kind] = Rate.of(sum(kind in d.failed_by_kind for d in draws),
                            len(draws)) if checked else None
    return out


def per_check_rates(draws: Sequence[DrawResult]) -> dict[str, Rate]:
    """Per check id, the draws in which it failed, of the draws that made it."""
    made: dict[str, int] = {}
    failed: dict[str, int] = {}
    for d in draws:
        # a failed item that is no row or record (a regression) was made in this draw too
        for check in dict.fromkeys([*d.checks, *d.failed_items]):
            made[check] = made.get(check, 0) + 1
        for item in set(d.failed_items):
            failed[item] = failed.get(item, 0) + 1
    return {check: Rate.of(failed.get(check, 0), made[check]) for check in made}


@dataclass(frozen=True)
class NullAudit:
    """A finished null audit: every draw, and the rates they give."""

    model: str
    data: str
    config: dict[str, Any]
    draws: tuple[DrawResult, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def per_scan(self) -> Rate:
        return per_scan_rate(self.draws)

    @property
    def per_kind(self) -> dict[str, Rate | None]:
        return per_kind_rates(self.draws)

    @property
    def per_check(self) -> dict[str, Rate]:
        return per_check_rates(self.draws)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``s2l-scan null-audit --report-json``)."""
        return {"kind": "s2l-scan null audit", "model": self.model, "data": self.data,
                "n_draws": len(self.draws), "seed": self.config.get("seed"),
                "false_fail_rate": self.per_scan.to_dict(),
                "per_kind": {k: None if r is None else r.to_dict()
                             for k, r in self.per_kind.items()},
                "per_check": {k: r.to_dict() for k, r in self.per_check.items()},
                "draws": [d.to_dict() for d in self.draws],
                "notes": list(self.notes), "seconds": round(self.seconds, 1),
                "config": self.config}


# ---- the run -----------------------------------------------------------------------------------

# Settings that make no sense on a null audit: per-scan report files (every draw would
# overwrite them; the null audit writes its own) and the regression compare (a null audit's
# rows are not the release's). Dropped with a note when a config file sets them.
_DROPPED = ("compare", "compare_fail")


def null_config(config: ScanConfig) -> tuple[ScanConfig, list[str]]:
    """``config`` as a null audit runs it, and notes on what it dropped; a usage error for an
    extraction index that could hold real training images."""
    notes = []
    if config.known_index is not None or config.known_images not in KNOWN_IMAGE_SETS:
        given = config.known_index or config.known_images
        raise UsageError(f"the null audit's extraction index must hold only the audit's own "
                         f"images, but {given!r} is a folder of other images (maybe real "
                         "training images, which would make matches real). Use known_images "
                         f"{', '.join(KNOWN_IMAGE_SETS)}, or --extraction-samples 0.")
    changes: dict[str, Any] = {}
    if config.reports:
        notes.append(f"per-scan report files ({', '.join(sorted(config.reports))}) are not "
                     "written; --report-json writes the null audit's own")
        changes["reports"] = {}
    dropped = [name for name in _DROPPED if getattr(config, name) is not None]
    if dropped:
        notes.append(f"{', '.join(dropped)} dropped: a null audit is not compared with a "
                     "previous release")
        changes.update(dict.fromkeys(dropped))
    return (dataclasses.replace(config, **changes) if changes else config), notes


def run_null_audit(inputs: ScanInputs, config: ScanConfig, draws: int, *,
                   protected: Sequence[Path] = (), progress: ProgressFn = _quiet,
                   on_draw: Callable[[DrawResult], None] | None = None,
                   tmp_dir: Path | None = None) -> NullAudit:
    """Run ``draws`` null-audit draws of the scan ``inputs`` / ``config`` and return them.

    Draw ``i`` splits at seed ``config.seed + i`` and scans with ``config`` unchanged (less
    what :func:`null_config` drops; its evidence, if any, under ``evidence_dir/draw-i``).
    Every usage error (options, too few non-members, draws < 1) comes before model work,
    except that ``model == "reference"`` without data builds the reference to find its data.
    """
    from s2l_scan.session import resolve_inputs, run

    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UsageError(f"draws must be a positive integer, got {draws!r}")
    if config.seed < 0:
        raise UsageError(f"the null audit's seed must be ≥ 0 (draw i splits at seed + i), "
                         f"got {config.seed}")
    clock = time.perf_counter()
    config, notes = null_config(config)
    plan = build_plan(inputs, config, protected)
    data_dir = Path(inputs.data) if inputs.data is not None else resolve_inputs(
        inputs, config, progress)[1]
    files = list_domain_files(data_dir, config.domains)
    check_null_domains(files)
    results: list[DrawResult] = []
    with NullAuditFolder(files, data_dir, tmp_dir) as folder:
        for i in range(draws):
            progress("null-audit draws", i, draws)
            seed = config.seed + i
            splits = folder.draw(seed)
            drawn = config if config.evidence_dir is None else dataclasses.replace(
                config, evidence_dir=str(Path(config.evidence_dir) / f"draw-{i}"))
            report = run(dataclasses.replace(
                plan, config=drawn, inputs=dataclasses.replace(inputs, data=str(folder.root))),
                progress)
            result = draw_result(i, seed, report, splits)
            results.append(result)
            if on_draw is not None:
                on_draw(result)
        progress("null-audit draws", draws, draws)
    return NullAudit(model=inputs.model, data=str(data_dir), config=config.to_dict(),
                     draws=tuple(results), notes=tuple(notes),
                     seconds=time.perf_counter() - clock)


__all__ = [
    "KINDS",
    "MIN_NONMEMBERS",
    "DrawResult",
    "NullAudit",
    "NullAuditFolder",
    "NullSplit",
    "Rate",
    "check_null_domains",
    "draw_result",
    "failed_kinds",
    "null_config",
    "per_check_rates",
    "per_kind_rates",
    "per_scan_rate",
    "run_null_audit",
    "split_nonmembers",
]
