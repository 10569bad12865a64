"""What a scan did that changes how its numbers read: budget cuts and reused units.

A budget cut means fewer generations than configured (less power to find an extracted image);
reused units mean results computed by an earlier run and read back from the unit store
(trusted as stored). Both are in the JSON report (``model.sampling.budget``, the run block);
these lines put them where a reader looks first: the console, the HTML page's first screen.

Pure: functions of a :class:`~s2l_scan.report.model.ScanReport`, no I/O.
"""

from __future__ import annotations

from typing import Any

from s2l_scan.report.model import ScanReport


def budget_lines(report: ScanReport) -> list[str]:
    """One line per budget cut, and one when even the floor did not fit; empty without
    a budget or without cuts."""
    sampling = report.model.get("sampling", {}) if isinstance(report.model, dict) else {}
    budget: Any = sampling.get("budget") if isinstance(sampling, dict) else None
    if not isinstance(budget, dict):
        return []
    lines = []
    cuts = [cut for cut in budget.get("cuts", []) if isinstance(cut, dict)]
    for cut in cuts:
        lines.append(f"budget cut: {cut.get('setting')} {cut.get('before')} → {cut.get('after')}"
                     f" ({cut.get('power')})")
    if budget.get("fits") is False:
        lines.append(f"budget {_seconds(budget.get('budget_s'))} does not fit even at the floor:"
                     f" predicted {_seconds(budget.get('predicted_s'))}; the scan ran at the "
                     "floor's settings")
    return lines


def reuse_line(report: ScanReport) -> str | None:
    """How many units this run read back from the unit store, or None when it reused none."""
    stamps = report.timestamps if isinstance(report.timestamps, dict) else {}
    try:
        reused = int(stamps.get("units_reused", "0"))
        computed = int(stamps.get("units_computed", "0"))
    except ValueError:
        return None
    if reused <= 0:
        return None
    where = stamps.get("unit_cache", "the unit cache")
    return (f"reused {reused} of {reused + computed} units from {where} (computed by an "
            "earlier run, trusted as stored; --cache off recomputes them)")


def run_lines(report: ScanReport) -> list[str]:
    """The budget lines, then the reuse line."""
    reuse = reuse_line(report)
    return budget_lines(report) + ([reuse] if reuse is not None else [])


def _seconds(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    return f"{value / 3600:.1f} h" if value >= 3600 else f"{value:.0f} s"
