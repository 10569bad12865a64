"""The null audit (the false-FAIL side) and the leak audit (the false-PASS side) of the gate.

A *null audit* is an audit whose "members" and "non-members" were both unseen in training.
Draw ``i`` splits each domain's held-out non-members at random (split seed ``seed + i``) into
two halves, calls one half "members", and scans that folder with the user's options **and the
scan seed ``seed + i``** (its resampling / permutation seed ``bootstrap_seed + i`` where one is
set, else the scan seed): every check that fails is a false fail. Over ``draws`` draws the
fractions of FAILED, INCONCLUSIVE and PASSED verdicts are reported apart; FAILED / draws is
the **false-fail rate per scan**. Its Clopper–Pearson 95 % interval is given as a CI with the
caveat that the draws are dependent (they re-split one pool of non-members, and at small n two
draws can give the same split: :func:`distinct_splits` counts them), so the interval is not
exact. Per check kind and per check, only checks that can fail at this n are counted: a TPR
check whose 1 % FPR is not estimable, an AUC check of an ``underpowered`` row, is reported
"not gated at this n", never as 0/N.

A *leak audit* (:func:`run_leak_audit`) is its mirror on real members: for each size n, draw
``i`` takes n random members and n random non-members per domain and scans them; on a model
that memorizes its members every PASS is a false pass.

The scanned folder is temporary, outside the user's data, holding copies of the images (made
once) and per draw a fresh layout of symlinks to them; the user's folder is only read.
Built on the public API: :func:`s2l_scan.plan.build_plan`, :func:`s2l_scan.session.run`; it
reads of each report only the verdict, the ``outcome`` of every check with the ``kind`` of its
:class:`~s2l_scan.checks.Reason` data (never their text), and of each row whether its checks
can fail at its n (``underpowered``, the TPR estimate's ``estimable``, the memorized-few p).
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
from s2l_scan.report.audit_rates import (
    CI_CAVEAT,
    LEAK_CI_CAVEAT,
    NOT_GATED,
    distinct_splits,
    kind_status,
)
from s2l_scan.report.model import ResultRow, ScanReport

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
    """One domain of one draw: which images play members, which non-members. ``source`` is
    the user's folder the members come from: ``nonmembers`` (a null audit) or ``members``
    (a leak audit); the non-members always come from ``nonmembers/``."""

    domain: str
    members: tuple[str, ...]  # file names in the user's ``source`` folder
    nonmembers: tuple[str, ...]  # file names in the user's nonmembers/ folder
    source: str = "nonmembers"


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"the audit's seed must be an integer ≥ 0, got {seed!r}")


def split_nonmembers(files: Sequence[DomainFiles], seed: int) -> list[NullSplit]:
    """Each domain's non-members in two random halves (⌊n/2⌋ pseudo-members, the rest
    pseudo-non-members), domains in order from one generator seeded ``seed``."""
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    splits = []
    for domain in files:
        names = [path.name for path in domain.nonmembers]
        order = rng.permutation(len(names))
        half = len(names) // 2
        splits.append(NullSplit(domain.name, tuple(sorted(names[i] for i in order[:half])),
                                tuple(sorted(names[i] for i in order[half:]))))
    return splits


def subsample_members(files: Sequence[DomainFiles], size: int, seed: int) -> list[NullSplit]:
    """Per domain, ``size`` random members and ``size`` random non-members (without
    replacement), domains in order from one generator seeded ``seed``."""
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    splits = []
    for domain in files:
        members = [path.name for path in domain.members]
        nonmembers = [path.name for path in domain.nonmembers]
        if size > min(len(members), len(nonmembers)):
            raise UsageError(f"size {size} needs {size} members and {size} non-members in "
                             f"domain {domain.name}, which has {len(members)} / "
                             f"{len(nonmembers)}")
        picked = rng.choice(len(members), size, replace=False)
        others = rng.choice(len(nonmembers), size, replace=False)
        splits.append(NullSplit(domain.name, tuple(sorted(members[i] for i in picked)),
                                tuple(sorted(nonmembers[i] for i in others)), "members"))
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
    """A temporary audit folder holding copies of the user's images, laid out anew by
    :meth:`draw` (a null split) or :meth:`lay_out` (any splits). Use as a context manager;
    the folder is removed on exit.

    Layout: ``ROOT/.pool/<domain>/<members|nonmembers>/<file>`` copies of the images (made
    once; hidden, so not a domain; members only with ``members=True``), and per draw
    ``ROOT/<domain>/{prompt.txt, members/, nonmembers/, captions.jsonl}`` whose images are
    relative symlinks into the pool (copies where the file system has no symlinks). The pool
    lies inside ``ROOT``, so the loader follows them.
    """

    def __init__(self, files: Sequence[DomainFiles], data_root: Path,
                 parent: Path | None = None, members: bool = False) -> None:
        self._files = {domain.name: domain for domain in files}
        self._data_root = Path(data_root).resolve()
        self._parent = parent
        self._members = members
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
                             f"folder {self._data_root}; the audit never writes there. "
                             "Point TMPDIR elsewhere.")
        for domain in self._files.values():
            roles = {"nonmembers": domain.nonmembers}
            if self._members:
                roles["members"] = domain.members
            for role, paths in roles.items():
                pool = self.root / ".pool" / domain.name / role
                pool.mkdir(parents=True)
                for path in paths:
                    shutil.copyfile(path, pool / path.name)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def draw(self, seed: int) -> list[NullSplit]:
        """Lay out the null split of ``seed`` (replacing the previous draw's) and return it."""
        return self.lay_out(split_nonmembers(list(self._files.values()), seed))

    def lay_out(self, splits: Sequence[NullSplit]) -> list[NullSplit]:
        """Lay out ``splits`` (replacing the previous draw's) and return them."""
        for split in splits:
            if split.source == "members" and not self._members:
                raise RuntimeError("a members split in a folder made without members")
            self._write_domain(self._files[split.domain], split)
        return list(splits)

    def _write_domain(self, files: DomainFiles, split: NullSplit) -> None:
        folder = self.root / files.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        (folder / "prompt.txt").write_text(files.prompt + "\n", encoding="utf-8")
        originals = {"members": {path.name: path for path in files.members},
                     "nonmembers": {path.name: path for path in files.nonmembers}}
        lines = []
        for role, source, names in (("members", split.source, split.members),
                                    ("nonmembers", "nonmembers", split.nonmembers)):
            (folder / role).mkdir()
            for name in names:
                _link(Path("..", "..", ".pool", files.name, source, name), folder / role / name)
                caption = files.captions.get(originals[source][name])
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
    """One audit draw: its split, its seeds, its verdict, and the checks by kind.

    ``checks_by_kind`` counts only the checks that can fail at this n (gated); ``ungated``
    names the checks the scan made that cannot (see :func:`can_fail`)."""

    draw: int
    seed: int  # the split's seed
    passed: bool  # the verdict did not fail (passed, or inconclusive: see ``outcome``)
    failed_items: tuple[str, ...]
    failed_by_kind: dict[str, tuple[str, ...]]  # kind → failed check ids of that kind
    checks_by_kind: dict[str, int]  # kind → how many checks of that kind can fail at this n
    checks: tuple[str, ...]  # every check id of the scan (rows, then extraction records)
    splits: tuple[NullSplit, ...] = ()
    outcome: str = "passed"  # the verdict: passed | failed | inconclusive
    scan_seed: int | None = None  # the scan's ``seed`` in this draw
    resample_seed: int | None = None  # its bootstrap / permutation seed in this draw
    made_by_kind: dict[str, int] = dataclasses.field(default_factory=dict)  # gated or not
    ungated: tuple[str, ...] = ()  # check ids made that cannot fail at this n

    def to_dict(self) -> dict[str, Any]:
        return {"draw": self.draw, "seed": self.seed, "scan_seed": self.scan_seed,
                "resample_seed": self.resample_seed, "passed": self.passed,
                "outcome": self.outcome,
                "failed_items": list(self.failed_items),
                "failed_by_kind": {k: list(v) for k, v in self.failed_by_kind.items()},
                "checks_by_kind": dict(self.checks_by_kind),
                "made_by_kind": dict(self.made_by_kind), "ungated": list(self.ungated),
                "split": {s.domain: {"members": list(s.members),
                                     "nonmembers": list(s.nonmembers)} for s in self.splits}}


def _row_gates(row: ResultRow) -> dict[str, bool]:
    """Which of a row's rules can fail at its n: the AUC (not ``underpowered``), the TPR (1 %
    FPR estimable, or the memorized few with a p that can reach alpha) and the Δ (a probe
    row with a Δ)."""
    estimate = next((e for e in row.tpr_estimates if e.get("alpha") == 0.01), None)
    few = (row.top_members or {}).get("p_adjusted") is not None and not row.underpowered
    return {"auc": not row.underpowered,
            "tpr": bool(estimate and estimate.get("estimable")) or few,
            "amplification": row.delta_auc is not None and row.delta_auc_ci is not None}


def can_fail(row: ResultRow) -> bool:
    """Whether any rule of a row's check can fail at its n."""
    return any(_row_gates(row).values())


def _kind_counts(report: ScanReport) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Per kind, the checks made and those that can fail at this n; the row ids that cannot."""
    made, gated = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
    ungated = []
    for row in report.results:
        gates = _row_gates(row)
        made["auc"] += 1
        made["tpr"] += 1
        made["amplification"] += row.probe is not None
        for kind, gates_kind in gates.items():
            gated[kind] += gates_kind
        if not any(gates.values()):
            ungated.append(row.item_id)
    made["extraction"] = gated["extraction"] = len(report.extraction)
    made["memorization"] = len(report.memorization)
    gated["memorization"] = sum(record.gating for record in report.memorization)
    return made, gated, ungated


def draw_result(draw: int, seed: int, report: ScanReport, splits: Sequence[NullSplit] = (),
                scan_seed: int | None = None, resample_seed: int | None = None) -> DrawResult:
    """What an audit keeps of one scan: its verdict, which checks failed by kind, and which
    could fail at this n.

    Reads only outcomes, Reason kinds, ids (:meth:`ScanReport.checks`) and the rows' power
    data, so it holds whatever the gate's maths, memorization and regression checks
    included."""
    failed: dict[str, set[str]] = {}
    made, gated, ungated = _kind_counts(report)
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
                      {k: tuple(sorted(v)) for k, v in sorted(failed.items())}, gated, checks,
                      tuple(splits), str(outcome), scan_seed, resample_seed, made,
                      tuple(ungated))


# ---- the rates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """``count`` of ``draws`` draws, with the Clopper–Pearson 95 % interval of the rate, which
    is not exact here (:data:`CI_CAVEAT`)."""

    count: int
    draws: int
    ci: tuple[float, float]

    @classmethod
    def of(cls, count: int, draws: int) -> Rate:
        return cls(count, draws, clopper_pearson(count, draws, 0.95))

    @property
    def failed(self) -> int:
        """``count`` where the rate counts failures (kept for callers of the old name)."""
        return self.count

    @property
    def rate(self) -> float:
        return self.count / self.draws

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "failed": self.count, "draws": self.draws,
                "rate": self.rate, "ci95": list(self.ci), "ci95_note": CI_CAVEAT}


def _verdict(draw: DrawResult) -> str:
    return "failed" if not draw.passed else draw.outcome


def per_scan_rate(draws: Sequence[DrawResult]) -> Rate:
    """The false-fail rate per scan: draws whose verdict failed, of all draws."""
    return Rate.of(sum(_verdict(d) == "failed" for d in draws), len(draws))


def outcome_rates(draws: Sequence[DrawResult]) -> dict[str, Rate]:
    """The draws whose verdict FAILED, was INCONCLUSIVE and PASSED, each of all draws."""
    return {outcome: Rate.of(sum(_verdict(d) == outcome for d in draws), len(draws))
            for outcome in ("failed", "inconclusive", "passed")}


def per_kind_rates(draws: Sequence[DrawResult]) -> dict[str, Rate | None]:
    """Per check kind, the draws in which some check of that kind failed, of the draws in
    which one could (None: no draw had a check of that kind that could fail at its n — see
    :func:`kind_status`); kinds outside :data:`KINDS` appear when one failed."""
    seen = sorted({k for d in draws for k in d.failed_by_kind} - set(KINDS))
    out: dict[str, Rate | None] = {}
    for kind in (*KINDS, *seen):
        gating = [d for d in draws if d.checks_by_kind.get(kind, 0)
                  or kind in d.failed_by_kind]
        out[kind] = Rate.of(sum(kind in d.failed_by_kind for d in gating),
                            len(gating)) if gating else None
    return out


@dataclass(frozen=True)
class CheckRecurrence:
    """One check over the draws: in how many of those that gated it it failed, and how many
    distinct splits those draws had."""

    rate: Rate
    distinct_splits: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.rate.to_dict(), "distinct_splits": self.distinct_splits}


def per_check_rates(draws: Sequence[DrawResult]) -> dict[str, CheckRecurrence | str]:
    """Per check id, its recurrence: the draws in which it failed, of the draws that made it
    able to fail, with their distinct splits; :data:`NOT_GATED` for a check no draw could
    fail."""
    made: dict[str, list[DrawResult]] = {}
    failed: dict[str, int] = {}
    for d in draws:
        ungated = set(d.ungated) - set(d.failed_items)
        # a failed item that is no row or record (a regression) was made in this draw too
        for check in dict.fromkeys([*d.checks, *d.failed_items]):
            made.setdefault(check, [])
            if check not in ungated:
                made[check].append(d)
        for item in set(d.failed_items):
            failed[item] = failed.get(item, 0) + 1
    return {check: CheckRecurrence(Rate.of(failed.get(check, 0), len(gated)),
                                   distinct_splits(gated)) if gated else NOT_GATED
            for check, gated in made.items()}


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
    def outcomes(self) -> dict[str, Rate]:
        return outcome_rates(self.draws)

    @property
    def per_kind(self) -> dict[str, Rate | None]:
        return per_kind_rates(self.draws)

    @property
    def per_check(self) -> dict[str, CheckRecurrence | str]:
        return per_check_rates(self.draws)

    @property
    def distinct_splits(self) -> int:
        return distinct_splits(self.draws)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``s2l-scan null-audit --report-json``)."""
        return {"kind": "s2l-scan null audit", "model": self.model, "data": self.data,
                "n_draws": len(self.draws), "seed": self.config.get("seed"),
                "distinct_splits": self.distinct_splits, "ci95_note": CI_CAVEAT,
                "false_fail_rate": self.per_scan.to_dict(),
                "outcomes": {k: r.to_dict() for k, r in self.outcomes.items()},
                "per_kind": {k: kind_status(self.draws, k) if r is None else r.to_dict()
                             for k, r in self.per_kind.items()},
                "per_check": {k: r if isinstance(r, str) else r.to_dict()
                              for k, r in self.per_check.items()},
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


def draw_config(config: ScanConfig, draw: int, evidence: str | None = None) -> ScanConfig:
    """The scan config of draw ``draw``: scan seed ``seed + draw``, resampling / permutation
    seed ``bootstrap_seed + draw`` where one is set (else it follows the scan seed), its
    evidence, if any, under ``evidence_dir/<evidence or draw-i>``. A seed in
    ``attack_options`` is the user's and stays."""
    changes: dict[str, Any] = {"seed": config.seed + draw}
    if config.bootstrap_seed is not None:
        changes["bootstrap_seed"] = config.bootstrap_seed + draw
    if config.evidence_dir is not None:
        changes["evidence_dir"] = str(Path(config.evidence_dir) / (evidence or f"draw-{draw}"))
    return dataclasses.replace(config, **changes)


@dataclass(frozen=True)
class _Prepared:
    plan: Any
    inputs: ScanInputs
    config: ScanConfig
    data_dir: Path
    files: list[DomainFiles]
    notes: list[str]


def _prepare(inputs: ScanInputs, config: ScanConfig, draws: int, protected: Sequence[Path],
             progress: ProgressFn) -> _Prepared:
    """Every usage error before model work (less the reference's build to find its data)."""
    from s2l_scan.session import resolve_inputs

    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UsageError(f"draws must be a positive integer, got {draws!r}")
    if config.seed < 0:
        raise UsageError(f"the audit's seed must be ≥ 0 (draw i uses seed + i), "
                         f"got {config.seed}")
    config, notes = null_config(config)
    plan = build_plan(inputs, config, protected)
    data_dir = Path(inputs.data) if inputs.data is not None else resolve_inputs(
        inputs, config, progress)[1]
    files = list(list_domain_files(data_dir, config.domains))
    return _Prepared(plan, inputs, config, data_dir, files, notes)


def _scan_draw(prep: _Prepared, folder: NullAuditFolder, draw: int, split_seed: int,
               splits: Sequence[NullSplit], progress: ProgressFn,
               evidence: str | None = None) -> DrawResult:
    """Scan the laid-out folder with draw ``draw``'s seeds and keep its result."""
    from s2l_scan.session import run

    drawn = draw_config(prep.config, draw, evidence)
    report = run(dataclasses.replace(
        prep.plan, config=drawn,
        inputs=dataclasses.replace(prep.inputs, data=str(folder.root))), progress)
    return draw_result(draw, split_seed, report, splits, drawn.seed, drawn.resample_seed)


def run_null_audit(inputs: ScanInputs, config: ScanConfig, draws: int, *,
                   protected: Sequence[Path] = (), progress: ProgressFn = _quiet,
                   on_draw: Callable[[DrawResult], None] | None = None,
                   tmp_dir: Path | None = None) -> NullAudit:
    """Run ``draws`` null-audit draws of the scan ``inputs`` / ``config`` and return them.

    Draw ``i`` splits at seed ``config.seed + i`` and scans with :func:`draw_config` (less
    what :func:`null_config` drops). Every usage error (options, too few non-members,
    draws < 1) comes before model work, except that ``model == "reference"`` without data
    builds the reference to find its data.
    """
    clock = time.perf_counter()
    prep = _prepare(inputs, config, draws, protected, progress)
    check_null_domains(prep.files)
    results: list[DrawResult] = []
    with NullAuditFolder(prep.files, prep.data_dir, tmp_dir) as folder:
        for i in range(draws):
            progress("null-audit draws", i, draws)
            seed = prep.config.seed + i
            result = _scan_draw(prep, folder, i, seed, folder.draw(seed), progress)
            results.append(result)
            if on_draw is not None:
                on_draw(result)
        progress("null-audit draws", draws, draws)
    return NullAudit(model=inputs.model, data=str(prep.data_dir), config=prep.config.to_dict(),
                     draws=tuple(results), notes=tuple(prep.notes),
                     seconds=time.perf_counter() - clock)


# ---- the leak audit (the false-PASS side) ------------------------------------------------------

@dataclass(frozen=True)
class LeakAudit:
    """A finished leak audit: per size n, every draw on n real members and n non-members per
    domain. On a model that memorizes its members, PASSED / draws is the false-pass rate."""

    model: str
    data: str
    config: dict[str, Any]
    draws: dict[int, tuple[DrawResult, ...]]  # size → its draws
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def outcomes(self, size: int) -> dict[str, Rate]:
        return outcome_rates(self.draws[size])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``s2l-scan leak-audit --report-json``)."""
        return {"kind": "s2l-scan leak audit", "model": self.model, "data": self.data,
                "seed": self.config.get("seed"), "ci95_note": LEAK_CI_CAVEAT,
                "sizes": {str(size): {
                    "n_draws": len(draws), "distinct_splits": distinct_splits(draws),
                    "outcomes": {k: r.to_dict() for k, r in outcome_rates(draws).items()},
                    "per_kind": {k: kind_status(draws, k) if r is None else r.to_dict()
                                 for k, r in per_kind_rates(draws).items()},
                    "draws": [d.to_dict() for d in draws]}
                    for size, draws in self.draws.items()},
                "notes": list(self.notes), "seconds": round(self.seconds, 1),
                "config": self.config}


def check_sizes(sizes: Sequence[int], files: Sequence[DomainFiles]) -> tuple[int, ...]:
    """The sizes, checked: each ≥ 2 (a cross-fitted half needs one per class), distinct, and
    within every domain's members and non-members; a usage error naming the first that is
    not."""
    if not sizes or len(set(sizes)) != len(sizes) or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in sizes):
        raise UsageError(f"--sizes must be distinct integers ≥ 2, got {list(sizes)}")
    for domain in files:
        have = min(len(domain.members), len(domain.nonmembers))
        if max(sizes) > have:
            raise UsageError(f"--sizes {max(sizes)} needs {max(sizes)} members and non-members "
                             f"per domain; {domain.name} has {len(domain.members)} / "
                             f"{len(domain.nonmembers)}")
    return tuple(sizes)


def run_leak_audit(inputs: ScanInputs, config: ScanConfig, sizes: Sequence[int], draws: int, *,
                   protected: Sequence[Path] = (), progress: ProgressFn = _quiet,
                   on_draw: Callable[[int, DrawResult], None] | None = None,
                   tmp_dir: Path | None = None) -> LeakAudit:
    """For each size n, ``draws`` scans of n random members and n random non-members per
    domain. Draw ``i`` of size n subsamples at seed ``config.seed + i`` and scans with
    :func:`draw_config` (seed + i), evidence under ``evidence_dir/n<size>-draw-i``."""
    clock = time.perf_counter()
    prep = _prepare(inputs, config, draws, protected, progress)
    sizes = check_sizes(sizes, prep.files)
    results: dict[int, tuple[DrawResult, ...]] = {}
    with NullAuditFolder(prep.files, prep.data_dir, tmp_dir, members=True) as folder:
        for size in sizes:
            done = []
            for i in range(draws):
                progress(f"leak-audit draws at n = {size}", i, draws)
                seed = prep.config.seed + i
                splits = folder.lay_out(subsample_members(prep.files, size, seed))
                result = _scan_draw(prep, folder, i, seed, splits, progress,
                                    f"n{size}-draw-{i}")
                done.append(result)
                if on_draw is not None:
                    on_draw(size, result)
            results[size] = tuple(done)
    return LeakAudit(model=inputs.model, data=str(prep.data_dir), config=prep.config.to_dict(),
                     draws=results, notes=tuple(prep.notes),
                     seconds=time.perf_counter() - clock)


__all__ = [
    "CI_CAVEAT",
    "KINDS",
    "LEAK_CI_CAVEAT",
    "MIN_NONMEMBERS",
    "NOT_GATED",
    "CheckRecurrence",
    "DrawResult",
    "LeakAudit",
    "NullAudit",
    "NullAuditFolder",
    "NullSplit",
    "Rate",
    "can_fail",
    "check_null_domains",
    "check_sizes",
    "distinct_splits",
    "draw_config",
    "draw_result",
    "failed_kinds",
    "kind_status",
    "null_config",
    "outcome_rates",
    "per_check_rates",
    "per_kind_rates",
    "per_scan_rate",
    "run_leak_audit",
    "run_null_audit",
    "split_nonmembers",
    "subsample_members",
]
