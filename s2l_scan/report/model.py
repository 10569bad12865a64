"""The scan's result as plain data. Renderers (console, JSON, ...) only read these objects."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.errors import UsageError

SCHEMA_VERSION = "1"


@dataclass
class ResultRow:
    """One (attack, probe, domain) measurement with everything needed to recompute it."""

    attack: str
    probe: str | None
    domain: str  # a domain name, or "pooled"
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_1pct_fpr: float  # threshold chosen on the calibration half, measured on the test half
    tpr_at_01pct_fpr: float
    asr: float  # balanced accuracy, calibrated the same way
    blind_auc: float
    confounded: bool
    n_members: int
    n_nonmembers: int
    member_scores: list[float]
    nonmember_scores: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    variant_auc: dict[str, float] = field(default_factory=dict)  # e.g. SecMI at t ± k
    unstable: bool = False  # a variant's AUC differs from this one's by more than the margin
    delta_auc: float | None = None
    delta_auc_ci: tuple[float, float] | None = None
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    @property
    def item_id(self) -> str:
        """Readable id, e.g. ``baselines::secmi[identity-3]``."""
        room = "baselines" if self.probe is None else "probes"
        name = self.attack if self.probe is None else f"{self.probe}/{self.attack}"
        return f"{room}::{name}[{self.domain}]"


@dataclass
class ScanReport:
    """Everything one scan found, and the verdict."""

    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    results: list[ResultRow]
    packages: dict[str, str]
    timestamps: dict[str, str]
    extraction: list[dict[str, Any]] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    # regression checks against a previous report (s2l_scan.report.compare); empty without one
    comparison: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no result, extraction record or regression check crossed a threshold."""
        return (all(row.passed for row in self.results)
                and all(record.get("passed", True) for record in self.extraction)
                and all(check["passed"] for check in self.comparison))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; key order is stable so identical scans give identical files."""
        body = asdict(self)
        failed = [row.item_id for row in self.results if not row.passed] + [
            f"extraction::{r['probe'] or 'released'}[{r['domain']}]"
            for r in self.extraction if not r.get("passed", True)]
        # a regression of a row already fails that row; only the others add an item
        failed += [check["item"] for check in self.comparison
                   if not check["passed"] and check["item"] not in failed]
        body["verdict"] = {"passed": self.passed, "failed_items": failed}
        return body


def check_writable(path: Path) -> None:
    """Fail early (a usage error) when a report could not be written at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"report path {path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"report path {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"report path {path}: folder {parent} is not writable")
    # os.access says yes to root on read-only or special file systems (/proc, a read-only
    # mount): create and drop a file there, so the scan fails before any compute is spent
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise UsageError(f"report path {path}: folder {parent} is not writable "
                         f"({error.strerror or error})") from None
