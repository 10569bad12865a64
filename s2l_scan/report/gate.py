"""What happens around a scan, shared by the CLI and the pytest plugin.

Before the scan, :func:`plan_reports` turns the config into a :class:`ReportPlan` and raises
every usage error it can (unreadable previous report, bad allowance, an output over an input,
an unwritable folder) so nothing is computed for a run that could not finish. After the scan,
:meth:`ReportPlan.apply` runs the regression comparison and :meth:`ReportPlan.write` writes
the report files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.report.compare import Allowance, apply_comparison, compare, parse_allowances
from s2l_scan.report.files import check_outputs, read_report_dict
from s2l_scan.report.model import ScanReport
from s2l_scan.report.outputs import RENDERERS, configured_paths, write_reports


@dataclass
class ReportPlan:
    """The report files to write and the previous report to compare with."""

    outputs: dict[str, Path] = field(default_factory=dict)
    compare_path: Path | None = None
    previous: dict[str, Any] | None = None
    allowances: tuple[Allowance, ...] = ()

    def apply(self, report: ScanReport) -> None:
        """Compare with the previous report, failing rows that regressed past an allowance."""
        if self.previous is not None:
            checks = compare(self.previous, report.to_dict(), self.allowances)
            apply_comparison(report, checks, str(self.compare_path))

    def write(self, report: ScanReport) -> list[tuple[str, Path]]:
        """Write every requested report file (atomically); returns (kind, path) written."""
        return write_reports(report, self.outputs)


def plan_reports(config: Any, inputs: list[Path] | None = None) -> ReportPlan:
    """Check report outputs and the comparison up front; usage errors name the culprit.

    ``config`` is a :class:`~s2l_scan.config.ScanConfig`; ``inputs`` are files that must never
    be overwritten (the previous report is always one).
    """
    values = config.to_dict()
    outputs = configured_paths(values)
    compare_path = Path(values["compare"]) if values.get("compare") else None
    protected = list(inputs or []) + ([compare_path] if compare_path else [])
    check_outputs({_option(kind): path for kind, path in outputs.items()}, protected)
    plan = ReportPlan(outputs=outputs, compare_path=compare_path)
    if compare_path is not None:
        plan.previous = read_report_dict(compare_path, what="previous report (compare)")
        if values.get("compare_fail"):
            plan.allowances = parse_allowances(values["compare_fail"])
    return plan


def _option(kind: str) -> str:
    return RENDERERS[kind].config_key
